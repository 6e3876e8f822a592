"""The open transactions of one tx.log partition: the coordinator's cache of the fold."""
from __future__ import annotations

from workers.coordinator.fold import Timers, is_finished, step


class Partition:
    """The open transactions of one tx.log partition, and where each one began."""

    def __init__(self):
        self.open: dict[str, tuple] = {}          # order id -> (Tx, Timers)
        self.began_at: dict[str, int] = {}        # order id -> offset of its TxBegun

    def apply(self, offset: int, event, now_ms: int):
        """Fold one event; returns the decision's outputs when this event made it."""
        entry = self.open.get(event.order_id)
        if entry is None and event.TYPE != "TxBegun":
            return []   # a late event of an order already finished and forgotten
        tx, timers = entry or (None, Timers(first_seen_ms=now_ms))
        tx, decided = step(tx, event, now_ms)
        if entry is None:
            self.began_at[event.order_id] = offset
        if is_finished(tx):
            self.forget(event.order_id)
        else:
            self.open[event.order_id] = (tx, timers)
        return decided

    def forget(self, order_id: str) -> None:
        self.open.pop(order_id, None)
        self.began_at.pop(order_id, None)

    def refold_from(self, next_offset: int) -> int:
        return min(self.began_at.values(), default=next_offset)
