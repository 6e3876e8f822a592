"""acl: the Kafka ACLs the topic catalogue declares, whether the cluster holds them, and what else
applies to the pipeline's resources."""

from __future__ import annotations

import argparse
import json

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra.procs import InfraError
from orderbus.commands import Subparsers
from topics import acl
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser(
        "acl",
        help="Kafka ACLs per service principal, as declared and as applied, "
        "and any other ACL on the pipeline's resources (exit 1 when the cluster differs; `orderbus "
        "up` applies the catalogue's)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_acl)


def _acl(args: argparse.Namespace, settings: Settings) -> int:

    if settings.security == "plaintext":
        raise InfraError(
            "the cluster runs without authentication (`up --insecure`): it has no ACLs"
        )
    try:
        have = acl.current(AdminClient(settings.kafka(log_level=3)))
    except KafkaException as e:
        raise InfraError(f"cannot read the ACLs at {settings.bootstrap}: {e}") from None
    drift = acl.diff(settings.names, have)
    rows = (
        [
            {**_row(g), "state": "missing" if g in drift.missing else "applied"}
            for g in acl.grants(settings.names)
        ]
        + [{**_row(g), "state": "extra"} for g in drift.extra]
        + [{**_row(g), "state": "foreign"} for g in drift.foreign]
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render(rows))
    return 1 if drift.missing or drift.extra or drift.foreign else 0


def _row(g: acl.Grant) -> dict[str, str]:
    return {
        "principal": g.principal,
        "permission": g.permission,
        "operation": g.operation,
        "resource": g.resource,
        "pattern": g.pattern,
        "name": g.name,
        "host": g.host,
    }


def render(rows: list[dict[str, str]]) -> str:
    cols = ("principal", "permission", "operation", "resource", "pattern", "name", "host", "state")
    width = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols}
    lines = ["  ".join(c.upper().ljust(width[c]) for c in cols).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)
