"""The envelope: one event as a Kafka message value (UTF-8 JSON) plus `type`/`version` headers.

``encode`` trusts what we built; ``decode`` trusts nothing and turns every way a message can be
wrong into one ``DeadLetter`` subclass with a human-readable detail for the dead-letter headers.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import fastjsonschema

from schemas.errors import (
    DeadLetter,
    RuleViolationError,
    SchemaViolationError,
    UndecodableError,
    UnknownEventError,
    UnknownVersionError,
)
from schemas.events import EVENT_TYPES, Event, canonical_json

Headers = Sequence[tuple[str, bytes | str | None]]

MAX_VALUE_BYTES = 1 << 20
# Our deepest event (Prepare -> order -> items -> line) is 4 levels; 32 leaves room for new
# versions while refusing bodies built to exhaust the recursion of the validator.
MAX_DEPTH = 32
_MAX_DETAIL = DeadLetter.MAX_DETAIL  # a dead-letter header, not a log file

SCHEMA_DIR = Path(__file__).parent

# (type, n) -> function turning a version-n body into a version-(n + 1) body. A new version is a
# new schema file plus one entry here; none exists yet because every type is at version 1.
UPGRADERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_VERSION = re.compile(r"[1-9][0-9]{0,8}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def snake_name(event_type: str) -> str:
    """`OrderPlaced` -> `order_placed`, the folder of its schema files."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def schema_path(event_type: str, version: int) -> Path:
    return SCHEMA_DIR / snake_name(event_type) / f"v{version}.json"


def _is_rfc3339(value: str) -> bool:
    # The regex pins RFC 3339's shape (fromisoformat alone accepts e.g. week dates and naive
    # times); fromisoformat then rejects impossible dates such as February 30th.
    if not _RFC3339.fullmatch(value):
        return False
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


@lru_cache(maxsize=None)
def _validator(event_type: str, version: int) -> Callable[[Any], Any] | None:
    """The compiled schema, or None when that version has no file. Compiled once per process."""
    path = schema_path(event_type, version)
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema, formats={"date-time": _is_rfc3339})


