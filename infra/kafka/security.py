"""Who may talk to the local cluster: a private CA and the nodes' certificate (made with openssl),
SCRAM-SHA-512 passwords per principal, and the node settings that demand both.

Clients authenticate with SASL/SCRAM-SHA-512 over TLS and verify the node's certificate against
the CA. Nodes talk to each other authenticated too: inter-broker traffic uses the same SCRAM
listener as the `broker` principal; the controller listener uses mutual TLS, because KRaft
controllers cannot use SCRAM (its credentials live in the metadata log the controllers serve).
There only the nodes' own certificate (CN=broker) is taken, as the `broker` principal; any other
name is refused, so a certificate for CN=admin, say, gets nobody in. The CA's key is deleted once
the nodes' certificate is issued: kept beside the cluster, it would let whoever reads it issue
certificates for any name. The `broker` and `admin` credentials are
written into the metadata log when a node is formatted (`--add-scram`), so the cluster has an
administrator before anyone can connect; `up` creates the others through it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from infra import netns, procs
from infra.layout import HOST, NODE_HOSTS, Layout
from infra.procs import InfraError
from infra.secret import secret

BROKER = "broker"  # the nodes' own principal
ADMIN = "admin"  # super user: `up`, operators' tools
MECHANISM = "SCRAM-SHA-512"
ITERATIONS = 8192
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
CERT_DAYS = 825


def password(layout: Layout, principal: str) -> str:
    return secret(layout, f"kafka-{principal}")


def client(layout: Layout, principal: str = ADMIN) -> dict[str, str]:
    """librdkafka settings for `principal` on the local cluster."""
    conf = {"bootstrap.servers": layout.bootstrap}
    if layout.secure:
        conf.update(sasl_ssl(principal, password(layout, principal), str(layout.ca_file)))
    return conf


def sasl_ssl(user: str, password_: str, ca_file: str) -> dict[str, str]:
    """librdkafka settings of an authenticated client of any cluster secured as ours is."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": user,
        "sasl.password": password_,
        "ssl.ca.location": ca_file,
    }


