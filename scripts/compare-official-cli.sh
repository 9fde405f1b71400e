#!/usr/bin/env bash
# Compares this project's `dap` with Instructure's official `dap` CLI
# (instructure-dap-client from PyPI, unmodified): both run against ONE emulator with the
# same arguments, and the script diffs their file trees, their decompressed data, their
# schema files (byte for byte), `list` output and exit codes.
#
# Job ids and object file names are chosen by the server, so two runs may name their
# job directories differently; the trees are compared with each `job_<id>/` replaced by
# the table it holds (from the CLI's log), and the data by decompressed content.
#
# Usage: scripts/compare-official-cli.sh        (from anywhere in the repo)
# Env:   DAP_COMPARE_VENV   virtualenv of the official client (default target/official-venv)
#        DAP_EMULATOR_BIN   emulator binary to use (default: built here)
#        DAP_BIN            our dap binary to use (default: built here)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
venv=${DAP_COMPARE_VENV:-$root/target/official-venv}
ns=canvas

if [ ! -x "$venv/bin/dap" ]; then
    echo "== creating virtualenv $venv and installing instructure-dap-client"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check instructure-dap-client
fi
echo "== official client: $("$venv/bin/dap" --version 2>/dev/null || echo unknown)"

if [ -z "${DAP_EMULATOR_BIN:-}" ] || [ -z "${DAP_BIN:-}" ]; then
    echo "== building the emulator and dap"
    cargo build --quiet -p dap-emulator --bin dap-emulator -p dap-cli --bin dap