def encode(event: Event) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Deterministic bytes and headers for ``event``; no validation (we built it)."""
    headers = [
        ("type", event.TYPE.encode("ascii")),
        ("version", str(event.VERSION).encode("ascii")),
    ]
    return canonical_json(event.to_dict()), headers


def decode(value: bytes | None, headers: Headers | None, default_type: str | None = None) -> Event:
    """Parse, validate, upgrade and check one message, or raise a ``DeadLetter`` subclass.

    The headers are read first: an unknown type or version is the more useful reason even when the
    body is unreadable too, because the fix (deploy newer code, then replay) is different.
    """
    found = _header_map(headers)
    event_type = _event_type(found.get("type"), default_type)
    version = _version(found.get("version"))
    validate = _validator(event_type, version)
    if validate is None:
        raise UnknownVersionError(f"{event_type} has no schema version {version}")
    body = _parse(value)
    try:
        validate(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaViolationError(_describe(exc)) from None
    body = _upgrade(event_type, version, body)
    check = RULES.get(event_type)
    if check is not None:
        check(body)
    return EVENT_TYPES[event_type].from_dict(body)


def _header_map(headers: Headers | None) -> dict[str, bytes | str | None]:
    # Kafka allows repeated keys; like the Java client's lastHeader(), the last one wins.
    return dict(headers or ())


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return bytes(raw).decode("utf-8")


def _event_type(raw: bytes | str | None, default_type: str | None) -> str:
    try:
        name = _text(raw)
    except UnicodeDecodeError:
        raise UnknownEventError("type header is not UTF-8") from None
    if name is None:
        if default_type is None:
            raise UnknownEventError("no type header and no default type for this topic")
        name = default_type
    if name not in EVENT_TYPES:
        raise UnknownEventError(f"unknown event type {name[:64]!r}")
    return name


def _version(raw: bytes | str | None) -> int:
    try:
        text = _text(raw)
    except UnicodeDecodeError:
        raise UnknownVersionError("version header is not UTF-8") from None
    if text is None:
        return 1  # producers of the public topic may send no headers at all
    if not _VERSION.fullmatch(text):
        raise UnknownVersionError(f"version header {text[:32]!r} is not a positive decimal")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a repeated key; refuse the ambiguity outright.
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key[:64]!r}")
            seen.add(key)
    return d


def _parse(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise UndecodableError("no message value (tombstone)")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise UndecodableError(f"message value is {type(value).__name__}, not bytes")
    if len(value) == 0:
        raise UndecodableError("empty message value")
    if len(value) > MAX_VALUE_BYTES:
        raise UndecodableError(f"message value is {len(value)} bytes, over {MAX_VALUE_BYTES}")
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        # Decimal for every float: the schema then says "must be integer" for 1.0 (which
        # fastjsonschema would accept as a float), so money can never arrive as a float.
        body = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=Decimal,
            parse_constant=_reject_constant,
        )
    except _DuplicateKey as exc:
        raise UndecodableError(str(exc)) from None
    except RecursionError:
        raise UndecodableError(f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers of over 4300 digits
        raise UndecodableError(f"not JSON: {str(exc)[:_MAX_DETAIL]}") from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond Decimal's range
        raise UndecodableError("a number beyond any representable range") from None
    if not isinstance(body, dict):
        raise UndecodableError(f"top level is a JSON {_json_kind(body)}, not an object")
    _check_shape(body)
    return body


def _json_kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _check_shape(body: dict[str, Any]) -> None:
    """Refuse deep nesting and lone surrogates (valid JSON escapes, but not encodable text)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UndecodableError(f"nested deeper than {MAX_DEPTH}")
        if isinstance(node, dict):
            for k, v in node.items():
                _check_text(k)
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(s: str) -> None:
    if s.isascii():
        return
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise UndecodableError("string holds a lone UTF-16 surrogate") from None


_PHRASES = (
    ("must be bigger than or equal to", "must be >="),
    ("must be smaller than or equal to", "must be <="),
    ("must be bigger than", "must be >"),
    ("must be smaller than", "must be <"),
)


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """`data.items[0].quantity must be bigger than or equal to 1` ->
    `items[0].quantity must be >= 1`."""
    message = exc.message
    if message.startswith("data."):
        message = message[len("data.") :]
    elif message.startswith("data"):
        message = "event" + message[len("data") :]
    for long, short in _PHRASES:
        message = message.replace(long, short)
    return message[:_MAX_DETAIL]


def _upgrade(event_type: str, version: int, body: dict[str, Any]) -> dict[str, Any]:
    current = EVENT_TYPES[event_type].VERSION
    if version > current:
        raise UnknownVersionError(f"{event_type} v{version} is newer than this code (v{current})")
    while version < current:
        upgrade = UPGRADERS.get((event_type, version))
        if upgrade is None:
            raise UnknownVersionError(f"no upgrade from {event_type} v{version} to v{version + 1}")
        body, version = upgrade(body), version + 1
    return body


def _check_order_total(order: dict[str, Any], where: str = "") -> None:
    total = sum(line["quantity"] * line["unit_price_cents"] for line in order["items"])
    if order["total_cents"] != total:
        raise RuleViolationError(
            f"{where}total_cents is {order['total_cents']} but the items sum to {total}"
        )


def _check_prepare(body: dict[str, Any]) -> None:
    if body["order_id"] != body["order"]["order_id"]:
        raise RuleViolationError(
            f"order_id {body['order_id']!r} differs from order.order_id "
            f"{body['order']['order_id']!r}"
        )
    _check_order_total(body["order"], "order.")


# Input rules a JSON Schema cannot express, run on the upgraded (current-version) body.
RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    "OrderPlaced": _check_order_total,
    "Prepare": _check_prepare,
}
