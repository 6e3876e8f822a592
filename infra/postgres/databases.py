"""One database and one role per service; versioned SQL migrations applied in order."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from psycopg2 import sql

from infra.layout import Layout
from infra.secret import secret
from infra.postgres.server import admin_connect

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICES = ("orders", "coordinator", "inventory", "payments", "shipping")   # one database each
SCRAM_ITERATIONS = 4096     # PostgreSQL's default scram_iterations
SCRAM_SALT_BYTES = 16       # as libpq's


def password(layout: Layout, role: str) -> str:
    """The role's password, generated once and kept with mode 0600 under the data directory."""
    return secret(layout, f"pg-{role}")


def scram_sha_256(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL keeps for `password` (RFC 5802, 7677), made here as
    libpq's PQencryptPasswordConn makes it: PostgreSQL stores a verifier it is given as it is, so
    the password never reaches the server, nor its log when a statement fails."""
    if not password.isascii():      # PostgreSQL would SASLprep-normalise it first; we do not
        raise ValueError("a PostgreSQL password made here must be ASCII")
    salt = os.urandom(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = [base64.b64encode(b).decode() for b in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64[0]}${b64[1]}:{b64[2]}"


def migrations(service: str) -> list[Path]:
    return sorted((MIGRATIONS / service).glob("*.sql"))


def ensure(layout: Layout, name: str, service: str) -> list[str]:
    """Create role `name` and database `name` (idempotent), then apply `service`'s migrations.
    Returns the migration versions applied now."""
    verifier = scram_sha_256(password(layout, name))
    conn = admin_connect(layout, "postgres")
    with conn.cursor() as cur:
        role, db = sql.Identifier(name), sql.Identifier(name)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s")
                    .format(role), (verifier,))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, role))
    conn.close()
    return _migrate(layout, name, service)


def _migrate(layout: Layout, name: str, service: str) -> list[str]:
    applied = []
    conn = admin_connect(layout, name)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC; "
                                "ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(name)))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            for path in migrations(service):
                if path.stem in done:
                    continue
                cur.execute(path.read_text())
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
                applied.append(path.stem)
        conn.commit()
    finally:
        conn.close()
    return applied


def drop(layout: Layout, name: str) -> None:
    conn = admin_connect(layout, "postgres")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    conn.close()


def dsn(layout: Layout, name: str) -> str:
    return (f"host=127.0.0.1 port={layout.pg_port} dbname={name} user={name} "
            f"password={password(layout, name)} connect_timeout=5")
