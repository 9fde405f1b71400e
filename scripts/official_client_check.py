#!/usr/bin/env python3
"""Checks files downloaded by the official `dap` CLI against the emulator's data.

Usage: official_client_check.py BASE_URL CLIENT_ID CLIENT_SECRET NAMESPACE TABLE FORMAT DIR

DIR is the `--output-directory` the CLI wrote to (it holds `job_<id>/` folders).
The job's `at` (snapshot) or `since`/`until` (incremental) is read from the API, the
expected records from `GET /_emulator/expected`, and every downloaded file is decoded
(gzip, then JSON Lines / CSV / TSV) and compared record by record.
Prints one line per checked job and exits non-zero on any mismatch.
"""

import base64
import glob
import gzip
import json
import os
import sys
import urllib.parse
import urllib.request

UA = "dap-emulator-official-client-check/1"


def http(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers={"User-Agent": UA, **(headers or {})}, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def login(base, cid, secret):
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    body = http(
        f"{base}/ids/auth/login",
        data=b"grant_type=client_credentials",
        headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    return json.loads(body)["access_token"]


def expected_records(base, ns, table, job):
    q = {"namespace": ns, "table": table}
    if "at" in job:
        q["at"] = job["at"]
    else:
        q["since"], q["until"] = job["since"], job["until"]
    body = http(f"{base}/_emulator/expected?" + urllib.parse.urlencode(q)).decode()
    return [json.loads(line) for line in body.splitlines() if line]


def parse_csv(text):
    """RFC 4180 parser keeping whether each field was quoted: rows of (text, quoted)."""
    rows, row, i, n = [], [], 0, len(text)
    while i < n:
        if text[i] == '"':
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted field")
                c = text[i]
                if c == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(c)
                i += 1
            row.append(("".join(buf), True))
        else:
            j = i
            while j < n and text[j] not in ",\r\n":
                j += 1
            row.append((text[i:j], False))
            i = j
        if i >= n:
            rows.append(row)
            break
        if text[i] == ",":
            i += 1
            if i >= n:
                row.append(("", False))
                rows.append(row)
            continue
        if text.startswith("\r\n", i):
            i += 2
        elif text[i] in "\r\n":
            i += 1
        else:
            raise ValueError(f"garbage after field at {i}")
        rows.append(row)
        row = []
    return rows


def tsv_unescape(cell):
    if cell == "\\N":
        return None
    out, i = [], 0
    while i < len(cell):
        c = cell[i]
        if c == "\\" and i + 1 < len(cell):
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}.get(cell[i + 1], cell[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def lookup(record, column):
    """Expected cell: ('missing',), ('null',) or ('text', str)."""
    parts = column.split(".")
    top = parts[0]
    if top == "value" and "value" not in record:
        return ("missing",)
    cur = record.get(top, {})
    for p in parts[1:]:
        if not isinstance(cur, dict) or p not in cur:
            return ("null",)
        cur = cur[p]
    if cur is None:
        return ("null",)
    if isinstance(cur, str):
        return ("text", cur)
    if isinstance(cur, bool):
        return ("text", "true" if cur else "false")
    return ("text", json.dumps(cur, ensure_ascii=False, separators=(",", ":")))


def check_table_rows(fmt, text, expected):
    if fmt == "csv":
        rows = parse_csv(text)
        header = [c for c, _ in rows[0]]
        body = rows[1:]
    else:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        header = lines[0].split("\t")
        body = [[(c, False) for c in line.split("\t")] for line in lines[1:]]
    problems = []
    if len(body) != len(expected):
        problems.append(f"{len(body)} rows, expected {len(expected)}")
    for row, rec in zip(body, expected):
        if len(row) != len(header):
            problems.append(f"row has {len(row)} fields, header {len(header)}")
            continue
        for col, (cell, quoted) in zip(header, row):
            want = lookup(rec, col)
            if fmt == "csv":
                if want == ("missing",):
                    ok = cell == "" and not quoted
                elif want == ("null",):
                    ok = cell == "NULL" and not quoted
                else:
                    ok = cell == want[1] and (quoted or (want[1] != "" and want[1].upper() != "NULL"))
            else:
                got = tsv_unescape(cell)
                ok = got is None if want[0] in ("missing", "null") else got == want[1]
            if not ok:
                problems.append(f"key {rec['key']} column {col}: got {cell!r} (quoted={quoted}), want {want}")
    return problems


def main():
    base, cid, secret, ns, table, fmt, directory = sys.argv[1:8]
    token = login(base, cid, secret)
    job_dirs = sorted(glob.glob(os.path.join(directory, "job_*")))
    if not job_dirs:
        sys.exit(f"FAIL: no job_* directory under {directory}")
    failures = 0
    for job_dir in job_dirs:
        job_id = os.path.basename(job_dir)[len("job_"):]
        job = json.loads(http(f"{base}/dap/job/{job_id}", headers={"Authorization": "Bearer " + token}))
        expected = expected_records(base, ns, table, job)
        files = sorted(glob.glob(os.path.join(job_dir, "*")))
        want_ext = {"jsonl": ".json.gz", "csv": ".csv.gz", "tsv": ".tsv.gz"}[fmt]
        if len(files) != len(job["objects"]) or not all(f.endswith(want_ext) for f in files):
            print(f"FAIL {job_dir}: files {files} do not match objects {job['objects']}")
            failures += 1
            continue
        problems = []
        if fmt == "jsonl":
            got = []
            for f in files:
                with gzip.open(f, "rt", encoding="utf-8", newline="") as fh:
                    got.extend(json.loads(line) for line in fh.read().split("\n") if line)
            if got != expected:
                problems.append(f"{len(got)} records differ from the {len(expected)} expected")
        else:
            offset = 0
            for f in files:
                with gzip.open(f, "rt", encoding="utf-8", newline="") as fh:
                    text = fh.read()
                n = max(0, (text.count("\n") if fmt == "tsv" else len(parse_csv(text))) - 1)
                problems += check_table_rows(fmt, text, expected[offset : offset + n])
                offset += n
            if offset != len(expected):
                problems.append(f"{offset} rows in files, expected {len(expected)}")
        kind = f"snapshot at {job['at']}" if "at" in job else f"incremental {job['since']}..{job['until']}"
        if problems:
            failures += 1
            print(f"FAIL {ns}.{table} {fmt} {kind}: " + "; ".join(problems[:5]))
        else:
            print(f"ok   {ns}.{table} {fmt} {kind}: {len(expected)} records match")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
