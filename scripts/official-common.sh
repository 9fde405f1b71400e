# Sourced by the official-client scripts: the official client's virtualenv, the
# emulator binary, and an emulator running on a free port.
OFFICIAL_CLIENT='instructure-dap-client[postgresql,mysql]==2.3.1'

official_venv() { # official_venv DIR: DIR holds the pinned official client and its drivers
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

emulator_binary() { # sets $emulator: $DAP_EMULATOR_BIN, or a fresh debug build
    if [ -n "${DAP_EMULATOR_BIN:-}" ]; then
        emulator=$DAP_EMULATOR_BIN
    else
        echo "== building the emulator"
        cargo build --quiet -p dap-emulator --bin dap-emulator
        emulator="${CARGO_TARGET_DIR:-$root/target}/debug/dap-emulator"
    fi
}

start_emulator() { # start_emulator LOG [ARGS...]: sets $emu_pid and $base, exports the DAP_* variables
    local log=$1 port
    shift
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$emulator" --port "$port" "$@" >"$log" 2>&1 &
    emu_pid=$!
    base="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if curl -fsS "$base/_emulator/now" >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    curl -fsS "$base/_emulator/now" >/dev/null
    export DAP_API_URL="$base"
    export DAP_CLIENT_ID='us-east-1#demo-client'
    export DAP_CLIENT_SECRET='demo-secret'
    export DAP_TRACKING=false
}
