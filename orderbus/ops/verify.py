"""`orderbus verify`: every invariant of DESIGN.md checked against the topics and the databases.

`check` is pure over the gathered facts, so each kind of violation is tested by feeding it
deliberately corrupted facts as well as corrupted real state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from infra.procs import InfraError
from orderbus.ops.verify_facts import Facts, gather, transient
from topics.catalogue import ORDERS_PLACED
from workers import invariants as inv
from workers.coordinator.fold import Tx
from workers.participant.core import INVENTORY, PAYMENT
from workers.runtime.settings import Settings

MAX_IDS = 20  # order ids listed per violation; the count says how many there are


@dataclass(frozen=True)
class Violation:
    invariant: int
    kind: str
    detail: str
    orders: tuple[str, ...] = ()
    count: int = 0


def _violation(invariant: int, kind: str, detail: str, orders: Iterable[str] = ()) -> Violation:
    ids = tuple(sorted(orders))
    return Violation(invariant, kind, detail, ids[:MAX_IDS], len(ids))


def _violations(invariant: int, found: Iterable[tuple[str, list[str], str]]) -> list[Violation]:
    """A violation per (kind, order ids, detail) that found any ids."""
    return [_violation(invariant, kind, text, ids) for kind, ids, text in found if ids]


def check(facts: Facts, placed_topic: str = ORDERS_PLACED.name) -> list[Violation]:
    decided = {
        oid: tx for oid, tx in facts.txs.items() if tx.outcome is not None and oid in facts.orders
    }
    return [
        *_decided_once(facts, placed_topic),
        *_effects(facts, decided),
        *_ledgers(facts),
        *_read_models(facts, decided),
        *_quiet(facts),
    ]


def _decided_once(facts: Facts, topic: str) -> list[Violation]:
    """1. every order decided exactly once, or dead-lettered; never both outcomes."""
    out = _violations(
        1,
        (
            (
                "missing",
                inv.undecided(facts.placed, facts.txs, facts.dead, topic),
                "published, valid, but neither decided nor dead-lettered",
            ),
            (
                "decided_and_dead",
                inv.decided_and_dead(facts.placed, facts.txs, facts.dead, topic),
                "decided although every copy was dead-lettered",
            ),
            (
                "conflict_not_dead",
                inv.reused_not_dead(facts.placed, facts.dead, topic),
                "order id reused with other content, not dead-lettered",
            ),
            (
                "two_decisions",
                [
                    oid
                    for oid in facts.placed
                    if oid in facts.txs and inv.recorded_differs(facts.txs[oid])
                ],
                "a recorded decision differs from the fold of tx.log",
            ),
        ),
    )
    bad_msgs = inv.invalid_not_dead(facts.invalid_placed, facts.dead, topic)
    if bad_msgs:
        uncommitted = [
            m for m in bad_msgs if (topic, *map(int, m.split(":"))) in facts.dead_written
        ]
        out.append(
            _violation(
                1,
                "invalid_not_dead",
                f"malformed messages at partition:offset {bad_msgs[:MAX_IDS]} "
                "are not in the dead-letter topic"
                + (
                    " (found only reading uncommitted records too: aborted, still open, or "
                    f"behind another's open transaction: {uncommitted[:MAX_IDS]})"
                    if uncommitted
                    else " (nor written uncommitted)"
                ),
            )
        )
    return out


def _effects(facts: Facts, decided: dict[str, Tx]) -> list[Violation]:
    """2 and 3. effects of committed orders applied exactly once, of aborted ones not at all."""
    out: list[Violation] = []
    for participant, resource in (("inventory", INVENTORY), ("payment", PAYMENT)):
        holds = facts.holds.get(participant, {})
        wrong: dict[str, list[str]] = {"commit": [], "abort": []}
        for oid, tx in decided.items():
            assert tx.outcome is not None  # `decided` holds decided transactions only
            state, amounts = holds.get(oid, (None, {}))
            if inv.effect_wrong(
                tx.outcome,
                resource.demand(facts.orders[oid]),
                state,
                amounts,
                held_is_wrong=facts.quiet,
            ):
                wrong[tx.outcome].append(oid)
        out += _violations(
            2,
            [
                (
                    f"{participant}_not_applied",
                    wrong["commit"],
                    f"committed, but {participant} did not take exactly the order's amounts",
                )
            ],
        )
        out += _violations(
            3,
            [
                (
                    f"{participant}_held_after_abort",
                    wrong["abort"],
                    f"aborted, but {participant} holds or took something",
                )
            ],
        )
        acked_other = [oid for oid, tx in decided.items() if participant in inv.acked_other(tx)]
        out += _violations(
            1,
            [
                (
                    f"{participant}_acked_other_outcome",
                    acked_other,
                    f"{participant} acknowledged the opposite of the decision",
                )
            ],
        )
    return out


def _ledgers(facts: Facts) -> list[Violation]:
    """4 and 5. conservation per key; nothing below zero; nothing held once quiet; the ledger's
    taken and held amounts equal the sums of the committed and the open holds."""
    out: list[Violation] = []
    for invariant, participant, what in ((4, "inventory", "sku"), (5, "payment", "customer")):
        ledger, holds = facts.ledgers.get(participant, {}), facts.holds.get(participant, {})
        for kind, keys, text in (
            (
                "not_conserved",
                inv.not_conserved(ledger),
                f"initial != available + held + final for these {what}s",
            ),
            ("negative", inv.negative(ledger), f"an amount below zero for these {what}s"),
            (
                "held_when_quiet",
                inv.still_held(ledger) if facts.quiet else [],
                f"still held once quiet, {what}s",
            ),
            (
                "final_mismatch",
                inv.final_mismatch(ledger, holds),
                f"ledger's taken amount != sum of committed holds, {what}s",
            ),
            (
                "held_mismatch",
                inv.held_mismatch(ledger, holds),
                f"ledger's held amount != sum of open holds, {what}s",
            ),
        ):
            if keys:
                out.append(
                    _violation(
                        invariant, f"{participant}_{kind}", f"{text}: {sorted(keys)[:MAX_IDS]}"
                    )
                )
    return out


def _read_models(facts: Facts, decided: dict[str, Tx]) -> list[Violation]:
    """6. the status read model (and shipping) agree with the decisions."""
    wrong_status = []
    for oid, tx in decided.items():
        assert tx.outcome is not None  # `decided` holds decided transactions only
        shown = facts.status.get(oid, (None, None))[0]
        # before quiet, a status not shown yet may be on its way
        if inv.status_wrong(tx.outcome, shown) and (facts.quiet or shown not in inv.NOT_YET_SHOWN):
            wrong_status.append(oid)
    return _violations(
        6,
        (
            ("status_mismatch", wrong_status, "status read model disagrees with the decision"),
            (
                "shipped_aborted",
                inv.shipped_aborted(decided, facts.shipments),
                "a shipment for an aborted order",
            ),
            (
                "not_shipped",
                inv.not_shipped(decided, facts.shipments) if facts.quiet else [],
                "committed but no shipment once quiet",
            ),
        ),
    )


def _quiet(facts: Facts) -> list[Violation]:
    """7. once quiet: no lag, no open transaction, nothing in doubt."""
    out: list[Violation] = []
    behind = {k: n for k, n in facts.lag.items() if n}
    if behind:
        out.append(
            _violation(
                7,
                "lag",
                "records not yet consumed: "
                + ", ".join(
                    f"{g} {t}[{p}]={n}" for (g, t, p), n in sorted(behind.items())[:MAX_IDS]
                ),
            )
        )
    if facts.open_txns:
        out.append(
            _violation(
                7,
                "open_transaction",
                "transactions neither committed nor aborted (or offsets unknown), so what follows "
                "them is not visible to committed reads: "
                + ", ".join(
                    f"{t}[{p}] " + (f"offsets {o[0]}..{o[1]}" if o else "unknown")
                    for (t, p), o in sorted(facts.open_txns.items())[:MAX_IDS]
                ),
            )
        )
    return out + _violations(
        7,
        [
            (
                "begun_not_decided",
                inv.begun_not_decided(facts.txs),
                "transactions begun but not decided",
            )
        ],
    )


def verify(
    settings: Settings,
    wait_s: float = 60.0,
    log: Callable[[str], None] = lambda *_: None,
    read_grace_s: float = 30.0,
) -> dict[str, Any]:
    """Wait (bounded) for the pipeline to go quiet, then gather the facts and check them. State
    that cannot be read (a broker or the database down for a moment) is read again for up to
    `read_grace_s` (or to the end of the wait, if later), then refused with the reason: no
    verdict is given on facts not read."""

    t0 = time.monotonic()
    deadline = t0 + wait_s
    unreadable_since, tries = None, 0
    while True:
        try:
            facts = gather(settings)
        except Exception as e:
            if not transient(e):
                raise
            why = " ".join(str(e).split())  # psycopg2's messages span lines
            now, tries = time.monotonic(), tries + 1
            unreadable_since = unreadable_since or now
            if now >= max(deadline, unreadable_since + read_grace_s):
                raise InfraError(
                    f"could not read the pipeline's state (reads failed: {tries}, "
                    f"over {now - unreadable_since:.0f} s): {why}"
                ) from e
            log(f"waiting for the state to be readable: {why}")
            time.sleep(1.0)
            continue
        unreadable_since, tries = None, 0
        facts.lag_total = sum(facts.lag.values())
        open_holds = sum(
            1 for h in facts.holds.values() for state, _ in h.values() if state == "held"
        )
        undecided = len(inv.begun_not_decided(facts.txs))
        facts.quiet = (
            facts.lag_total == 0
            and open_holds == 0
            and undecided == 0
            and not facts.open_txns
            and not facts.partial
        )
        if facts.quiet or time.monotonic() > deadline:
            break
        log(
            f"waiting for quiet: lag {facts.lag_total}, held {open_holds}, undecided {undecided}, "
            f"open transactions {len(facts.open_txns)}"
        )
        time.sleep(1.0)
    facts.quiet = True  # whatever was reached, the once-quiet invariants are now due
    violations = check(facts, settings.names.topic(ORDERS_PLACED))
    decided = [tx for tx in facts.txs.values() if tx.outcome]
    return {
        "orders": len(facts.placed),
        "committed": sum(tx.outcome == "commit" for tx in decided),
        "aborted": sum(tx.outcome == "abort" for tx in decided),
        "dead_letters": len(facts.dead),
        "seconds": round(time.monotonic() - t0, 2),
        "violations": [asdict(v) for v in violations],
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"verified {r['orders']} orders ({r['committed']} committed, {r['aborted']} aborted, "
        f"{r['dead_letters']} dead letters) in {r['seconds']} s"
    ]
    if not r["violations"]:
        lines.append("all invariants hold")
    for v in r["violations"]:
        ids = f" orders ({v['count']}): {', '.join(v['orders'])}" if v["count"] else ""
        lines.append(f"VIOLATION invariant {v['invariant']} {v['kind']}: {v['detail']}{ids}")
    return "\n".join(lines)
