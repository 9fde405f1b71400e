#!/usr/bin/env python3
"""Database side of scripts/official-db-check.sh: creates and drops the check databases,
and compares a replicated table with the emulator's expected records.

Usage:
  official_db_check.py create  ADMIN_URL NAME     create database NAME next to ADMIN_URL
  official_db_check.py drop    ADMIN_URL NAME     drop it (if it exists)
  official_db_check.py compare DB_URL BASE NAMESPACE TABLE
      reads the table's position and schema from the official client's meta table
      (instructure_dap.table_sync, or instructure_dap__table_sync on MySQL), fetches the
      records a snapshot at that position holds from BASE/_emulator/expected, and
      compares them with the table's rows, column by column.

URLs are postgresql://user[:pw]@host:port/db or mysql://user[:pw]@host:port/db. Runs in
the official client's virtualenv, which has asyncpg and pymysql.
"""

import asyncio
import datetime
import json
import math
import sys
import urllib.parse
import urllib.request

UA = "dap-emulator-official-db-check/1"


def parse_url(url):
    u = urllib.parse.urlparse(url)
    return {
        "dialect": "mysql" if u.scheme.startswith("mysql") else "postgresql",
        "host": u.hostname or "127.0.0.1",
        "port": u.port,
        "user": urllib.parse.unquote(u.username or ""),
        "password": urllib.parse.unquote(u.password or ""),
        "database": u.path.lstrip("/"),
    }


def with_database(url, name):
    u = urllib.parse.urlparse(url)
    return urllib.parse.urlunparse(u._replace(path="/" + name))


async def pg_connect(url):
    import asyncpg

    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


def my_connect(url):
    import pymysql

    p = parse_url(url)
    return pymysql.connect(
        host=p["host"],
        port=p["port"] or 3306,
        user=p["user"],
        password=p["password"],
        database=p["database"] or None,
        charset="utf8mb4",
        autocommit=True,
    )


async def admin(action, url, name):
    if not name.replace("_", "").isalnum():
        sys.exit(f"bad database name {name!r}")
    if parse_url(url)["dialect"] == "mysql":
        conn = my_connect(url)
        with conn.cursor() as cur:
            if action == "create":
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            else:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
    else:
        conn = await pg_connect(url)
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def fetch(url, namespace, table):
    """(position, schema, rows as dicts) of a replicated table."""
    if parse_url(url)["dialect"] == "mysql":
        import pymysql.cursors

        conn = my_connect(url)
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(
                "SELECT timestamp, schema_description FROM instructure_dap__table_sync "
                "WHERE source_namespace = %s AND source_table = %s",
                (namespace, table),
            )
            meta = cur.fetchone()
            cur.execute(f"SELECT * FROM `{namespace}__{table}` ORDER BY id")
            rows = list(cur.fetchall())
        conn.close()
    else:
        conn = await pg_connect(url)
        meta = await conn.fetchrow(
            "SELECT timestamp, schema_description FROM instructure_dap.table_sync "
            "WHERE source_namespace = $1 AND source_table = $2",
            namespace,
            table,
        )
        rows = [dict(r) for r in await conn.fetch(f'SELECT * FROM "{namespace}"."{table}" ORDER BY id')]
        await conn.close()
    if meta is None:
        sys.exit(f"FAIL {namespace}.{table}: no table_sync row")
    return meta["timestamp"], json.loads(meta["schema_description"]), rows


def expected_records(base, namespace, table, at):
    q = urllib.parse.urlencode({"namespace": namespace, "table": table, "at": at})
    req = urllib.request.Request(f"{base}/_emulator/expected?{q}", headers={"User-Agent": UA})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return [json.loads(line) for line in resp.read().decode().splitlines() if line]


def normalize(value, prop):
    """A comparable form of a column value, from the database or from JSON."""
    if value is None:
        return None
    kind = prop.get("type")
    if kind in ("object", "array"):
        return json.loads(value) if isinstance(value, str) else value
    if prop.get("format") == "date-time":
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
        return value
    if kind == "number":
        f = float(value) if not isinstance(value, str) else {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
        return "NaN" if math.isnan(f) else f
    if kind == "boolean":
        return bool(value)
    return value


async def compare(url, base, namespace, table):
    position, schema, rows = await fetch(url, namespace, table)
    at = position.strftime("%Y-%m-%dT%H:%M:%SZ")
    props = schema["properties"]["value"]["properties"]
    want = {r["key"]["id"]: r.get("value", {}) for r in expected_records(base, namespace, table, at)}
    got = {r["id"]: r for r in rows}
    problems = []
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        problems.append(f"keys differ: missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})")
    columns = set(rows[0]) - {"id"} if rows else set()
    if rows and columns != set(props):
        problems.append(f"columns {sorted(columns)} differ from the schema's {sorted(props)}")
    for key in sorted(set(got) & set(want)):
        for col, prop in props.items():
            a = normalize(got[key].get(col), prop)
            b = normalize(want[key].get(col), prop)
            if a != b:
                problems.append(f"id {key} column {col}: database {a!r}, emulator {b!r}")
    dialect = parse_url(url)["dialect"]
    if problems:
        print(f"FAIL {dialect} {namespace}.{table} at {at}: " + "; ".join(problems[:5]))
        return 1
    print(f"ok   {dialect} {namespace}.{table} at {at}: {len(rows)} rows equal the emulator's")
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ("create", "drop"):
        asyncio.run(admin(sys.argv[1], sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 6 and sys.argv[1] == "compare":
        sys.exit(asyncio.run(compare(*sys.argv[2:6])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
