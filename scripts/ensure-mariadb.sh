#!/usr/bin/env bash
# Makes sure a MariaDB server answers on 127.0.0.1:3306 for the database tests:
# installs Debian's `mariadb-server` if it is missing, starts it if it is stopped
# (the runtime directory /run/mysqld, owned by mysql, is created first). A server named
# by DAP_TEST_MYSQL_URL is used as it is.
set -euo pipefail

if [ -n "${DAP_TEST_MYSQL_URL:-}" ]; then
    echo "using DAP_TEST_MYSQL_URL for the MySQL tests"
    exit 0
fi

ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }

if command -v mariadb-admin >/dev/null 2>&1 && ready; then
    echo "MariaDB is running on 127.0.0.1:3306"
    exit 0
fi

if [ ! -x /usr/sbin/mariadbd ]; then
    echo "installing MariaDB from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi

echo "starting MariaDB"
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 120); do
    ready && break
    sleep 0.5
done
ready || { echo "MariaDB did not start on 127.0.0.1:3306" >&2; exit 1; }

# The tests log in as root without a password over TCP (as on the project's machines);
# a fresh install lets root in only through the socket, so allow it.
if ! mariadb --protocol=tcp -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
fi
# initdb streams rows with LOAD DATA LOCAL INFILE, which the server must allow.
mariadb --protocol=tcp -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test; SET GLOBAL local_infile = 1' >/dev/null
echo "MariaDB is running on 127.0.0.1:3306"
