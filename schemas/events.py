"""The event and command types, one frozen dataclass each.

``from_dict`` trusts its input: the codec validates against the JSON Schema before building an
event, and code inside the pipeline builds events from values it already holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self, TypeAlias

Participant: TypeAlias = Literal["inventory", "payment"]
Outcome: TypeAlias = Literal["commit", "abort"]
Vote: TypeAlias = Literal["yes", "no"]
Status: TypeAlias = Literal["PENDING", "CONFIRMED", "REJECTED", "SHIPPED"]
# every order's transaction spans exactly these: a TxBegun naming others is refused
PARTICIPANTS: tuple[Participant, ...] = ("inventory", "payment")


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value: the wire format and the input of content hashes."""
    return json.dumps(
        obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class _Flat:
    """from_dict/to_dict for events whose fields are all JSON scalars."""

    __slots__ = ()
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        # every subclass is a dataclass; _Flat itself cannot be one (its subclasses declare the
        # fields)
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    unit_price_cents: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Line:
        return cls(d["sku"], d["quantity"], d["unit_price_cents"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "quantity": self.quantity,
            "unit_price_cents": self.unit_price_cents,
        }


@dataclass(frozen=True, slots=True)
class OrderPlaced(_Flat):
    TYPE: ClassVar[str] = "OrderPlaced"
    order_id: str
    customer_id: str
    items: tuple[Line, ...]
    currency: str
    total_cents: int
    placed_at: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrderPlaced:
        return cls(
            order_id=d["order_id"],
            customer_id=d["customer_id"],
            items=tuple(Line.from_dict(i) for i in d["items"]),
            currency=d["currency"],
            total_cents=d["total_cents"],
            placed_at=d.get("placed_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "items": [i.to_dict() for i in self.items],
            "currency": self.currency,
            "total_cents": self.total_cents,
        }
        # The schema has no null for placed_at: absent and null must not hash differently.
        if self.placed_at is not None:
            d["placed_at"] = self.placed_at
        return d

    def content_hash(self) -> str:
        """sha256 hex of the canonical body: a reused order id with other content differs here."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()


@dataclass(frozen=True, slots=True)
class TxBegun(_Flat):
    TYPE: ClassVar[str] = "TxBegun"
    order_id: str
    participants: tuple[Participant, ...]
    deadline_ms: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TxBegun:
        return cls(d["order_id"], tuple(d["participants"]), d["deadline_ms"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "participants": list(self.participants),
            "deadline_ms": self.deadline_ms,
        }


@dataclass(frozen=True, slots=True)
class Prepare(_Flat):
    TYPE: ClassVar[str] = "Prepare"
    order_id: str
    order: OrderPlaced
    deadline_ms: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prepare:
        return cls(d["order_id"], OrderPlaced.from_dict(d["order"]), d["deadline_ms"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "order": self.order.to_dict(),
            "deadline_ms": self.deadline_ms,
        }


@dataclass(frozen=True, slots=True)
class Commit(_Flat):
    TYPE: ClassVar[str] = "Commit"
    order_id: str


@dataclass(frozen=True, slots=True)
class Abort(_Flat):
    TYPE: ClassVar[str] = "Abort"
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Voted(_Flat):
    TYPE: ClassVar[str] = "Voted"
    order_id: str
    participant: Participant
    vote: Vote
    reason: str | None


@dataclass(frozen=True, slots=True)
class DeadlinePassed(_Flat):
    TYPE: ClassVar[str] = "DeadlinePassed"
    order_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class Decided(_Flat):
    TYPE: ClassVar[str] = "Decided"
    order_id: str
    outcome: Outcome
    reason: str | None


@dataclass(frozen=True, slots=True)
class Acked(_Flat):
    TYPE: ClassVar[str] = "Acked"
    order_id: str
    participant: Participant
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class StatusChanged(_Flat):
    TYPE: ClassVar[str] = "StatusChanged"
    order_id: str
    status: Status
    reason: str | None
    at_ms: int


Event: TypeAlias = (
    OrderPlaced
    | TxBegun
    | Prepare
    | Commit
    | Abort
    | Voted
    | DeadlinePassed
    | Decided
    | Acked
    | StatusChanged
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        OrderPlaced,
        TxBegun,
        Prepare,
        Commit,
        Abort,
        Voted,
        DeadlinePassed,
        Decided,
        Acked,
        StatusChanged,
    )
}
