#!/usr/bin/env bash
# Side-by-side benchmarks of this project's `dap` and the official Python client
# (`instructure-dap-client` from PyPI, unmodified) against the DAP emulator on loopback.
#
# Usage: bench/compare.sh [--quick] [--runs N] [--object-mib M] [--objects K]
#                         [--job-seconds "2 3 4 6"] [--no-micro] [--results FILE]
#
#   --quick          routine check, under two minutes once built: 3 runs (2 for case 5,
#                    one job length), no core micro-benchmarks
#   (default)        full mode, for publication: 7 runs (3 for case 5, over four job
#                    lengths), the core micro-benchmarks
#   --cases "1 5"    run only these cases (1-7, and 8 for the micro-benchmarks)
#   --runs N         timed runs per client and case (after one warm-up run each)
#   --object-mib M   uncompressed MiB per object of the snapshot cases (default 64)
#   --objects K      objects per snapshot job (default 8; case 4 uses 4K)
#   --job-seconds L  job lengths (waiting + running) for case 5
#   --no-micro       skip the core and transport `cargo bench` runs
#   --results FILE   also write the raw measurements (TSV) there
#
# Env: DAP_BENCH_VENV  virtualenv of the official client (default target/official-venv,
#                      shared with scripts/official-client-check.sh)
#      CARGO_TARGET_DIR honoured (binaries are taken from its release/)
#      DAP_BENCH_DIR   scratch directory for downloads (default target/bench-work; on disk,
#                      as a real download would be)
#
# Every run is checked (exit status, file count); the two clients alternate
# (official, this, official, this, ...) so slow drifts in machine load hit both alike.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
runs=
object_mib=64
objects=8
job_seconds=
micro=1
results_copy=
cases=" 1 2 3 4 5 6 7 8 "
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --runs) runs=$2; shift ;;
        --object-mib) object_mib=$2; shift ;;
        --objects) objects=$2; shift ;;
        --job-seconds) job_seconds=$2; shift ;;
        --no-micro) micro=0 ;;
        --cases) cases=" $2 "; shift ;;
        --results) results_copy=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    runs=${runs:-3}; job_seconds=${job_seconds:-3}; micro=0; c2fb_runs=2
else
    runs=${runs:-7}; job_seconds=${job_seconds:-2 3 4.5 6}; c2fb_runs=3
fi
[ "$runs" -ge "${c2fb_runs}" ] || c2fb_runs=$runs

# ---- prerequisites: check and explain, never install silently
missing=0
if [ ! -x /usr/bin/time ]; then
    echo "missing /usr/bin/time (GNU time, for peak RSS). Install it with:" >&2
    echo "    apt-get update && apt-get install -y time" >&2
    missing=1
fi
for tool in curl python3 cargo; do
    if ! command -v "$tool" >/dev/null; then echo "missing $tool" >&2; missing=1; fi
done
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "python3 cannot create virtualenvs (Debian: apt-get install -y python3-venv)" >&2
    missing=1
fi
[ "$missing" = 0 ] || exit 1

want() { [[ $cases == *" $1 "* ]]; }
log() { printf '\n== %s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
started=$(date +%s)

log "building release binaries"
cargo build --release --quiet -p dap-cli -p dap-emulator
target_dir=${CARGO_TARGET_DIR:-$root/target}
ours="$target_dir/release/dap"
emulator="$target_dir/release/dap-emulator"

venv=${DAP_BENCH_VENV:-$root/target/official-venv}
if [ ! -x "$venv/bin/dap" ]; then
    log "creating virtualenv $venv and installing instructure-dap-client"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check instructure-dap-client
fi
official="$venv/bin/dap"
official_version=$("$venv/bin/pip" show instructure-dap-client 2>/dev/null | sed -n 's/^Version: //p')
ours_version=$("$ours" --version)

work=${DAP_BENCH_DIR:-$root/target/bench-work}
rm -rf "$work"
mkdir -p "$work"
results="$work/results.tsv"
: >"$results"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# start_emulator NAME ARGS...: starts one, sets $base; logs to $work/NAME.log
start_emulator() {
    local name=$1 port; shift
    port=$(free_port)
    "$emulator" --port "$port" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    base="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do
        if curl -fsS "$base/_emulator/now" >/dev/null 2>&1; then return; fi
        sleep 0.05
    done
    echo "emulator $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

export DAP_CLIENT_ID='us-east-1#demo-client' DAP_CLIENT_SECRET='demo-secret'
export DAP_TRACKING=false # the official client's usage tracking: off
unset DAP_CLI_POLL_INTERVAL_MS DAP_CLI_RETRY_BACKOFF_MS # our CLI's defaults
client_cmd() { # client_cmd official|this|curl ...: the command line of one client
    case $1 in
        official) echo "$official" ;;
        this) echo "$ours" ;;
    esac
}

