"""Kafka ACLs derived from `catalogue.ACCESS`: what each service's principal may read, write,
consume as and create — least privilege, declared once as data, applied and diffed here.

The ACLs of one pipeline (one `Names` prefix) cover only its resources: `ensure` creates what is
missing and deletes grants to our principals on those resources that the catalogue no longer
lists; anything else that applies to them (another principal's grant, a denial) is reported as
foreign and left alone; another pipeline's ACLs on the same cluster (a test's sandbox) are never
touched. The lag monitor's grants cover the pipeline's namespace only: its catalogue topics, and
the groups and topics named after its groups (prefixed), so it watches every group of the
pipeline, including ones added later, and nothing else on the cluster.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from topics.catalogue import ACCESS, ALL, Names

LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ANY = "*"  # a literal ACL on "*" covers every resource of its type
# what an ACL change is keyed by: a binding (create) or a filter (delete)
Target = TypeVar("Target", bound=AclBinding)


@dataclass(frozen=True, order=True)
class Grant:
    principal: str  # a service's name for User:<name>; other principals in full
    resource: str  # topic | group | transactional_id
    pattern: str  # literal | prefixed
    name: str
    operation: str  # read | write | create | describe | ...
    permission: str = "allow"
    host: str = "*"

    def binding(self) -> AclBinding:
        principal = self.principal if ":" in self.principal else f"User:{self.principal}"
        return AclBinding(
            _RESOURCE[self.resource],
            self.name,
            _PATTERN[self.pattern],
            principal,
            self.host,
            AclOperation[self.operation.upper()],
            AclPermissionType[self.permission.upper()],
        )

    def covers(self, resource: str, name: str) -> bool:
        """Whether this ACL applies to the resource `name` of kind `resource`."""
        return self.resource == resource and (
            self.name in (name, ANY) if self.pattern == "literal" else name.startswith(self.name)
        )


@dataclass(frozen=True)
class Drift:
    missing: list[Grant]  # the catalogue wants them; the cluster lacks them
    extra: list[Grant]  # grants to our services that reach our resources, not in the catalogue
    foreign: list[Grant]  # anything else that applies to our resources: other principals'
    # grants, denials, host-bound entries; reported, never deleted


_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_PATTERN = {"literal": LITERAL, "prefixed": PREFIXED}


def grants(names: Names) -> list[Grant]:
    """Every ACL one pipeline needs, from the catalogue."""
    out = []
    for who, a in ACCESS.items():
        out += [Grant(who, "topic", "literal", names.topic(t), "read") for t in a.reads]
        out += [Grant(who, "topic", "literal", names.topic(t), "write") for t in a.writes]
        if a.group:
            group = names.group(a.group)
            out.append(Grant(who, "group", "literal", group, "read"))
            if a.own_topics:  # faust names its changelogs "<app id>-<table>-changelog"
                out += [
                    Grant(who, "topic", "prefixed", f"{group}-", op)
                    for op in ("create", "read", "write", "describe_configs")
                ]
        out += [Grant(who, "group", "literal", names.group(g), "describe") for g in a.watches]
        if a.monitors:  # lag in seconds reads the oldest message a group has not consumed
            out += [Grant(who, "topic", "literal", names.topic(t), "read") for t in ALL]
            out += [
                Grant(who, "topic", "prefixed", names.group_prefix, "read"),
                Grant(who, "group", "prefixed", names.group_prefix, "describe"),
            ]
    return sorted(set(out))


def _from_binding(b: AclBinding) -> Grant | None:
    # an AclBinding turns its arguments into enums when made; its stubs type the attributes as
    # the constructor's arguments (enum, str or int)
    kind = {v: k for k, v in _RESOURCE.items()}.get(b.restype)  # type: ignore[arg-type]
    pattern = {v: k for k, v in _PATTERN.items()}.get(
        b.resource_pattern_type  # type: ignore[arg-type]
    )
    if kind is None or pattern is None:
        return None  # cluster-level ACLs: none of ours
    principal = b.principal[len("User:") :] if b.principal.startswith("User:") else b.principal
    return Grant(
        principal,
        kind,
        pattern,
        b.name,
        b.operation.name.lower(),  # type: ignore[union-attr]
        b.permission_type.name.lower(),  # type: ignore[union-attr]
        b.host,
    )


def current(admin: AdminClient, timeout_s: float = 30.0) -> list[Grant]:
    """Every topic, group and transactional-id ACL on the cluster."""
    # None matches any name, principal and host, as AclBindingFilter documents; its stubs take
    # the parameters typed str from AclBinding
    anything: str = None  # type: ignore[assignment]
    every = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found = admin.describe_acls(every, request_timeout=timeout_s).result()
    return [g for g in map(_from_binding, found) if g is not None]


def diff(names: Names, existing: list[Grant]) -> Drift:
    """How the cluster's ACLs on this pipeline's resources differ from the catalogue."""
    want = grants(names)
    touching = [
        g for g in existing if g not in want and any(g.covers(w.resource, w.name) for w in want)
    ]
    extra = [
        g for g in touching if g.principal in ACCESS and g.permission == "allow" and g.host == "*"
    ]
    return Drift(
        sorted(set(want) - set(existing)), sorted(set(extra)), sorted(set(touching) - set(extra))
    )


def ensure(client: dict[str, Any], names: Names, timeout_s: float = 30.0) -> Drift:
    """Create what the catalogue wants and delete our services' grants it does not list; returns
    the drift found (its foreign entries are left for an operator to judge)."""
    drift = diff(names, current(AdminClient(client), timeout_s))
    grant(client, drift.missing, timeout_s)
    revoke(client, drift.extra, timeout_s)
    return drift


def remove(client: dict[str, Any], names: Names, timeout_s: float = 30.0) -> None:
    """Delete this pipeline's ACLs (a sandbox going away)."""
    revoke(client, grants(names), timeout_s)


