#!/usr/bin/env bash
# Database replication, side by side: this project's `dap initdb`/`syncdb` against the
# official Python client's (instructure-dap-client 2.3.1, unmodified), on the DAP
# emulator and the same database server, with the server's own bulk load of the same
# rows as the floor for initdb: `psql \copy` on PostgreSQL, the `mariadb` client's
# `LOAD DATA LOCAL INFILE` on MySQL/MariaDB.
#
# Usage: bench/db-compare.sh [--server postgresql|mysql] [--rows N] [--changes N]
#                            [--namespace NS] [--table T] [--runs N] [--results FILE]
#
#   --server S     postgresql (default) or mysql (MariaDB or MySQL)
#   --rows N       rows of the table (default 600000; 0 keeps the emulator's own size)
#   --changes N    changes in the syncdb window (default 150000), made by a change every
#                  10 ms and moving the clock on by N/100 s
#   --advance S    move the clock on by S seconds instead, with the emulator's own change
#                  rate (for new_quizzes quiz_sessions: --rows 0 --advance 3600, about
#                  123,000 changes)
#   --namespace NS namespace of the table (default canvas)
#   --table T      emulated table (default submissions; new_quizzes quiz_sessions is the
#                  emulator's wide benchmark table, about 130 MiB of TSV at 600k rows)
#   --runs N       timed runs of each case per client (default 1)
#   --results FILE also write the measurements (TSV) there
#
# Env: DAP_BENCH_VENV     virtualenv of the official client (default target/official-venv,
#                         shared with scripts/official-common.sh, which installs it)
#      DAP_TEST_DATABASE_URL  PostgreSQL server (default postgresql://postgres@127.0.0.1:5432/postgres)
#      DAP_TEST_MYSQL_URL     MySQL/MariaDB server (default mysql://root@127.0.0.1:3306/test);
#                             the floor's file is written by SELECT ... INTO OUTFILE, so the
#                             server must run on this machine
#      CARGO_TARGET_DIR   honoured (binaries from its release/)
#
# Each case reports wall time, CPU (user + system) and peak RSS (GNU time); every run
# is checked (exit status, row count equal across clients).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
rows=600000
changes=150000
table=submissions
ns=canvas
advance=
runs=1
results_copy=
server_kind=postgresql
while [ $# -gt 0 ]; do
    case $1 in
        --server) server_kind=$2; shift ;;
        --rows) rows=$2; shift ;;
        --changes) changes=$2; shift ;;
        --table) table=$2; shift ;;
        --namespace) ns=$2; shift ;;
        --advance) advance=$2; shift ;;
        --runs) runs=$2; shift ;;
        --results) results_copy=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

target=${CARGO_TARGET_DIR:-$root/target}
venv=${DAP_BENCH_VENV:-$root/target/official-venv}
case $server_kind in
    postgresql)
        server=${DAP_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
        floor_name=psql-copy
        admin() { psql "$server" -v ON_ERROR_STOP=1 -qAt "$@"; }
        create_db() { admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""; }
        drop_db() { admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"; }
        count() { psql "$(db_url "$1")" -qAt -c "SELECT count(*) FROM $ns.$table"; }
        ;;
    mysql)
        server=${DAP_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
        floor_name=load-data
        # host, port, user and password of the URL, for the mariadb client
        read -r my_host my_port my_user my_pass < <(python3 -c "
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1])
print(p.hostname or '127.0.0.1', p.port or 3306, u.unquote(p.username or 'root'), u.unquote(p.password or '') or '-')" "$server")
        [ "$my_pass" = - ] && my_pass=
        my() { MYSQL_PWD="$my_pass" mariadb --protocol=tcp -h "$my_host" -P "$my_port" -u "$my_user" "$@"; }
        create_db() { my -e "DROP DATABASE IF EXISTS \`$1\`; CREATE DATABASE \`$1\` CHARACTER SET utf8mb4"; }
        drop_db() { my -e "DROP DATABASE IF EXISTS \`$1\`"; }
        count() { my -N -e "SELECT count(*) FROM \`${ns}__$table\`" "$1"; }
        ;;
    *) echo "unknown server $server_kind (postgresql or mysql)" >&2; exit 2 ;;
