"""The transactions of one tx.log partition as the coordinator holds them: a cache of the fold.

It holds every open transaction, and the finished ones until the store has saved them; any other
order it is asked about must first be looked up in the store (`unknown`, then `learn`), because
an order finished long ago is final for ever: a replayed TxBegun or a late vote must find its
decision, not open the order again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from schemas.events import Acked, Voted
from workers.coordinator.fold import (
    Output,
    Progress,
    Timers,
    Tx,
    TxLogEvent,
    is_finished,
    step,
)

# events that may open an order: its begin, or a vote that arrived first (its begin is late or
# lost: an orphan, presumed aborted after a bound). An ack, a marker or a recorded decision of an
# order that is neither open nor stored belongs to nothing this partition must act on.
OPENS = ("TxBegun", "Voted")


class Partition:
    def __init__(self, next_offset: int = 0):
        self.open: dict[str, tuple[Tx, Timers]] = {}
        self.finished: dict[str, Tx] = {}  # finished since the last save
        self.changed: dict[str, int] = {}  # order id -> offset of its last event, unsaved
        self.next_offset = next_offset  # of the next tx.log record to fold
        self.progress: dict[str, Progress] = {}  # participant -> what was read of it here

    def unknown(self, order_ids: Iterable[str]) -> set[str]:
        """Those of `order_ids` this partition must look up in the store before folding."""
        return {o for o in order_ids if o not in self.open and o not in self.finished}

    def learn(self, tx: Tx, now_ms: int, at: int | None = None) -> None:
        """A transaction read from the store, saved with the offset `at` of its last event:
        finished stays finished, open is resumed. Its begin was read at or before `at`, so a
        participant voting on an order begun after `at` has gone past it."""
        if is_finished(tx):
            self.finished[tx.order_id] = tx
        else:
            begun_by = at if tx.begun else None
            self.open[tx.order_id] = (tx, Timers(first_seen_ms=now_ms, begun_by=begun_by))

    def apply(self, offset: int, event: TxLogEvent, now_ms: int) -> list[Output]:
        """Fold one event; returns the decision's outputs when this event made it."""
        oid = event.order_id
        entry = self.open.get(oid)
        self._heard(event, entry[1] if entry else Timers(), now_ms)
        if oid in self.finished:
            # final: a replayed begin or a late ack changes nothing. A late yes vote on an abort is
            # the exception: that participant is told and the order waits for its ack again
            tx, told = step(self.finished[oid], event, now_ms)
            if not told:
                return []
            del self.finished[oid]
            self.open[oid] = (tx, Timers(first_seen_ms=now_ms, decided_at=offset))
            self.changed[oid] = offset
            return told
        if entry is None and event.TYPE not in OPENS:
            return []
        prior, timers = entry or (None, Timers(first_seen_ms=now_ms))
        tx, decided = step(prior, event, now_ms)
        if event.TYPE == "TxBegun" and timers.begun_at is None:
            timers = replace(timers, begun_at=offset)
        if decided and decided[0][1].TYPE == "Decided":
            timers = replace(timers, decided_at=offset)
        self.changed[oid] = offset
        if is_finished(tx):
            self.open.pop(oid, None)
            self.finished[oid] = tx
        else:
            self.open[oid] = (tx, timers)
        return decided

    def _heard(self, event: TxLogEvent, timers: Timers, now_ms: int) -> None:
        """A vote or ack is a participant's sign of life and of how far it has got."""
        if not isinstance(event, (Voted, Acked)):
            return
        seen = self.progress.get(event.participant) or Progress(now_ms)
        voted, acked = seen.voted_past, seen.acked_past
        if isinstance(event, Voted) and timers.begun_at is not None:
            voted = max(voted, timers.begun_at)
        if isinstance(event, Acked) and timers.decided_at is not None:
            acked = max(acked, timers.decided_at)
        self.progress[event.participant] = Progress(now_ms, voted, acked)

    def unsaved(self, part: int) -> list[tuple[str, int, int, bool, Tx]]:
        """Rows for the store: (order id, partition, offset of its last event, finished, tx)."""
        rows: list[tuple[str, int, int, bool, Tx]] = []
        for oid, at in self.changed.items():
            done = oid in self.finished
            rows.append((oid, part, at, done, self.finished[oid] if done else self.open[oid][0]))
        return rows

    def saved(self) -> None:
        """The store now holds every change: the finished ones need not stay in memory."""
        self.changed.clear()
        self.finished.clear()