def grant(client: dict[str, Any], new: list[Grant], timeout_s: float = 30.0) -> None:
    """Create ACLs and return once every broker enforces them."""
    if not new:
        return
    admin = AdminClient(client)
    _wait(admin.create_acls([g.binding() for g in new], request_timeout=timeout_s))
    _settle(client, admin, new, timeout_s)


def revoke(client: dict[str, Any], old: list[Grant], timeout_s: float = 30.0) -> None:
    if old:
        admin = AdminClient(client)  # kept alive until the futures resolve
        _wait(admin.delete_acls([_filter(g) for g in old], request_timeout=timeout_s))


def _settle(
    client: dict[str, Any], admin: AdminClient, made: list[Grant], timeout_s: float
) -> None:
    """Wait until every broker knows the new ACLs. Each applies them when it replays the metadata
    log, a moment after the controller committed them; a client that meets a broker not there yet
    is refused and remembers it (librdkafka marks the topic unauthorized)."""
    brokers = admin.list_topics(timeout=timeout_s).brokers.values()
    deadline = time.monotonic() + timeout_s
    for b in brokers:
        one = AdminClient({**client, "bootstrap.servers": f"{b.host}:{b.port}"})
        while set(made) - set(current(one, timeout_s)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {b.id} did not apply new ACLs within {timeout_s:.0f}s")
            time.sleep(0.1)


def _filter(g: Grant) -> AclBindingFilter:
    b = g.binding()
    return AclBindingFilter(
        b.restype,
        b.name,
        b.resource_pattern_type,
        b.principal,
        b.host,
        b.operation,
        b.permission_type,
    )


def _wait(futures: dict[Target, Future[Any]]) -> None:
    for target, fut in futures.items():
        try:
            fut.result()
        except KafkaException as e:
            raise RuntimeError(f"ACL change {target} refused: {e}") from None