# timed CASE CLIENT CMD...: runs CMD under /usr/bin/time -v, appends wall, peak RSS and
# CPU (user + system) seconds.
# Wall time is taken around the whole wrapper (EPOCHREALTIME, microseconds).
timed() {
    local case=$1 client=$2 t0 t1 rss cpu; shift 2
    t0=$EPOCHREALTIME
    if ! /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/stdout.txt" 2>"$work/stderr.txt"; then
        echo "FAILED: $client: $*" >&2; tail -20 "$work/stderr.txt" >&2; exit 1
    fi
    t1=$EPOCHREALTIME
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/time.txt")
    printf '%s\t%s\t%s\t%s\t%s\n' "$case" "$client" \
        "$(python3 -c "print(round($t1 - $t0, 6))")" "$rss" "$cpu" >>"$results"
}

# ab CASE PREPARE RUN CHECK: one warm-up run per client, then $runs alternating rounds.
# PREPARE CLIENT (untimed), RUN CLIENT (timed), CHECK CLIENT (untimed, must succeed).
ab() {
    local case=$1 prepare=$2 run=$3 check=$4 client i
    echo "-- $case (load $(load))"
    for client in official this; do "$prepare" "$client"; "$run" warmup "$client" >/dev/null; "$check" "$client"; done
    for i in $(seq 1 "$runs"); do
        for client in official this; do
            "$prepare" "$client"; "$run" "$case" "$client"; "$check" "$client"
        done
    done
    sed -i '/^warmup\t/d' "$results"
}

none() { :; }
flags=(--non-interactive --loglevel warning)

# ---- emulators: API (default synthetic data) and two bulk ones (1x and 4x the data)
log "starting emulators (objects: $objects x $object_mib MiB, and $((objects * 4)) x $object_mib MiB)"
start_emulator api
api=$base
start_emulator bulk1 --objects-per-job "$objects" --object-size-mib "$object_mib"
bulk1=$base
start_emulator bulk4 --objects-per-job "$((objects * 4))" --object-size-mib "$object_mib"
bulk4=$base
echo "load before: $(load)"

# ---- 1. list
run_list() { DAP_API_URL=$api timed "$1" "$2" "$(client_cmd "$2")" "${flags[@]}" list --namespace canvas; }
check_list() { [ "$(grep -c . "$work/stdout.txt")" -ge 10 ] || { echo "list printed too little" >&2; exit 1; }; }
want 1 && log "1. list --namespace canvas" && ab "1. list --namespace canvas" none run_list check_list

# ---- 2. schema
prep_schema() { rm -rf "$work/out"; }
run_schema() { DAP_API_URL=$api timed "$1" "$2" "$(client_cmd "$2")" "${flags[@]}" schema --namespace canvas --table users --output-directory "$work/out"; }
check_schema() { ls "$work"/out/users_schema_version_*.json >/dev/null; }
want 2 && log "2. schema --table users" && ab "2. schema --namespace canvas --table users" prep_schema run_schema check_schema

# ---- 3 and 4. snapshot of a bulk job, files kept gzipped; curl baseline on the same URLs
snap_url=
prep_snap() { rm -rf "$work/out"; sync; }
run_snap() { DAP_API_URL=$snap_url timed "$1" "$2" "$(client_cmd "$2")" "${flags[@]}" snapshot --namespace canvas --table users --format jsonl --output-directory "$work/out"; }
check_snap() {
    local n
    n=$(find "$work/out" -name '*.json.gz' | wc -l)
    [ "$n" = "$snap_objects" ] || { echo "$1 wrote $n objects, expected $snap_objects" >&2; exit 1; }
}
curl_baseline() { # curl_baseline CASE: parallel curl (4 at a time, as both clients) on fresh URLs
    local case=$1 i args=()
    "$root/bench/helper.py" urls "$snap_url" "$DAP_CLIENT_ID" "$DAP_CLIENT_SECRET" canvas users jsonl >"$work/urls.txt"
    rm -rf "$work/curl"; mkdir -p "$work/curl"; sync
    i=0
    while read -r u; do args+=(-o "$work/curl/$i.json.gz" "$u"); i=$((i + 1)); done <"$work/urls.txt"
    timed "$case" "curl -Z (4 parallel, unverified)" curl -fsS --parallel --parallel-max 4 "${args[@]}"
    [ "$(find "$work/curl" -name '*.json.gz' | wc -l)" = "$snap_objects" ]
}
snapshot_case() { # snapshot_case CASE URL OBJECTS
    local case=$1 i
    snap_url=$2 snap_objects=$3
    ab "$case" prep_snap run_snap check_snap
    curl_baseline warmup; sed -i '/^warmup\t/d' "$results"
    for i in $(seq 1 "$runs"); do curl_baseline "$case"; done
    rm -rf "$work/out" "$work/curl"
}
want 3 && log "3. snapshot, $objects x $object_mib MiB" && snapshot_case "3. snapshot $objects x $object_mib MiB (gzip kept)" "$bulk1" "$objects"
want 4 && log "4. snapshot, $((objects * 4)) x $object_mib MiB" && snapshot_case "4. snapshot $((objects * 4)) x $object_mib MiB (gzip kept)" "$bulk4" "$((objects * 4))"

