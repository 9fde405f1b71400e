#!/usr/bin/env bash
# Fidelity check: runs Instructure's official `dap` CLI (instructure-dap-client from
# PyPI, unmodified) against the DAP emulator and verifies that every command succeeds
# and that the downloaded files decode and match the emulator's data.
#
# Usage: scripts/official-client-check.sh            (from anywhere in the repo)
# Env:   DAP_CHECK_VENV  virtualenv location (default target/official-venv)
#        DAP_CHECK_TABLES tables to query (default "courses submissions")
#        DAP_EMULATOR_BIN use this emulator binary instead of building one
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
venv=${DAP_CHECK_VENV:-$root/target/official-venv}
tables=${DAP_CHECK_TABLES:-courses submissions}
ns=canvas
start=$(date +%s)

# shellcheck source=scripts/official-common.sh
. "$root/scripts/official-common.sh"
official_venv "$venv"
emulator_binary
checks_start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/dap-official-check.XXXXXX")
emu_pid=
cleanup() {
    if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
start_emulator "$work/emulator.log"
dap() { "$venv/bin/dap" --non-interactive --loglevel warning "$@"; }
check() { "$venv/bin/python" "$root/scripts/official_client_check.py" "$base" "$DAP_CLIENT_ID" "$DAP_CLIENT_SECRET" "$@"; }
api_job() { # prints the `at` or `until` of the only job under a directory
    local dir=$1 job token
    job=$(basename "$(ls -d "$dir"/job_*)"); job=${job#job_}
    token=$(curl -fsS -A check -u "$DAP_CLIENT_ID:$DAP_CLIENT_SECRET" -d grant_type=client_credentials "$base/ids/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -fsS -A check -H "Authorization: Bearer $token" "$base/dap/job/$job" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j.get("at") or j["until"])'
}

fail=0
run() { # run a command, report it
    local name=$1; shift
    if "$@" >"$work/out.txt" 2>&1; then
        echo "ok   $name"
    else
        echo "FAIL $name (exit $?)"; sed 's/^/    /' "$work/out.txt" | tail -20; fail=1
    fi
}

echo "== dap list"
run "dap list --namespace $ns" dap list --namespace "$ns"
expected_tables=$(curl -fsS -A check -u "$DAP_CLIENT_ID:$DAP_CLIENT_SECRET" -d grant_type=client_credentials "$base/ids/auth/login" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' |
    { read -r t; curl -fsS -A check -H "Authorization: Bearer $t" "$base/dap/query/$ns/table"; } |
    python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["tables"]))')
if dap list --namespace "$ns" 2>/dev/null | grep -v '^\s*$' | diff -q - <(echo "$expected_tables") >/dev/null; then
    echo "ok   list output matches the emulator's tables"
else
    echo "FAIL list output differs"; fail=1
fi

echo "== dap schema"
run "dap schema --table all" dap schema --namespace "$ns" --table all --output-directory "$work/schema"
n_schema=$(ls "$work/schema" | wc -l)
if [ "$n_schema" -eq "$(echo "$expected_tables" | wc -l)" ]; then
    echo "ok   $n_schema schema files written"
else
    echo "FAIL $n_schema schema files"; fail=1
fi

declare -A at
echo "== dap snapshot"
for table in $tables; do
    for fmt in jsonl csv tsv; do
        dir="$work/snapshot-$table-$fmt"
        run "dap snapshot $table $fmt" dap snapshot --namespace "$ns" --table "$table" --format "$fmt" --output-directory "$dir"
        check "$ns" "$table" "$fmt" "$dir" || fail=1
        at[$table-$fmt]=$(api_job "$dir")
    done
done

echo "== advancing the emulator clock by one hour"
curl -fsS -X POST -H 'Content-Type: application/json' -d '{"seconds": 3600}' "$base/_emulator/advance"
echo

echo "== dap incremental (since = snapshot at)"
for table in $tables; do
    for fmt in jsonl csv tsv; do
        dir="$work/incremental-$table-$fmt"
        run "dap incremental $table $fmt --since ${at[$table-$fmt]}" \
            dap incremental --namespace "$ns" --table "$table" --format "$fmt" --since "${at[$table-$fmt]}" --output-directory "$dir"
        check "$ns" "$table" "$fmt" "$dir" || fail=1
    done
done

echo "== dap incremental with --until (chained window)"
since=${at[courses-jsonl]}
until=$(python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat('$since'.replace('Z','+00:00'))+datetime.timedelta(minutes=30); print(t.strftime('%Y-%m-%dT%H:%M:%SZ'))")
dir="$work/incremental-until"
run "dap incremental courses csv --since $since --until $until" \
    dap incremental --namespace "$ns" --table courses --format csv --since "$since" --until "$until" --output-directory "$dir"
check "$ns" courses csv "$dir" || fail=1

echo "== emulator stats"
curl -fsS "$base/_emulator/stats"; echo
creds=$(curl -fsS "$base/_emulator/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storage_with_credentials"])')
if [ "$creds" != 0 ]; then echo "FAIL the official client sent credentials to storage $creds times"; fail=1; fi

echo "== finished in $(($(date +%s) - start)) s ($(($(date +%s) - checks_start)) s of checks after install and build)"
if [ "$fail" -ne 0 ]; then
    echo "official client check: FAILED"
    exit 1
fi
echo "official client check: PASSED"
