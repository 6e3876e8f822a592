"""Contract tests of the schema files and the event dataclasses (no Kafka)."""

from __future__ import annotations

import json
from typing import Any

import fastjsonschema
import pytest

from schemas.codec import SCHEMA_DIR, schema_path, snake_name
from schemas.events import (
    EVENT_TYPES,
    Abort,
    Acked,
    Commit,
    DeadlinePassed,
    Decided,
    Line,
    OrderPlaced,
    Prepare,
    StatusChanged,
    TxBegun,
    Voted,
)

ORDER = OrderPlaced(
    order_id="o-1",
    customer_id="c_1",
    items=(Line("sku.1", 2, 150), Line("sku.1", 1, 150), Line("B-2", 3, 0)),
    currency="EUR",
    total_cents=450,
    placed_at="2024-05-01T12:00:00Z",
)

SAMPLES = [
    ORDER,
    OrderPlaced("o-2", "c", (Line("s", 1, 1),), "USD", 1),
    TxBegun("o-1", ("inventory", "payment"), 1_700_000_000_000),
    Prepare("o-1", ORDER, 1_700_000_000_000),
    Commit("o-1"),
    Abort("o-1", "inventory:out_of_stock"),
    Voted("o-1", "payment", "yes", None),
    Voted("o-1", "inventory", "no", "out_of_stock"),
    DeadlinePassed("o-1", 1_700_000_000_001),
    Decided("o-1", "commit", None),
    Decided("o-1", "abort", "deadline"),
    Acked("o-1", "inventory", "abort"),
    StatusChanged("o-1", "REJECTED", "payment:insufficient_funds", 5),
    StatusChanged("o-1", "PENDING", None, 5),
]


def _load(event_type: str) -> dict[str, Any]:
    return json.loads(schema_path(event_type, 1).read_text(encoding="utf-8"))


def _objects(node: Any):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for v in node.values():
            yield from _objects(v)
    elif isinstance(node, list):
        for v in node:
            yield from _objects(v)


def test_every_type_is_listed_once_with_its_name():
    assert sorted(EVENT_TYPES) == sorted(
        [
            "OrderPlaced",
            "TxBegun",
            "Prepare",
            "Commit",
            "Abort",
            "Voted",
            "DeadlinePassed",
            "Decided",
            "Acked",
            "StatusChanged",
        ]
    )
    for name, cls in EVENT_TYPES.items():
        assert cls.TYPE == name and cls.VERSION == 1


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_schema_file_is_draft07_closed_and_compiles(name):
    schema = _load(name)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == f"{name} v1"
    objects = list(_objects(schema))
    assert objects and all(o["additionalProperties"] is False for o in objects)
    fastjsonschema.compile(schema)


def test_no_stray_schema_folders():
    folders = {p.parent.name for p in SCHEMA_DIR.glob("*/v*.json")}
    assert folders == {snake_name(n) for n in EVENT_TYPES}


@pytest.mark.parametrize(
    "name, snake",
    [
        ("OrderPlaced", "order_placed"),
        ("TxBegun", "tx_begun"),
        ("Commit", "commit"),
        ("DeadlinePassed", "deadline_passed"),
        ("StatusChanged", "status_changed"),
    ],
)
def test_snake_name(name, snake):
    assert snake_name(name) == snake


def test_prepare_embeds_exactly_the_order_placed_body():
    # Copied, not $ref'd, so each file is immutable alone; this keeps the copy honest.
    order = {
        k: v
        for k, v in _load("OrderPlaced").items()
        if k not in ("$schema", "title", "description")
    }
    assert _load("Prepare")["properties"]["order"] == order


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_dict_round_trip_and_schema_accepts_to_dict(event):
    d = event.to_dict()
    assert type(event).from_dict(d) == event
    fastjsonschema.compile(_load(event.TYPE))(json.loads(json.dumps(d)))


def test_events_are_frozen():
    with pytest.raises(AttributeError):
        ORDER.total_cents = 0  # type: ignore[misc]


def test_order_without_placed_at_omits_it():
    assert "placed_at" not in SAMPLES[1].to_dict()


def test_content_hash_is_stable_and_sensitive():
    same = OrderPlaced.from_dict(json.loads(json.dumps(ORDER.to_dict())))
    assert same.content_hash() == ORDER.content_hash()
    assert len(ORDER.content_hash()) == 64
    other = OrderPlaced(
        ORDER.order_id, ORDER.customer_id, ORDER.items, "USD", ORDER.total_cents, ORDER.placed_at
    )
    assert other.content_hash() != ORDER.content_hash()
