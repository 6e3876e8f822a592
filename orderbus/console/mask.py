"""What a viewer does not see: the customer fields of an order, wherever they appear (an order's
rows, an event's body, a dead letter's payload). A payload that is not JSON cannot be searched
for them, so a viewer sees only its size."""

from __future__ import annotations

import json
from typing import Any, TypeVar, overload

CUSTOMER_FIELDS = frozenset({"customer_id"})

T = TypeVar("T")


def masked(value: str) -> str:
    return value[:2] + "***" if len(value) > 4 else "***"


@overload
def mask(obj: dict[str, Any]) -> dict[str, Any]: ...
@overload
def mask(obj: list[Any]) -> list[Any]: ...
@overload
def mask(obj: T) -> T: ...
def mask(obj: Any) -> Any:
    """A copy of `obj` with every customer field's value masked, at any depth."""
    if isinstance(obj, dict):
        return {
            k: masked(str(v)) if k in CUSTOMER_FIELDS and v is not None else mask(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [mask(v) for v in obj]
    return obj


def payload(raw: bytes | None, viewer: bool) -> str:
    """A record's value as text for a page."""
    if raw is None:
        return "(no value)"
    try:
        doc = json.loads(raw)
    except ValueError:
        if viewer:
            return f"({len(raw)} bytes, not JSON: hidden from viewers)"
        return raw[:2000].decode("utf-8", errors="replace")
    return json.dumps(mask(doc) if viewer else doc, sort_keys=True)[:2000]
