"""Secrets stay out of strings that get printed (a repr, a traceback's locals) and out of loose
files; PostgreSQL role passwords travel as SCRAM verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat
import traceback

from infra.layout import Layout
from infra.postgres.databases import scram_sha_256
from infra.secret import secret
from workers.runtime.settings import Settings

LOCAL_PW = "local-pg-password-0123"
URI_PW = "uri-pass:word"
KV_PW = "kv pass 'quoted'"


def settings_with_passwords(tmp_path) -> Settings:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pg-orders.password").write_text(LOCAL_PW + "\n")
    return Settings.from_env(
        {
            "ORDERBUS_HOME": str(tmp_path),
            "ORDERBUS_DSN_INVENTORY": f"postgresql://inventory:{URI_PW}@db.example:5432/inventory",
            "ORDERBUS_DSN_PAYMENTS": r"host=db.example user=payments password='kv pass \'quoted\''",
            "ORDERBUS_DSN_SHIPPING": "postgresql://shipping@db.example/shipping?password=qs-pw&x=1",
            "ORDERBUS_KAFKA_PASSWORD_ADMIN": "kafka-admin-pw",
        }
    )


def test_repr_shows_where_but_no_password(tmp_path):
    s = settings_with_passwords(tmp_path)
    assert LOCAL_PW in s.dsns["orders"]  # the DSN itself still carries it
    shown = repr(s)
    for pw in (LOCAL_PW, URI_PW, "kv pass", "quoted", "qs-pw", "kafka-admin-pw"):
        assert pw not in shown
    assert "host=127.0.0.1" in shown and "db.example:5432/inventory" in shown and "x=1" in shown


def test_a_traceback_with_its_locals_shows_no_password(tmp_path):
    def fails(settings):
        raise RuntimeError("cannot connect")

    try:
        fails(settings_with_passwords(tmp_path))
    except RuntimeError as e:
        text = "".join(traceback.TracebackException.from_exception(e, capture_locals=True).format())
    assert "settings = Settings(" in text
    assert LOCAL_PW not in text and URI_PW not in text


def test_loose_secret_files_and_folder_are_tightened(tmp_path):
    layout = Layout(home=tmp_path)
    layout.secrets_dir.mkdir(mode=0o755)
    layout.secrets_dir.chmod(0o755)
    kept = layout.secrets_dir / "kafka-x.password"
    kept.write_text("kept\n")
    kept.chmod(0o644)
    assert secret(layout, "kafka-x") == "kept"
    assert stat.S_IMODE(layout.secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    secret(layout, "kafka-new")
    assert stat.S_IMODE((layout.secrets_dir / "kafka-new.password").stat().st_mode) == 0o600


def test_scram_verifier_proves_the_password_and_hides_it():
    verifier = scram_sha_256("pencil")
    assert "pencil" not in verifier
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert method == "SCRAM-SHA-256" and iterations == "4096" and len(base64.b64decode(salt)) == 16
    # RFC 5802: what the server checks a client's proof and signs its own answer with
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode(salt), 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    assert stored_key == hashlib.sha256(client_key).digest()
    assert server_key == hmac.digest(salted, b"Server Key", "sha256")
    assert scram_sha_256("pencil") != verifier  # a fresh salt each time
