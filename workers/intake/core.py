"""Intake's pure core: is this order new, a redelivery, a republish, or a conflicting reuse?"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import PARTICIPANTS, OrderPlaced, Prepare, TxBegun


@dataclass(frozen=True)
class Seen:
    content_hash: str
    partition: int
    offset: int


def classify(seen: Seen | None, content_hash: str, partition: int, offset: int) -> str:
    """new: record and start the transaction. redelivery: the same message again (the previous
    Kafka transaction did not commit), so emit again. duplicate: the same order published again:
    nothing to do. conflict: the order id was used for other content: a dead letter."""
    if seen is None:
        return "new"
    if seen.content_hash != content_hash:
        return "conflict"
    if (seen.partition, seen.offset) == (partition, offset):
        return "redelivery"
    return "duplicate"


def begin(
    order: OrderPlaced, now_ms: int, deadline_after_ms: int
) -> list[tuple[str, TxBegun | Prepare]]:
    """The outputs that start an order's distributed transaction, as (destination, event). Its
    PENDING status is a row intake writes with the order (workers/status/store.py add_pending),
    not a record: the records are what the pipeline acts on."""
    deadline = now_ms + deadline_after_ms
    return [
        ("tx.log", TxBegun(order.order_id, PARTICIPANTS, deadline)),
        *((p, Prepare(order.order_id, order, deadline)) for p in PARTICIPANTS),
    ]