def node_properties(layout: Layout, node: int) -> list[str]:
    host = layout.node_host(node)
    broker, controller = (
        f"{host}:{layout.broker_port(node)}",
        f"{host}:{layout.controller_port(node)}",
    )
    if not layout.secure:
        return [
            f"listeners=PLAINTEXT://{broker},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{broker}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    store = secret(layout, "kafka-keystore")
    jaas = (
        f"org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER}" password="{password(layout, BROKER)}";'
    )
    return [
        f"listeners=BROKER://{broker},CONTROLLER://{controller}",
        f"advertised.listeners=BROKER://{broker}",
        "inter.broker.listener.name=BROKER",
        "listener.security.protocol.map=BROKER:SASL_SSL,CONTROLLER:SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.broker.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={layout.tls_dir / 'node.p12'}",
        f"ssl.keystore.password={store}",
        f"ssl.key.password={store}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={layout.ca_file}",
        "listener.name.controller.ssl.client.auth=required",
        # (only the controller listener takes certificates; no DEFAULT: a name no rule maps is
        # refused, not taken as a principal of its own)
        f"ssl.principal.mapping.rules=RULE:^CN={BROKER}$/{BROKER}/",
        f"authorizer.class.name={AUTHORIZER}",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{BROKER};User:{ADMIN}",
    ]


def format_args(layout: Layout) -> list[str]:
    """Extra `kafka-storage format` arguments: the credentials the cluster needs at birth."""
    if not layout.secure:
        return []
    return [
        a
        for p in (BROKER, ADMIN)
        for a in (
            "--add-scram",
            f"{MECHANISM}=[name={p},password={password(layout, p)},iterations={ITERATIONS}]",
        )
    ]


def ensure_tls(layout: Layout) -> bool:
    """Make the CA and the nodes' certificate (for 127.0.0.1 and the hosts' addresses) once, and
    keep only the CA's certificate and the nodes' keystore. Returns True when they were made now.
    (A new certificate, at its expiry say: delete the folder while the cluster is down, `up`.)"""
    d = layout.tls_dir
    if (d / "node.p12").exists() and layout.ca_file.exists():
        _drop_issuing_files(d)  # a cluster made before the CA key was dropped
        return False
    d.mkdir(parents=True, exist_ok=True)  # keys are made 0600 (umask); the CA stays readable
    store = secret(layout, "kafka-keystore")
    with tempfile.NamedTemporaryFile("w", suffix=".ext") as ext:
        # every address a node may listen on: the loopback, and each node's host (up --hosts)
        ips = ",".join(f"IP:{netns.address(NODE_HOSTS + n)}" for n in range(1, 10))
        ext.write(
            f"subjectAltName=IP:{HOST},{ips},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        ext.flush()
        for argv in (
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                str(CERT_DAYS * 2),
                "-subj",
                "/CN=orderbus local CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "node.key",
                "-out",
                "node.csr",
                "-subj",
                f"/CN={BROKER}",
            ],
            [
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "node.pem",
                "-days",
                str(CERT_DAYS),
                "-extfile",
                ext.name,
            ],
            [
                "pkcs12",
                "-export",
                "-in",
                "node.pem",
                "-inkey",
                "node.key",
                "-certfile",
                "ca.pem",
                "-name",
                BROKER,
                "-out",
                "node.p12.tmp",
                "-passout",
                "env:KEYSTORE_PASSWORD",
            ],
        ):
            _openssl(argv, d, {"KEYSTORE_PASSWORD": store})
    (d / "ca.pem").chmod(0o644)  # public: what every client checks the nodes against
    _drop_issuing_files(d)
    (d / "node.p12.tmp").rename(d / "node.p12")  # last: its presence means all is made
    return True


def _drop_issuing_files(d: Path) -> None:
    """The CA's key (and serial), and the node's key and certificate, which its keystore holds."""
    for name in ("ca.key", "ca.srl", "node.key", "node.pem", "node.csr"):
        (d / name).unlink(missing_ok=True)


def _openssl(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    if shutil.which("openssl") is None:
        procs.require_apt("openssl", "openssl")
        procs.apt_install("openssl")
    proc = subprocess.run(
        ["openssl", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        umask=0o077,
    )
    if proc.returncode != 0:
        raise InfraError(f"openssl {argv[0]} failed:\n{proc.stderr.strip()}")


def check_secrets(layout: Layout) -> None:
    """A formatted cluster knows the broker's and admin's passwords from its birth; new ones
    would lock everyone out. Refuse rather than generate them again."""
    metas = [layout.node_dir(n) / "data" / "meta.properties" for n in layout.nodes]
    formatted = any(m.exists() and "cluster.id=" in m.read_text() for m in metas)
    lost = [p for p in (BROKER, ADMIN) if not (layout.secrets_dir / f"kafka-{p}.password").exists()]
    if layout.secure and formatted and lost:
        raise InfraError(
            f"the Kafka password of {' and '.join(lost)} is missing from "
            f"{layout.secrets_dir}, but the cluster was made with it: restore the "
            "file, or `orderbus down --purge` to start over"
        )


def ensure_users(layout: Layout, principals: list[str], timeout_s: float = 30.0) -> list[str]:
    """Give every principal the SCRAM credential of its password file (generated once); returns
    the users created now. Setting an existing one again keeps connected clients working and
    repairs a password file that was replaced."""
    if not layout.secure:
        return []
    admin = AdminClient({**client(layout), "log_level": 3})
    try:
        # without users named, one future for all of them (the stubs type both answers at once)
        found = admin.describe_user_scram_credentials(request_timeout=timeout_s)
        assert not isinstance(found, dict)
        known = set(found.result())
    except KafkaException as e:
        raise InfraError(f"cannot list SCRAM users as {ADMIN}: {e}") from None
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
    alterations: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(p, info, password(layout, p).encode()) for p in principals
    ]
    for user, fut in admin.alter_user_scram_credentials(
        alterations, request_timeout=timeout_s
    ).items():
        try:
            fut.result()
        except KafkaException as e:
            raise InfraError(f"cannot set the SCRAM credential of {user}: {e}") from None
    return [p for p in principals if p not in known]