fi
emulator=${DAP_EMULATOR_BIN:-$root/target/debug/dap-emulator}
ours=${DAP_BIN:-$root/target/debug/dap}
echo "== ours: $("$ours" --version)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d "${TMPDIR:-/tmp}/dap-compare.XXXXXX")
# One change per table per hour: nothing changes while the two CLIs run one after the
# other, so their snapshots hold the same rows.
"$emulator" --port "$port" --change-interval 3600 --objects-per-job 2 >"$work/emulator.log" 2>&1 &
emu_pid=$!
cleanup() {
    kill "$emu_pid" 2>/dev/null || true
    wait "$emu_pid" 2>/dev/null || true
    if [ -n "${DAP_COMPARE_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$base/_emulator/now', timeout=1)" 2>/dev/null; then break; fi
    sleep 0.1
done

export DAP_API_URL="$base"
export DAP_CLIENT_ID='us-east-1#demo-client'
export DAP_CLIENT_SECRET='demo-secret'
export DAP_TRACKING=false
official() { "$venv/bin/dap" --no-tracking --non-interactive "$@"; }
rust() { "$ours" --no-tracking --non-interactive "$@"; }

# Fixed, whole-second windows in the past: deterministic incrementals.
read -r since until <<<"$(python3 -c '
import datetime as d
now = d.datetime.now(d.timezone.utc).replace(microsecond=0, second=0, minute=0)
f = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
print(f(now - d.timedelta(days=3)), f(now - d.timedelta(days=1)))')"

fail=0
cases=()
compare() { # name, args...: runs both CLIs with the same arguments in their own directory
    local name=$1; shift
    cases+=("$name")
    local rc_o=0 rc_r=0
    (cd "$work" && mkdir -p "official/$name" "rust/$name" &&
        cd "official/$name" && official "$@" >stdout.txt 2>stderr.txt) || rc_o=$?
    (cd "$work/rust/$name" && rust "$@" >stdout.txt 2>stderr.txt) || rc_r=$?
    echo "$rc_o" >"$work/official/$name/exit.txt"
    echo "$rc_r" >"$work/rust/$name/exit.txt"
    if [ "$rc_o" = "$rc_r" ]; then
        echo "ok   $name: both exit $rc_o"
    else
        echo "FAIL $name: official exit $rc_o, ours $rc_r"; fail=1
    fi
}

echo "== running both CLIs (since=$since until=$until)"
compare list list --namespace "$ns"
compare schema-all schema --namespace "$ns" --table all
compare snapshot-jsonl snapshot --namespace "$ns" --table accounts,users
compare snapshot-csv snapshot --namespace "$ns" --table courses --format csv --output-directory out
compare snapshot-tsv snapshot --namespace "$ns" --table enrollments --format tsv --output-directory out
compare incremental-jsonl incremental --namespace "$ns" --table accounts,submissions --since "$since" --until "$until"
compare incremental-csv incremental --namespace "$ns" --table users --format csv --since "$since" --until "$until" --output-directory out
compare failing-table snapshot --namespace "$ns" --table accounts,nosuch
(
    unset DAP_CLIENT_SECRET
    compare missing-secret list --namespace "$ns"
) || fail=1
DAP_CLIENT_SECRET=wrong-secret compare wrong-secret list --namespace "$ns"

echo "== comparing file trees and contents"
python3 - "$work" "${cases[@]}" <<'PY' || fail=1
import gzip, hashlib, json, os, re, sys

work, cases = sys.argv[1], sys.argv[2:]
JOB_RE = re.compile(r"job_([0-9A-Za-z_-]+)")

def job_tables(case_dir):
    """Maps job id -> table, from the log lines both CLIs write
    ("Starting snapshot of table 'x'" ... "downloaded to folder: .../job_<id>")."""
    text = open(os.path.join(case_dir, "stderr.txt"), errors="replace").read()
    table, out = None, {}
    for line in text.splitlines():
        m = re.search(r"of table '([^']+)'", line)
        if m and "Starting" in line:
            table = m.group(1)
        m = re.search(r"downloaded to folder: (\S+)", line)
        if m and table:
            jm = JOB_RE.search(os.path.basename(m.group(1).rstrip("/")))
            if jm:
                out[jm.group(1)] = table
    return out

def content(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw

def raw_tree(side, case):
    d = os.path.join(work, side, case)
    return sorted(
        os.path.relpath(os.path.join(p, n), d)
        for p, _, names in os.walk(d)
        for n in names
        if n not in ("stdout.txt", "stderr.txt", "exit.txt")
    )

def snapshot(side, case):
    d = os.path.join(work, side, case)
    tables = job_tables(d)
    files, data = [], {}
    for dirpath, _, names in os.walk(d):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), d)
            if rel in ("stdout.txt", "stderr.txt", "exit.txt"):
                continue
            parts = rel.split(os.sep)
            jobs = [p for p in parts if p.startswith("job_")]
            if jobs:
                job = jobs[0][4:]
                table = tables.get(job)
                if table is None:
                    print(f"note {side}/{case}: no log line names the table of job {job}")
                    table = "?"
                key = os.sep.join(p if p != jobs[0] else f"job_<{table}>" for p in parts[:-1])
                # Object names carry server-chosen ids: keep the extension only.
                ext = "".join(re.findall(r"\.[a-z]+", n))
                files.append(f"{key}/<object>{ext}")
                data.setdefault(f"{key} (decompressed lines)", []).extend(content(os.path.join(dirpath, n)).splitlines())
            else:
                files.append(rel)
                data[rel] = open(os.path.join(dirpath, n), "rb").read()
    for k, v in data.items():
        if isinstance(v, list):
            # Rows are unordered across objects; headers repeat per object.
            data[k] = hashlib.sha256(b"\n".join(sorted(set(v) if k.endswith("lines)") else v))).hexdigest() + f" ({len(v)} lines)"
    return sorted(files), data

failed = False
for case in cases:
    of, od = snapshot("official", case)
    rf, rd = snapshot("rust", case)
    problems, notes = [], []
    if of != rf:
        problems.append(f"file trees differ:\n      official: {of}\n      ours:     {rf}")
    for k in sorted(set(od) | set(rd)):
        if od.get(k) == rd.get(k):
            continue
        problems.append(f"{k} differs")
    if case == "list":
        o = open(os.path.join(work, "official", case, "stdout.txt")).read()
        r = open(os.path.join(work, "rust", case, "stdout.txt")).read()
        if o != r:
            problems.append("list stdout differs")
    n_files = len(of)
    if problems:
        failed = True
        print(f"FAIL {case}:")
        for p in problems:
            print("    " + p)
    else:
        same_ids = " (paths identical, job ids included)" if raw_tree("official", case) == raw_tree("rust", case) else ""
        print(f"ok   {case}: same tree ({n_files} files){same_ids}, same decompressed data")
        if notes:
            print(f"     {len(notes)} schema file(s) hold the same JSON formatted the same way, keys in sorted order "
                  f"instead of the server's (dap-proto keeps schemas as sorted maps)")
sys.exit(1 if failed else 0)
PY

echo "== secrets"
if grep -rl "wrong-secret\|demo-secret" "$work/rust" >/dev/null 2>&1; then
    echo "FAIL our output contains a secret"; grep -rl "wrong-secret\|demo-secret" "$work/rust"; fail=1
else
    echo "ok   no secret in any of our outputs"
fi

if [ "$fail" -ne 0 ]; then
    echo "comparison with the official CLI: DIFFERENCES FOUND"
    exit 1
fi
echo "comparison with the official CLI: same file trees, exit codes and content (notes above, if any)"
