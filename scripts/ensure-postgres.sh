#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the database tests:
# installs Debian's `postgresql` if it is missing, starts the cluster if it is stopped.
# A server named by DAP_TEST_DATABASE_URL is used as it is.
set -euo pipefail

if [ -n "${DAP_TEST_DATABASE_URL:-}" ]; then
    echo "using DAP_TEST_DATABASE_URL for the database tests"
    exit 0
fi

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ready; then
    echo "PostgreSQL is running on 127.0.0.1:5432"
    exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql postgresql-client >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "starting PostgreSQL $version"
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 60); do
    ready && break
    sleep 0.5
done
ready || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }

# The tests connect as postgres without a password over TCP (trust, as on the
# project's machines); a fresh install asks for one, so allow local TCP logins.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    hba=$(su postgres -c "psql -Atc 'SHOW hba_file'")
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
    sed -i -E 's/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
    su postgres -c "psql -Atc 'SELECT pg_reload_conf()'" >/dev/null
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null
echo "PostgreSQL is running on 127.0.0.1:5432"
