#!/usr/bin/env bash
# Peak RSS of downloading one job of many objects with each transport: the example
# clients (transports/*/examples/list_tables.rs: list, snapshot the first table, download
# it) against the emulator running in its own process, so the figure is the client's
# alone. Memory must stay flat in the number of objects.
#
# Usage: bench/objects.sh [OBJECTS ...]   (default: 2000 20000)
# Env:   CARGO_TARGET_DIR honoured; DAP_BENCH_DIR scratch directory (default
#        target/bench-objects)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
counts=${*:-2000 20000}
target_dir=${CARGO_TARGET_DIR:-$root/target}
work=${DAP_BENCH_DIR:-$root/target/bench-objects}
rm -rf "$work"
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install -y time)" >&2; exit 1; }

cargo build --release --quiet -p dap-emulator
for t in hyper ureq; do
    cargo build --release --quiet -p "dap-$t" --example list_tables
    cp "$target_dir/release/examples/list_tables" "$work/$t-client"
done

emulator_pid=
trap '[ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
printf 'objects\tclient\tpeak RSS MiB\tseconds\tfiles\n'
for n in $counts; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$target_dir/release/dap-emulator" --port "$port" --objects-per-job "$n" \
        --rows-per-table "$n" >"$work/emulator-$n.log" 2>&1 &
    emulator_pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.1)" 2>/dev/null && break
        sleep 0.1
    done
    for t in hyper ureq; do
        out="$work/out-$t-$n"
        # The hyper example takes a namespace (and snapshots its first table), the
        # ureq one a table of canvas: both snapshot canvas.accounts.
        first=canvas
        [ "$t" = ureq ] && first=accounts
        DAP_API_URL="http://127.0.0.1:$port" DAP_CLIENT_ID='us-east-1#demo-client' \
            DAP_CLIENT_SECRET=demo-secret /usr/bin/time -f '%M %e' -o "$work/time" \
            "$work/$t-client" "$first" "$out" >"$work/$t-$n.log"
        read -r kib secs <"$work/time"
        files=$(find "$out" -type f | wc -l)
        printf '%s\t%s\t%.1f\t%s\t%s\n' "$n" "$t" "$(echo "$kib / 1024" | bc -l)" "$secs" "$files"
        rm -rf "$out"
    done
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
    emulator_pid=
done