esac
db_url() { echo "${server%/*}/$1"; }

echo "== building (release)"
cargo build --release --quiet -p dap-cli -p dap-emulator
. scripts/official-common.sh
official_venv "$venv"

work=$(mktemp -d "${TMPDIR:-/tmp}/dap-db-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# One change every 10 ms: advancing the clock by changes/100 seconds makes the window.
emu_args=()
[ "$rows" != 0 ] && emu_args+=(--rows-per-table "$rows")
if [ -z "$advance" ]; then
    emu_args+=(--change-interval 0.01)
    advance=$((changes / 100))
fi
"$target/release/dap-emulator" --port "$port" "${emu_args[@]}" >"$work/emulator.log" 2>&1 &
emu_pid=$!
dbs=()
cleanup() {
    kill "$emu_pid" 2>/dev/null || true
    wait "$emu_pid" 2>/dev/null || true
    for d in "${dbs[@]}"; do drop_db "$d" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fsS "$base/_emulator/now" >/dev/null 2>&1 && break; sleep 0.1; done

export DAP_API_URL="$base" DAP_CLIENT_ID='us-east-1#demo-client' DAP_CLIENT_SECRET='demo-secret' DAP_TRACKING=false
results="$work/results.tsv"
printf 'case\tclient\trun\twall_s\tcpu_s\tpeak_rss_mib\n' >"$results"

# db_name TAG: the name of a scratch database; fresh_db NAME creates it (and the clean-up
# drops it; not in a subshell, so that the list of databases is the script's).
db_name() { echo "dap_bench_$$_$1"; }
fresh_db() {
    create_db "$1"
    dbs+=("$1")
}

# timed CASE CLIENT RUN command...: runs it under GNU time, records wall, CPU, RSS.
timed() {
    local case=$1 client=$2 run=$3; shift 3
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        echo "FAILED: $case $client: $*" >&2; tail -20 "$work/err" >&2; exit 1; }
    read -r wall user sys rss <"$work/time"
    local cpu mib
    cpu=$(python3 -c "print(round($user + $sys, 2))")
    mib=$(python3 -c "print(round($rss / 1024, 1))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$client" "$run" "$wall" "$cpu" "$mib" >>"$results"
    printf '   %-8s %-9s run %s: %6.2f s wall, %6.2f s CPU, %7.1f MiB peak RSS\n' "$case" "$client" "$run" "$wall" "$cpu" "$mib"
}


# export_rows DB: our copy of the table as the floor's input (decompressed, in the
# server's bulk-load text format), into $work/rows.tsv
export_rows() {
    if [ "$server_kind" = postgresql ]; then
        psql "$(db_url "$1")" -qAt -c "\\copy $ns.$table to '$work/rows.tsv'"
    else
        chmod 777 "$work"
        my -e "SELECT * FROM \`${ns}__$table\` INTO OUTFILE '$work/rows.tsv' CHARACTER SET utf8mb4" "$1"
    fi
    echo "   $(wc -c <"$work/rows.tsv") bytes of decompressed rows"
}

# floor RUN OURS FLOOR: the server's own bulk load of those rows into an empty copy of
# the table, timed
floor() {
    if [ "$server_kind" = postgresql ]; then
        pg_dump --schema-only "$(db_url "$2")" | psql "$(db_url "$3")" -q -v ON_ERROR_STOP=1 >/dev/null
        timed initdb "$floor_name" "$1" psql "$(db_url "$3")" -v ON_ERROR_STOP=1 -qc "\\copy $ns.$table from '$work/rows.tsv'"
    else
        MYSQL_PWD="$my_pass" mariadb-dump --protocol=tcp -h "$my_host" -P "$my_port" -u "$my_user" \
            --no-data "$2" "${ns}__$table" | my "$3"
        timed initdb "$floor_name" "$1" env MYSQL_PWD="$my_pass" mariadb --protocol=tcp -h "$my_host" \
            -P "$my_port" -u "$my_user" --local-infile=1 "$3" \
            -e "LOAD DATA LOCAL INFILE '$work/rows.tsv' INTO TABLE \`${ns}__$table\` CHARACTER SET utf8mb4"
    fi
}

echo "== warming the emulator's snapshot of $ns.$table ($rows rows)"
ours_warm=$(db_name warm); fresh_db "$ours_warm"
"$target/release/dap" --non-interactive --loglevel warning initdb --namespace "$ns" --table "$table" \
    --connection-string "$(db_url "$ours_warm")"
echo "   $(count "$ours_warm") rows"
export_rows "$ours_warm"

for run in $(seq 1 "$runs"); do
    echo "== initdb, run $run"
    off=$(db_name "off_$run"); ours=$(db_name "ours_$run"); floor=$(db_name "floor_$run")
    fresh_db "$off"; fresh_db "$ours"; fresh_db "$floor"
    timed initdb official "$run" "$venv/bin/dap" --non-interactive --loglevel warning initdb \
        --namespace "$ns" --table "$table" --connection-string "$(db_url "$off")"
    timed initdb dap-rs "$run" "$target/release/dap" --non-interactive --loglevel warning initdb \
        --namespace "$ns" --table "$table" --connection-string "$(db_url "$ours")"
    # The floor: the same rows, already decompressed, into the same (empty) table.
    floor "$run" "$ours" "$floor"
    [ "$(count "$off")" = "$(count "$ours")" ] && [ "$(count "$ours")" = "$(count "$floor")" ] || {
        echo "row counts differ: official $(count "$off"), ours $(count "$ours"), floor $(count "$floor")" >&2; exit 1; }

    echo "== syncdb of the window after the clock moved on by $advance s, run $run"
    curl -fsS -X POST "$base/_emulator/advance?seconds=$advance" >/dev/null
    timed syncdb official "$run" "$venv/bin/dap" --non-interactive --loglevel warning syncdb \
        --namespace "$ns" --table "$table" --connection-string "$(db_url "$off")"
    timed syncdb dap-rs "$run" "$target/release/dap" --json --non-interactive --loglevel warning syncdb \
        --namespace "$ns" --table "$table" --connection-string "$(db_url "$ours")"
    python3 -c "import json,sys; t=json.load(open('$work/out'))['tables'][0]; print('   window: %d changes (%d upserted, %d deleted)' % (t['lines'], t['upserted'], t['deleted']))"
    [ "$(count "$off")" = "$(count "$ours")" ] || { echo "row counts differ after syncdb" >&2; exit 1; }
done

echo
echo "== medians"
python3 - "$results" "$floor_name" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
floor = sys.argv[2]
def med(case, client, key):
    v = [float(r[key]) for r in rows if r["case"] == case and r["client"] == client]
    return statistics.median(v) if v else float("nan")
print("| case | client | wall s | CPU s | peak RSS MiB |")
print("| --- | --- | ---: | ---: | ---: |")
for case in ("initdb", "syncdb"):
    for client in ("official", "dap-rs", floor):
        w = med(case, client, "wall_s")
        if w == w:
            print(f"| {case} | {client} | {w:.2f} | {med(case, client, 'cpu_s'):.2f} | {med(case, client, 'peak_rss_mib'):.1f} |")
i_off, i_ours, i_floor = (med("initdb", c, "wall_s") for c in ("official", "dap-rs", floor))
s_off, s_ours = (med("syncdb", c, "wall_s") for c in ("official", "dap-rs"))
print()
print(f"initdb: {i_off / i_ours:.1f}x faster than the official client; {i_ours / i_floor:.2f}x the {floor} floor")
print(f"syncdb: {s_off / s_ours:.1f}x faster than the official client")
EOF
if [ -n "$results_copy" ]; then cp "$results" "$results_copy"; fi
