# Sourced by the official-client scripts: makes sure a virtualenv holds Instructure's
# official client at the pinned version, with its PostgreSQL and MySQL drivers.
OFFICIAL_CLIENT='instructure-dap-client[postgresql,mysql]==2.3.1'

official_venv() { # official_venv DIR
    local venv=$1
    if [ ! -x "$venv/bin/dap" ] ||
        ! "$venv/bin/python" -c 'import asyncpg, aiomysql, pymysql' 2>/dev/null ||
        [ "$("$venv/bin/pip" show instructure-dap-client 2>/dev/null | sed -n 's/^Version: //p')" != 2.3.1 ]; then
        echo "== installing $OFFICIAL_CLIENT into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$OFFICIAL_CLIENT"
    fi
    echo "== official client: $("$venv/bin/pip" show instructure-dap-client 2>/dev/null | grep -i '^version' || echo unknown)"
}
