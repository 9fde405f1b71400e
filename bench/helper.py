#!/usr/bin/env python3
"""Helpers for bench/compare.sh (standard library only).

  helper.py urls BASE ID SECRET NS TABLE FMT    pre-signed URLs of the table's snapshot job,
                                                one per line (login, query, poll, /object/url)
  helper.py watch BASE OUT                      polls /_emulator/stats every 5 ms until
                                                SIGTERM; writes when the job was created, when
                                                each job poll and the first storage request
                                                arrived (wall clock, seconds)
  helper.py created BASE ID SECRET JOB_ID       when the job was created (epoch seconds)
  helper.py summary RESULTS.tsv                 medians, min/max, ratios and peak RSS
"""

import base64
import json
import signal
import statistics
import sys
import time
import urllib.request

UA = "dap-rs-bench/1"


def call(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    req.add_header("User-Agent", UA)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read() or b"null")


def urls(base, cid, secret, ns, table, fmt):
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    _, tok = call(
        f"{base}/ids/auth/login",
        b"grant_type=client_credentials",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    auth = {"Authorization": f"Bearer {tok['access_token']}", "Content-Type": "application/json"}
    _, job = call(
        f"{base}/dap/query/{ns}/table/{table}/data", json.dumps({"format": fmt}).encode(), auth
    )
    while job["status"] in ("waiting", "running"):
        time.sleep(0.05)
        _, job = call(f"{base}/dap/job/{job['id']}", headers=auth)
    if job["status"] != "complete":
        sys.exit(f"job {job['id']} ended {job['status']}")
    ids = [{"id": o["id"]} for o in job["objects"]]
    _, res = call(f"{base}/dap/object/url", json.dumps(ids).encode(), auth)
    for o in ids:
        print(res["urls"][o["id"]]["url"])


def created(base, cid, secret, job_id):
    """When the job was created, from its expires_at (created + 24 h in the emulator)."""
    import datetime

    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    _, tok = call(
        f"{base}/ids/auth/login",
        b"grant_type=client_credentials",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    _, job = call(f"{base}/dap/job/{job_id}", headers={"Authorization": f"Bearer {tok['access_token']}"})
    exp = datetime.datetime.fromisoformat(job["expires_at"].replace("Z", "+00:00"))
    print(f"{exp.timestamp() - 86400:.3f}")


def watch(base, out):
    import http.client
    import urllib.parse

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)

    def call(_url):  # one kept-alive connection: cheap enough to sample every 5 ms
        nonlocal conn
        try:
            conn.request("GET", "/_emulator/stats", headers={"User-Agent": UA})
            return 200, json.loads(conn.getresponse().read())
        except Exception:
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            raise

    created = first_storage = None
    job_polls = []
    last_jobs = 0
    while not stop:
        try:
            _, s = call(f"{base}/_emulator/stats")
        except Exception:  # emulator not up yet, or going away
            time.sleep(0.005)
            continue
        t = time.time()
        if created is None and s["jobs_created"] > 0:
            created = t
        if s["requests"]["job"] > last_jobs:
            last_jobs = s["requests"]["job"]
            if first_storage is None:
                job_polls.append(t)
        if first_storage is None and s["storage_requests"] > 0:
            first_storage = t
        time.sleep(0.005)
    with open(out, "w") as f:
        json.dump({"created": created, "job_polls": job_polls, "first_storage": first_storage}, f)


def fmt_s(x):
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.3f} s"


def summary(path):
    rows = {}
    order = []
    for line in open(path):
        case, client, wall, rss, cpu = line.rstrip("\n").split("\t")
        if case not in rows:
            rows[case] = {}
            order.append(case)
        rows[case].setdefault(client, []).append((float(wall), int(rss), float(cpu)))
    print(
        "| case | client | runs | median | min | max | official / this "
        "| this / curl | peak RSS (median) | CPU s (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in order:
        clients = rows[case]
        med = {c: statistics.median(w for w, _, _ in r) for c, r in clients.items()}
        curl = next((c for c in clients if c.startswith("curl")), None)
        for client, runs in clients.items():
            walls = [w for w, _, _ in runs]
            rss = statistics.median(r for _, r, _ in runs)
            cpu = statistics.median(c for _, _, c in runs)
            ratio = vs_curl = ""
            if client == "this" and "official" in med and med["this"] > 0:
                ratio = f"{med['official'] / med['this']:.1f}x"
            if client == "this" and curl:
                vs_curl = f"{med['this'] / med[curl]:.1f}x"
            print(
                f"| {case} | {client} | {len(walls)} | {fmt_s(med[client])} | {fmt_s(min(walls))} "
                f"| {fmt_s(max(walls))} | {ratio} | {vs_curl} "
                f"| {f'{rss / 1024:.1f} MiB' if rss > 0 else '-'} "
                f"| {f'{cpu:.2f}' if rss > 0 else '-'} |"
            )


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "urls":
        urls(*args)
    elif cmd == "created":
        created(*args)
    elif cmd == "watch":
        watch(*args)
    elif cmd == "summary":
        summary(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
