#!/usr/bin/env bash
# Database fidelity check: runs Instructure's official `dap initdb` and `dap syncdb`
# (instructure-dap-client 2.3.1 from PyPI, unmodified) against the DAP emulator into a
# fresh PostgreSQL database and a fresh MariaDB/MySQL database, and checks after every
# step that the replicated rows equal the emulator's expected rows: after initdb, after
# a syncdb whose window holds upserts and deletes, and after a schema bump (a new
# column and a new enum value). It also checks that the official client refuses what it
# is known to refuse: NaN/Infinity into MySQL, a free-form JSON object column, and an
# incremental after a reload (SnapshotRequired).
#
# Usage: scripts/official-db-check.sh            (from anywhere in the repo)
# Env:   DAP_CHECK_VENV      virtualenv location (default target/official-venv)
#        DAP_CHECK_PG_URL    PostgreSQL server, any database (default
#                            postgresql://postgres@127.0.0.1:5432/test)
#        DAP_CHECK_MYSQL_URL MariaDB/MySQL server (default mysql://root@127.0.0.1:3306/test)
#        DAP_CHECK_ROWS      rows per table (default 300)
#        DAP_EMULATOR_BIN    use this emulator binary instead of building one
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
venv=${DAP_CHECK_VENV:-$root/target/official-venv}
pg_admin=${DAP_CHECK_PG_URL:-postgresql://postgres@127.0.0.1:5432/test}
my_admin=${DAP_CHECK_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
rows=${DAP_CHECK_ROWS:-300}
ns=new_quizzes
two_way="quiz_sessions items"
start=$(date +%s)

# shellcheck source=scripts/official-common.sh
. "$root/scripts/official-common.sh"
official_venv "$venv"
emulator_binary

py() { "$venv/bin/python" "$root/scripts/official_db_check.py" "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dap-official-db-check.XXXXXX")
name="dap_official_check_$$_$(date +%s)"
pg_url="${pg_admin%/*}/$name"
my_url="${my_admin%/*}/$name"
emu_pid=
cleanup() {
    if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; fi
    py drop "$pg_admin" "$name" >/dev/null 2>&1 || true
    py drop "$my_admin" "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
start_emulator "$work/emulator.log" --rows-per-table "$rows"

echo "== fresh databases $name"
py create "$pg_admin" "$name"
py create "$my_admin" "$name"

dap() { "$venv/bin/dap" --non-interactive --loglevel warning "$@"; }
control() { curl -fsS -X POST -H 'Content-Type: application/json' -d "$2" "$base/_emulator/$1" >/dev/null; }

fail=0
run() { # run an official command that must succeed
    local label=$1; shift
    if dap "$@" >"$work/out.txt" 2>&1; then
        echo "ok   $label"
    else
        echo "FAIL $label (exit $?)"; sed 's/^/    /' "$work/out.txt" | tail -20; fail=1
    fi
}
refused() { # run an official command that must fail with a message matching $2
    local label=$1 pattern=$2; shift 2
    if dap "$@" >"$work/out.txt" 2>&1; then
        echo "FAIL $label: the official client accepted it"; fail=1
    elif grep -q -- "$pattern" "$work/out.txt"; then
        echo "ok   $label: refused ($pattern)"
    else
        echo "FAIL $label: refused for another reason"; sed 's/^/    /' "$work/out.txt" | tail -10; fail=1
    fi
}
compare() { py compare "$1" "$base" "$ns" "$2" || fail=1; }
each_db() { # each_db COMMAND TABLE...: run a command for every table on both servers
    local cmd=$1; shift
    for url in "$pg_url" "$my_url"; do
        for t in "$@"; do
            run "$cmd ${url%%:*} $t" "$cmd" --namespace "$ns" --table "$t" --connection-string "$url"
            compare "$url" "$t"
        done
    done
}

echo "== initdb"
each_db initdb $two_way
run "initdb postgresql item_analyses (NaN, Infinity)" initdb --namespace "$ns" --table item_analyses --connection-string "$pg_url"
compare "$pg_url" item_analyses
refused "initdb mysql item_analyses" "cannot store inf, -inf or NaN" initdb --namespace "$ns" --table item_analyses --connection-string "$my_url"
refused "initdb postgresql quiz_settings (free-form JSON object)" "JsonType" initdb --namespace "$ns" --table quiz_settings --connection-string "$pg_url"

echo "== one hour later: syncdb (upserts and deletes)"
control advance '{"seconds": 3600}'
each_db syncdb $two_way
run "syncdb postgresql item_analyses" syncdb --namespace "$ns" --table item_analyses --connection-string "$pg_url"
compare "$pg_url" item_analyses

echo "== schema bump (a new column, a new enum value), one hour later: syncdb"
for t in $two_way; do control schema/bump "{\"namespace\": \"$ns\", \"table\": \"$t\"}"; done
control advance '{"seconds": 3600}'
each_db syncdb $two_way

echo "== table reloaded: syncdb needs a snapshot"
control snapshot-required "{\"namespace\": \"$ns\", \"table\": \"items\"}"
control advance '{"seconds": 600}'
for url in "$pg_url" "$my_url"; do
    refused "syncdb ${url%%:*} items after a reload" "a new snapshot is required" syncdb --namespace "$ns" --table items --connection-string "$url"
    compare "$url" items
done

echo "== finished in $(($(date +%s) - start)) s"
if [ "$fail" -ne 0 ]; then
    echo "official database check: FAILED"
    exit 1
fi
echo "official database check: PASSED"