# ---- 5. job completion to first byte: a fresh emulator per run (the server deduplicates
# queries); the job's creation time comes from its expires_at (created + 24 h), and a
# stats watcher (sampling every 5 ms) notes the job polls and the first storage request
c2fb_run() { # c2fb_run CASE CLIENT SECONDS
    local case=$1 client=$2 secs=$3 ms wpid
    ms=$(python3 -c "print(int($secs * 1000))")
    start_emulator c2fb --job-waiting-ms $((ms / 3)) --job-running-ms $((ms - ms / 3))
    local epid=${pids[-1]}
    nice -n -5 "$root/bench/helper.py" watch "$base" "$work/watch.json" &
    wpid=$!
    sleep 0.2
    rm -rf "$work/out"
    DAP_API_URL=$base "$(client_cmd "$client")" "${flags[@]}" snapshot --namespace canvas --table users \
        --format jsonl --output-directory "$work/out" >/dev/null 2>"$work/stderr.txt" ||
        { echo "FAILED: $client snapshot"; cat "$work/stderr.txt"; exit 1; } >&2
    sleep 0.05
    kill -TERM "$wpid"; wait "$wpid" || true
    local job created
    job=$(basename "$(ls -d "$work"/out/job_*)"); job=${job#job_}
    created=$("$root/bench/helper.py" created "$base" "$DAP_CLIENT_ID" "$DAP_CLIENT_SECRET" "$job")
    kill "$epid"; wait "$epid" 2>/dev/null || true
    python3 - "$work/watch.json" "$secs" "$case" "$client" "$created" >>"$results" <<'EOF'
import json, sys
w = json.load(open(sys.argv[1])); secs = float(sys.argv[2]); case, client = sys.argv[3:5]
done = float(sys.argv[5]) + secs  # the emulator's clock is the system clock (never advanced)
seen = [t for t in w["job_polls"] if t >= done - 0.005]  # the poll that saw it complete
print(f"{case}\t{client}\t{w['first_storage'] - done:.6f}\t0\t0")
if seen:
    print(f"{case.replace('completion to first byte', 'seeing it to first byte')}\t{client}\t{w['first_storage'] - seen[0]:.6f}\t0\t0")
EOF
}
want 5 && log "5. completion to first byte, jobs of $job_seconds s"
# (no warm-up: the earlier cases warmed both clients; each run costs a job length)
want 5 && for secs in $job_seconds; do
    case="5. completion to first byte, job ${secs} s"
    echo "-- $case (load $(load))"
    for i in $(seq 1 "$c2fb_runs"); do
        for client in official this; do c2fb_run "$case" "$client" "$secs"; done
    done
done

# ---- 6. snapshot --table all (the namespace's 10 tables, one after another)
prep_all() { rm -rf "$work/out"; }
run_all() { DAP_API_URL=$api timed "$1" "$2" "$(client_cmd "$2")" "${flags[@]}" snapshot --namespace canvas --table all --format jsonl --output-directory "$work/out"; }
check_all() { [ "$(find "$work/out" -name '*.gz' | wc -l)" -ge 10 ] || { echo "$1: too few files" >&2; exit 1; }; }
want 6 && log "6. snapshot --table all" && ab "6. snapshot --namespace canvas --table all" prep_all run_all check_all
rm -rf "$work/out"
echo "load after: $(load)"

# ---- 7 and micro-benchmarks: cargo bench (the transports' own in-process measurements)
if want 7; then
    log "7. dap-hyper: 200 concurrent schema requests (cargo bench -p dap-hyper --bench download -- schema)"
    cargo bench --quiet -p dap-hyper --bench download -- schema 2>/dev/null | tee "$work/bench-schema.txt"
fi
if [ "$micro" = 1 ] && want 8; then
    log "core micro-benchmarks: cargo bench -p dap-proto --bench session"
    cargo bench --quiet -p dap-proto --bench session 2>/dev/null | tee "$work/bench-session.txt"
    log "core micro-benchmarks: cargo bench -p dap-proto --bench gzip"
    cargo bench --quiet -p dap-proto --bench gzip 2>/dev/null | tee "$work/bench-gzip.txt"
    log "transport: cargo bench -p dap-hyper --bench download -- download"
    cargo bench --quiet -p dap-hyper --bench download -- download 2>/dev/null | tee "$work/bench-download.txt"
fi

log "results ($runs runs per client and case, medians; load now $(load))"
echo "machine: $(nproc) cores, $(free -m | awk '/^Mem:/ {print $2}') MiB memory; $(uname -sr)"
echo "clients: official instructure-dap-client $official_version; this: $ours_version"
echo
python3 "$root/bench/helper.py" summary "$results"
[ -z "$results_copy" ] || cp "$results" "$results_copy"
echo
echo "finished in $(($(date +%s) - started)) s"
