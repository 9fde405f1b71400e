#!/usr/bin/env bash
# Inflate engines on DAP-like gzip objects: MB/s of inflated output per core (the
# process's own CPU time) and peak memory, one engine per process, engines alternating.
#
# Usage: bench/inflate.sh [--rounds N] [--mib M] [--results FILE]
#
#   --rounds N      rounds (each runs every engine on every file once; default 7)
#   --mib M         uncompressed MiB per object (default 128, the size of a DAP object)
#   --results FILE  also write the raw measurements (TSV) there
#
# Engines: dap-proto's streaming GzipDecoder on zlib-rs and on zlib-ng (flate2's backends;
# the binary is built both ways), ISA-L's igzip (isal-rs, streaming reader), libdeflate
# (libdeflater, whole member in memory; and "warm": its output buffer touched before the
# clock starts), and the CRC alone (dap-proto's, flate2::Crc: its share of the time).
# Files: the emulator's jsonl and tsv objects as it serves them (1 MiB gzip members,
# repeated), and generated DAP-like jsonl and tsv compressed by `gzip -6` (one member).
#
# Needs cmake (zlib-ng), nasm, autoconf, automake and libtool (ISA-L): on Debian
#   apt-get install -y cmake nasm autoconf automake libtool
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

rounds=7
mib=128
results_copy=
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift ;;
        --mib) mib=$2; shift ;;
        --results) results_copy=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
missing=0
for tool in cmake nasm autoconf automake libtoolize gzip curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; missing=1; }
done
[ "$missing" = 0 ] || { echo "Debian: apt-get install -y cmake nasm autoconf automake libtool gzip curl" >&2; exit 1; }

target_dir=${CARGO_TARGET_DIR:-$root/target}
work="$target_dir/inflate-bench"
mkdir -p "$work/bin"
manifest=bench/inflate/Cargo.toml
echo "== building (dap-proto on zlib-rs, then on zlib-ng; ISA-L; libdeflate)"
cargo build --release --quiet --manifest-path "$manifest" --target-dir "$target_dir/inflate-zlib-rs"
cp "$target_dir/inflate-zlib-rs/release/dap-inflate-bench" "$work/bin/zlib-rs"
cargo build --release --quiet --manifest-path "$manifest" --target-dir "$target_dir/inflate-zlib-ng" --features zlib-ng
cp "$target_dir/inflate-zlib-ng/release/dap-inflate-bench" "$work/bin/zlib-ng"
cargo build --release --quiet -p dap-emulator
emulator="$target_dir/release/dap-emulator"

echo "== data ($mib MiB per object)"
data="$work/data-$mib"
mkdir -p "$data"
for fmt in jsonl tsv; do
    if [ ! -s "$data/gen-$fmt.gz" ]; then
        "$work/bin/zlib-rs" gen "$fmt" "$mib" | gzip -6 >"$data/gen-$fmt.gz"
    fi
done
if [ ! -s "$data/emu-jsonl.gz" ] || [ ! -s "$data/emu-tsv.gz" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$emulator" --port "$port" --objects-per-job 1 --object-size-mib "$mib" >"$work/emulator.log" 2>&1 &
    epid=$!
    trap 'kill $epid 2>/dev/null || true' EXIT
    base="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do curl -fsS "$base/_emulator/now" >/dev/null 2>&1 && break; sleep 0.05; done
    for fmt in jsonl tsv; do
        url=$(bench/helper.py urls "$base" 'us-east-1#demo-client' demo-secret canvas users "$fmt")
        curl -fsS -o "$data/emu-$fmt.gz" "$url"
    done
    kill "$epid"; wait "$epid" 2>/dev/null || true
    trap - EXIT
fi
files=(emu-jsonl emu-tsv gen-jsonl gen-tsv)
for f in "${files[@]}"; do
    printf '%-10s %11d bytes gzip, %11d inflated\n' "$f" "$(stat -c %s "$data/$f.gz")" \
        "$(gzip -dc "$data/$f.gz" | wc -c)"
done

# run ENGINE FILE: one measurement (a TSV line) appended to the results
results="$work/results.tsv"
: >"$results"
run() {
    local engine=$1 file=$2 bin=zlib-rs
    case $engine in
        dap-ng) bin=zlib-ng; engine=dap ;;
        libdeflate*) [[ $file == gen-* ]] || return 0 ;; # single-member files only
    esac
    "$work/bin/$bin" run "$engine" "$data/$file.gz" | sed "s|$data/||; s|\.gz\t|\t|" >>"$results"
}
engines=(dap dap-ng isal libdeflate libdeflate-warm crc32)
echo "== $rounds rounds, engines alternating (load $(cut -d' ' -f1-3 /proc/loadavg))"
for f in "${files[@]}"; do for e in "${engines[@]}"; do run "$e" "$f"; done; done # warm-up
: >"$results"
for r in $(seq 1 "$rounds"); do
    # Rotate the order every round so that no engine always runs first or last.
    n=${#engines[@]}
    for f in "${files[@]}"; do
        for i in $(seq 0 $((n - 1))); do run "${engines[$(((i + r) % n))]}" "$f"; done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for eng, f, n, wall, cpu, peak in rows:
    by.setdefault((f, eng), []).append((int(n), float(wall), float(cpu), int(peak)))
files = sorted({f for f, _ in by})
engines = ["dap/zlib-rs", "dap/zlib-ng", "isal", "libdeflate", "libdeflate-warm", "crc32"]
print("MB/s = 10^6 inflated bytes per CPU second of the process (median over rounds);")
print("wall MB/s alongside; CPU s/GiB = CPU seconds per inflated GiB; peak = extra RSS")
print(f"{'file':10} {'engine':15} {'MB/s/core':>9} {'min':>6} {'max':>6} {'wall MB/s':>9} {'CPU s/GiB':>9} {'peak KiB':>9} {'vs zlib-rs':>10}")
for f in files:
    base = None
    for e in engines:
        v = by.get((f, e))
        if not v:
            continue
        rates = [n / c / 1e6 for n, _, c, _ in v]
        med = statistics.median(rates)
        wall = statistics.median(n / w / 1e6 for n, w, _, _ in v)
        per_gib = statistics.median(c / n * 2**30 for n, _, c, _ in v)
        peak = statistics.median(p for *_, p in v)
        base = base or med
        print(f"{f:10} {e:15} {med:9.0f} {min(rates):6.0f} {max(rates):6.0f} {wall:9.0f} {per_gib:9.3f} {peak:9.0f} {med / base:9.2f}x")
PY
[ -z "$results_copy" ] || cp "$results" "$results_copy"
