"""One database per service, owned by a role that applies its versioned SQL migrations in order;
the service logs in as another role that may change rows only (no DDL at run time)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from psycopg2 import sql

from infra.layout import Layout
from infra.postgres.server import admin_connect
from infra.secret import secret

MIGRATIONS = Path(__file__).with_name("migrations")
# worker -> the database it owns and is the only one to write; status keeps its read model in
# intake's `orders` database. Each database's migrations are under migrations/<database>/.
DATABASE = {
    "intake": "orders",
    "coordinator": "coordinator",
    "inventory": "inventory",
    "payment": "payments",
    "shipping": "shipping",
    "status": "orders",
}
SERVICES = tuple(dict.fromkeys(DATABASE.values()))  # every database, once
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
SCRAM_SALT_BYTES = 16  # as libpq's


def password(layout: Layout, role: str) -> str:
    """The role's password, generated once and kept with mode 0600 under the data directory."""
    return secret(layout, f"pg-{role}")


def scram_sha_256(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL keeps for `password` (RFC 5802, 7677), made here as
    libpq's PQencryptPasswordConn makes it: PostgreSQL stores a verifier it is given as it is, so
    the password never reaches the server, nor its log when a statement fails."""
    if not password.isascii():  # PostgreSQL would SASLprep-normalise it first; we do not
        raise ValueError("a PostgreSQL password made here must be ASCII")
    salt = os.urandom(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = [base64.b64encode(b).decode() for b in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64[0]}${b64[1]}:{b64[2]}"


def migrations(service: str) -> list[Path]:
    return sorted((MIGRATIONS / service).glob("*.sql"))


def owner(name: str) -> str:
    """The role that owns database `name`, its schema and tables, and applies its migrations. It
    never logs in: `ensure` takes it on (SET ROLE) over the administrator's socket."""
    return f"{name}_owner"


def ensure(layout: Layout, name: str, service: str) -> list[str]:
    """Database `name` (idempotent), owned by role `owner(name)`, with `service`'s migrations
    applied as that owner; role `name`, the service's login, may connect and change rows and
    nothing else. Returns the migration versions applied now."""
    conn = admin_connect(layout, "postgres")
    with conn.cursor() as cur:
        role, db, own = (sql.Identifier(n) for n in (name, name, owner(name)))
        _role(cur, name, scram_sha_256(password(layout, name)))
        _role(cur, owner(name))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, own))
        # (one made before the owner role existed belonged to the service role; a change of
        # owner rewrites the old owner's grants, so the grants come after it)
        cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, own))
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC, {}").format(db, role))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, role))
    conn.close()
    return _migrate(layout, name, service)


def _role(cur: Any, name: str, verifier: str | None = None) -> None:
    """Create or update a role: a login with this SCRAM verifier, or (None) one that never
    logs in. Neither may create databases or roles."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    login = "LOGIN PASSWORD %s" if verifier else "NOLOGIN"
    cur.execute(
        sql.SQL(f"{verb} ROLE {{}} {login} NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
            sql.Identifier(name)
        ),
        (verifier,) if verifier else (),
    )


def _migrate(layout: Layout, name: str, service: str) -> list[str]:
    applied = []
    role, own = sql.Identifier(name), sql.Identifier(owner(name))
    conn = admin_connect(layout, name)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # the tables of a database made before the owner role existed
            cur.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, own))
            cur.execute(
                sql.SQL(
                    "ALTER SCHEMA public OWNER TO {}; REVOKE ALL ON SCHEMA public FROM PUBLIC, {}; "
                    "GRANT USAGE ON SCHEMA public TO {}"
                ).format(own, role, role)
            )
            cur.execute(sql.SQL("SET ROLE {}").format(own))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ( version text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            for path in migrations(service):
                if path.stem in done:
                    continue
                cur.execute(path.read_text())
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
                applied.append(path.stem)
            # the service's rows, never its tables' shape; granted afresh after every migration
            # run, so a table a migration adds is covered
            cur.execute(
                sql.SQL(
                    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; GRANT SELECT, INSERT, "
                    "UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; REVOKE ALL ON "
                    "schema_migrations FROM {role}; REVOKE ALL ON ALL SEQUENCES IN SCHEMA public "
                    "FROM {role}; GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"
                ).format(role=role)
            )
        conn.commit()
    finally:
        conn.close()
    return applied


def drop(layout: Layout, name: str) -> None:
    conn = admin_connect(layout, "postgres")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in (name, owner(name)):
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    conn.close()


def dsn(layout: Layout, name: str) -> str:
    return (
        f"host={layout.pg_host} port={layout.pg_port} dbname={name} user={name} "
        f"password={password(layout, name)} connect_timeout=5"
    )
