"""Kafka ACLs derived from `catalogue.ACCESS`: what each service's principal may read, write,
consume as and create — least privilege, declared once as data, applied and diffed here.

The ACLs of one pipeline (one `Names` prefix) cover only its resources: `ensure` creates what is
missing and deletes grants to our principals on those resources that the catalogue no longer
lists; another pipeline's ACLs on the same cluster (a test's sandbox) are never touched. The lag
monitor's grants alone cover every topic and group ("*"): it watches every consumer group.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

from topics.catalogue import ACCESS, Names

LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ANY = "*"      # a literal ACL on "*" covers every resource of its type


@dataclass(frozen=True, order=True)
class Grant:
    principal: str        # service name; the Kafka principal is User:<principal>
    resource: str         # topic | group | transactional_id
    pattern: str          # literal | prefixed
    name: str
    operation: str        # read | write | create | describe

    def binding(self) -> AclBinding:
        return AclBinding(_RESOURCE[self.resource], self.name, _PATTERN[self.pattern],
                          f"User:{self.principal}", "*", AclOperation[self.operation.upper()],
                          AclPermissionType.ALLOW)


_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional_id": ResourceType.TRANSACTIONAL_ID}
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
            if a.transactional:   # workers' transactional ids are "<group>-<instance>"
                out.append(Grant(who, "transactional_id", "prefixed", f"{group}-", "write"))
            if a.own_topics:      # faust names its changelogs "<app id>-<table>-changelog"
                out += [Grant(who, "topic", "prefixed", f"{group}-", op)
                        for op in ("create", "read", "write")]
        if a.monitors:    # lag in seconds reads the oldest unconsumed message of any group
            out += [Grant(who, "topic", "literal", ANY, "read"),
                    Grant(who, "group", "literal", ANY, "describe")]
    return sorted(set(out))


def _from_binding(b) -> Grant | None:
    kind = {v: k for k, v in _RESOURCE.items()}.get(b.restype)
    pattern = {v: k for k, v in _PATTERN.items()}.get(b.resource_pattern_type)
    if (kind is None or pattern is None or not b.principal.startswith("User:")
            or b.permission_type != AclPermissionType.ALLOW or b.host != "*"):
        return None
    return Grant(b.principal[len("User:"):], kind, pattern, b.name, b.operation.name.lower())


def current(admin: AdminClient, timeout_s: float = 30.0) -> tuple[list[Grant], list]:
    """Every ACL on the cluster: those that read as grants, and the rest (denials, host-bound)."""
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(every, request_timeout=timeout_s).result()
    grants_, other = [], []
    for b in found:
        g = _from_binding(b)
        (grants_ if g else other).append(g or b)
    return grants_, other


def diff(names: Names, existing: list[Grant]) -> tuple[list[Grant], list[Grant]]:
    """(missing, extra): what the catalogue wants and the cluster lacks, and grants to our
    principals on this pipeline's resources that the catalogue does not list."""
    want = grants(names)
    ours = {(g.resource, g.pattern, g.name) for g in want}
    have = {g for g in existing if g.principal in ACCESS and (g.resource, g.pattern, g.name) in ours}
    return sorted(set(want) - have), sorted(have - set(want))


def ensure(client: dict, names: Names, timeout_s: float = 30.0) -> tuple[list[Grant], list[Grant]]:
    """Make the cluster's ACLs for this pipeline match the catalogue; returns (created, deleted)."""
    missing, extra = diff(names, current(AdminClient(client), timeout_s)[0])
    grant(client, missing, timeout_s)
    revoke(client, extra, timeout_s)
    return missing, extra


def remove(client: dict, names: Names, timeout_s: float = 30.0) -> None:
    """Delete this pipeline's ACLs (a sandbox going away); grants on every resource ("*", the
    monitor's) are the cluster's and stay."""
    revoke(client, [g for g in grants(names) if g.name != ANY], timeout_s)


def grant(client: dict, new: list[Grant], timeout_s: float = 30.0) -> None:
    """Create ACLs and return once every broker enforces them."""
    if not new:
        return
    admin = AdminClient(client)
    _wait(admin.create_acls([g.binding() for g in new], request_timeout=timeout_s))
    _settle(client, admin, new, timeout_s)


def revoke(client: dict, old: list[Grant], timeout_s: float = 30.0) -> None:
    if old:
        admin = AdminClient(client)     # kept alive until the futures resolve
        _wait(admin.delete_acls([_filter(g) for g in old], request_timeout=timeout_s))


def _settle(client: dict, admin: AdminClient, made: list[Grant], timeout_s: float) -> None:
    """Wait until every broker knows the new ACLs. Each applies them when it replays the metadata
    log, a moment after the controller committed them; a client that meets a broker not there yet
    is refused and remembers it (librdkafka marks the topic unauthorized)."""
    brokers = admin.list_topics(timeout=timeout_s).brokers.values()
    deadline = time.monotonic() + timeout_s
    for b in brokers:
        one = AdminClient({**client, "bootstrap.servers": f"{b.host}:{b.port}"})
        while set(made) - set(current(one, timeout_s)[0]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {b.id} did not apply new ACLs within {timeout_s:.0f}s")
            time.sleep(0.1)


def _filter(g: Grant) -> AclBindingFilter:
    b = g.binding()
    return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                            b.operation, b.permission_type)


def _wait(futures: dict) -> None:
    for target, fut in futures.items():
        try:
            fut.result()
        except KafkaException as e:
            raise RuntimeError(f"ACL change {target} refused: {e}") from None
