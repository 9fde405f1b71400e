#!/usr/bin/env bash
# Two figures of the release `dap` binary against the emulator running in its own
# process (so each figure is the CLI's alone):
#
# 1. Peak RSS of `dap snapshot` of one job of many objects (memory must stay flat in
#    the number of objects): N objects against a 1-object job measured in the same run,
#    and against the hyper transport's example client (the transport alone, as in
#    bench/objects.sh) on the same job.
# 2. How long a download stalled mid-object takes to recover with the CLI's default
#    low-speed rule (1 KiB in 30 s): the same snapshot with storage trickling one byte a
#    second after its first 4 KiB, against the same snapshot without the fault.
#
# Usage: bench/cli-hardening.sh [OBJECTS ...]   (default: 2000 20000)
# Env:   CARGO_TARGET_DIR honoured; DAP_BENCH_DIR scratch directory (default
#        target/bench-cli-hardening), put it on tmpfs to leave the disk out of it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
counts=${*:-2000 20000}
target_dir=${CARGO_TARGET_DIR:-$root/target}
work=${DAP_BENCH_DIR:-$root/target/bench-cli-hardening}
rm -rf "$work"
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install -y time)" >&2; exit 1; }

cargo build --release --quiet -p dap-emulator -p dap-cli
cargo build --release --quiet -p dap-hyper --example hyper_snapshot
emulator="$target_dir/release/dap-emulator"
dap="$target_dir/release/dap"
transport="$target_dir/release/examples/hyper_snapshot"

emulator_pid=
stop_emulator() {
    if [ -n "$emulator_pid" ]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
        emulator_pid=
    fi
}
trap stop_emulator EXIT

# start_emulator ARGS...: the emulator on a free port; sets $port.
start_emulator() {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$emulator" --port "$port" "$@" >"$work/emulator.log" 2>&1 &
    emulator_pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null && return
        sleep 0.1
    done
    echo "the emulator did not start" >&2
    exit 1
}

# snapshot NAME: `dap snapshot` of canvas.accounts under /usr/bin/time -v; prints the
# peak RSS (MiB), the wall seconds and the files written.
snapshot() {
    local out="$work/out-$1"
    DAP_API_URL="http://127.0.0.1:$port" DAP_CLIENT_ID='us-east-1#demo-client' \
        DAP_CLIENT_SECRET=demo-secret /usr/bin/time -v -o "$work/time-$1" \
        "$dap" --non-interactive snapshot --namespace canvas --table accounts \
        --output-directory "$out" >"$work/dap-$1.log" 2>&1 \
        || { echo "dap failed, see $work/dap-$1.log" >&2; exit 1; }
    local kib wall files
    kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time-$1")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time-$1")
    files=$(find "$out" -type f | wc -l)
    rm -rf "$out"
    printf '%.1f\t%s\t%s' "$(echo "$kib / 1024" | bc -l)" "$wall" "$files"
}

# transport NAME: the hyper example client (list, snapshot the first table of canvas,
# download it); prints its peak RSS (MiB).
transport() {
    local out="$work/out-$1"
    DAP_API_URL="http://127.0.0.1:$port" DAP_CLIENT_ID='us-east-1#demo-client' \
        DAP_CLIENT_SECRET=demo-secret /usr/bin/time -f '%M' -o "$work/time-$1" \
        "$transport" canvas "$out" >"$work/transport-$1.log" 2>&1
    rm -rf "$out"
    printf '%.1f' "$(echo "$(cat "$work/time-$1") / 1024" | bc -l)"
}

echo "== peak RSS of dap snapshot, one job of N objects"
printf 'objects\tdap peak RSS MiB\twall\tfiles\ttransport alone MiB\n'
for n in 1 $counts; do
    start_emulator --objects-per-job "$n" --rows-per-table "$n"
    printf '%s\t%s\t%s\n' "$n" "$(snapshot "objects-$n")" "$(transport "objects-$n")"
    stop_emulator
done

echo
echo "== recovery of a stalled download, default low-speed rule"
printf 'case\tpeak RSS MiB\twall\tfiles\n'
# Four 32 KiB objects (jsonl of the accounts table); storage answers the first download
# with 4 KiB, then one byte a second.
stall='{"rules": [{"endpoint": "storage", "count": 1,
  "action": {"trickle": {"bytes": 1, "interval_millis": 1000, "after_bytes": 4096}}}]}'
start_emulator --objects-per-job 4 --rows-per-table 2000
printf 'no fault\t%s\n' "$(snapshot plain)"
stop_emulator
start_emulator --objects-per-job 4 --rows-per-table 2000 --faults-json "$stall"
printf 'stalled\t%s\n' "$(snapshot stalled)"
stop_emulator
grep -h "resumed" "$work/dap-stalled.log" || echo "(no resume logged)"
