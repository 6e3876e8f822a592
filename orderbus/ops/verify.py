"""`orderbus verify`: every invariant of DESIGN.md checked against the topics and the databases.

`check` is pure over the gathered facts, so each kind of violation is tested by feeding it
deliberately corrupted facts as well as corrupted real state."""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from infra.procs import InfraError
from topics.catalogue import ORDERS_PLACED
from workers.participant.core import INVENTORY, PAYMENT

MAX_IDS = 20    # order ids listed per violation; the count says how many there are


@dataclass(frozen=True)
class Violation:
    invariant: int
    kind: str
    detail: str
    orders: tuple[str, ...] = ()
    count: int = 0


def _v(invariant, kind, detail, orders=()) -> Violation:
    ids = tuple(sorted(orders))
    return Violation(invariant, kind, detail, ids[:MAX_IDS], len(ids))


def check(f, placed_topic: str = ORDERS_PLACED.name) -> list[Violation]:
    out: list[Violation] = []
    # 1. every order decided exactly once, or dead-lettered; never both outcomes
    missing, undecided_dead, conflicts, recorded_wrong = [], [], [], []
    for oid, msgs in f.placed.items():
        first_hash = msgs[0][2]
        for p, o, h in msgs:
            if h != first_hash and (placed_topic, p, o) not in f.dead:
                conflicts.append(oid)
        tx = f.txs.get(oid)
        if tx is None or tx.outcome is None:
            if not all((placed_topic, p, o) in f.dead for p, o, _ in msgs):
                missing.append(oid)
        elif all((placed_topic, p, o) in f.dead for p, o, _ in msgs):
            undecided_dead.append(oid)
        if tx is not None and any(outcome != tx.outcome for outcome, _ in tx.recorded):
            recorded_wrong.append(oid)
    bad_msgs = [f"{p}:{o}" for p, o, _ in f.invalid_placed if (placed_topic, p, o) not in f.dead]
    for kind, ids, text in (
            ("missing", missing, "published, valid, but neither decided nor dead-lettered"),
            ("decided_and_dead", undecided_dead, "decided although every copy was dead-lettered"),
            ("conflict_not_dead", conflicts, "order id reused with other content, not dead-lettered"),
            ("two_decisions", recorded_wrong, "a recorded decision differs from the fold of tx.log")):
        if ids:
            out.append(_v(1, kind, text, ids))
    if bad_msgs:
        uncommitted = [m for m in bad_msgs
                       if (placed_topic, *map(int, m.split(":"))) in f.dead_written]
        out.append(_v(1, "invalid_not_dead", f"malformed messages at partition:offset {bad_msgs[:MAX_IDS]} "
                      "are not in the dead-letter topic"
                      + (" (found only reading uncommitted records too: aborted, still open, or "
                         f"behind another's open transaction: {uncommitted[:MAX_IDS]})"
                         if uncommitted else " (nor written uncommitted)")))
    decided = {oid: tx for oid, tx in f.txs.items() if tx.outcome is not None and oid in f.orders}
    # 2 and 3. effects of committed orders applied exactly once, of aborted ones not at all
    for participant, resource in (("inventory", INVENTORY), ("payment", PAYMENT)):
        holds = f.holds.get(participant, {})
        wrong_commit, wrong_abort, conflicting_acks = [], [], []
        for oid, tx in decided.items():
            state, amounts = holds.get(oid, (None, {}))
            if tx.outcome == "commit":
                if state != "committed" or dict(amounts) != resource.demand(f.orders[oid]):
                    wrong_commit.append(oid)
            elif state == "committed" or (state == "held" and f.quiet):
                wrong_abort.append(oid)
            if participant in tx.conflicts:
                conflicting_acks.append(oid)
        if wrong_commit:
            out.append(_v(2, f"{participant}_not_applied", f"committed, but {participant} did not "
                          "take exactly the order's amounts", wrong_commit))
        if wrong_abort:
            out.append(_v(3, f"{participant}_held_after_abort", f"aborted, but {participant} holds "
                          "or took something", wrong_abort))
        if conflicting_acks:
            out.append(_v(1, f"{participant}_acked_other_outcome", f"{participant} acknowledged "
                          "the opposite of the decision", conflicting_acks))
    # 4 and 5. conservation per key; nothing below zero; nothing held once quiet; the ledger's
    # committed amounts equal the sum of committed holds
    for inv, (participant, what) in ((4, ("inventory", "sku")), (5, ("payment", "customer"))):
        ledger, holds = f.ledgers.get(participant, {}), f.holds.get(participant, {})
        by_state = defaultdict(Counter)
        for state, amounts in holds.values():
            by_state[state].update(dict(amounts))
        broken, negative, held, final_off, held_off = [], [], [], [], []
        for key, (initial, available, held_n, final) in ledger.items():
            if initial != available + held_n + final:
                broken.append(key)
            if min(available, held_n, final) < 0:
                negative.append(key)
            if held_n and f.quiet:
                held.append(key)
            if final != by_state["committed"][key]:
                final_off.append(key)
            if held_n != by_state["held"][key]:
                held_off.append(key)
        for kind, keys, text in (
                ("not_conserved", broken, f"initial != available + held + final for these {what}s"),
                ("negative", negative, f"an amount below zero for these {what}s"),
                ("held_when_quiet", held, f"still held once quiet, {what}s"),
                ("final_mismatch", final_off, f"ledger's taken amount != sum of committed holds, {what}s"),
                ("held_mismatch", held_off, f"ledger's held amount != sum of open holds, {what}s")):
            if keys:
                out.append(_v(inv, f"{participant}_{kind}", f"{text}: {sorted(keys)[:MAX_IDS]}"))
    # 6. the status read model (and shipping) agree with the decisions
    wrong_status, shipped_aborted, unshipped = [], [], []
    for oid, tx in decided.items():
        status = f.status.get(oid, (None, None))[0]
        ok = status in ("CONFIRMED", "SHIPPED") if tx.outcome == "commit" else status == "REJECTED"
        if not ok and (f.quiet or status is not None and status != "PENDING"):
            wrong_status.append(oid)
        if tx.outcome == "abort" and oid in f.shipments:
            shipped_aborted.append(oid)
        if tx.outcome == "commit" and oid not in f.shipments and f.quiet:
            unshipped.append(oid)
    for kind, ids, text in (("status_mismatch", wrong_status, "status read model disagrees with the decision"),
                            ("shipped_aborted", shipped_aborted, "a shipment for an aborted order"),
                            ("not_shipped", unshipped, "committed but no shipment once quiet")):
        if ids:
            out.append(_v(6, kind, text, ids))
    # 7. once quiet: no lag, nothing in doubt
    behind = {k: n for k, n in f.lag.items() if n}
    if behind:
        out.append(_v(7, "lag", "records not yet consumed: " + ", ".join(
            f"{g} {t}[{p}]={n}" for (g, t, p), n in sorted(behind.items())[:MAX_IDS])))
    if f.open_txns:
        out.append(_v(7, "open_transaction", "transactions neither committed nor aborted (or "
                      "offsets unknown), so what follows them is not visible to committed reads: "
                      + ", ".join(f"{t}[{p}] " + (f"offsets {o[0]}..{o[1]}" if o else "unknown")
                                  for (t, p), o in sorted(f.open_txns.items())[:MAX_IDS])))
    doubtful = [oid for oid, tx in f.txs.items() if tx.outcome is None]
    if doubtful:
        out.append(_v(7, "in_doubt", "transactions begun but not decided", doubtful))
    return out


def verify(settings, wait_s: float = 60.0, log=lambda *_: None, read_grace_s: float = 30.0) -> dict:
    """Wait (bounded) for the pipeline to go quiet, then gather the facts and check them. State
    that cannot be read (a broker or the database down for a moment) is read again for up to
    `read_grace_s` (or to the end of the wait, if later), then refused with the reason: no
    verdict is given on facts not read."""
    from orderbus.ops.verify_facts import gather, transient
    t0 = time.monotonic()
    deadline = t0 + wait_s
    unreadable_since, tries = None, 0
    while True:
        try:
            facts = gather(settings)
        except Exception as e:
            if not transient(e):
                raise
            why = " ".join(str(e).split())     # psycopg2's messages span lines
            now, tries = time.monotonic(), tries + 1
            unreadable_since = unreadable_since or now
            if now >= max(deadline, unreadable_since + read_grace_s):
                raise InfraError(f"could not read the pipeline's state (reads failed: {tries}, "
                                 f"over {now - unreadable_since:.0f} s): {why}") from e
            log(f"waiting for the state to be readable: {why}")
            time.sleep(1.0)
            continue
        unreadable_since, tries = None, 0
        facts.lag_total = sum(facts.lag.values())
        open_holds = sum(1 for h in facts.holds.values() for state, _ in h.values() if state == "held")
        undecided = sum(1 for tx in facts.txs.values() if tx.outcome is None)
        facts.quiet = (facts.lag_total == 0 and open_holds == 0 and undecided == 0
                       and not facts.open_txns and not facts.partial)
        if facts.quiet or time.monotonic() > deadline:
            break
        log(f"waiting for quiet: lag {facts.lag_total}, held {open_holds}, undecided {undecided}, "
            f"open transactions {len(facts.open_txns)}")
        time.sleep(1.0)
    facts.quiet = True     # whatever was reached, the once-quiet invariants are now due
    violations = check(facts, settings.names.topic(ORDERS_PLACED))
    decided = [tx for tx in facts.txs.values() if tx.outcome]
    return {"orders": len(facts.placed), "committed": sum(tx.outcome == "commit" for tx in decided),
            "aborted": sum(tx.outcome == "abort" for tx in decided),
            "dead_letters": len(facts.dead), "seconds": round(time.monotonic() - t0, 2),
            "violations": [asdict(v) for v in violations]}


def render(r: dict) -> str:
    lines = [f"verified {r['orders']} orders ({r['committed']} committed, {r['aborted']} aborted, "
             f"{r['dead_letters']} dead letters) in {r['seconds']} s"]
    if not r["violations"]:
        lines.append("all invariants hold")
    for v in r["violations"]:
        ids = f" orders ({v['count']}): {', '.join(v['orders'])}" if v["count"] else ""
        lines.append(f"VIOLATION invariant {v['invariant']} {v['kind']}: {v['detail']}{ids}")
    return "\n".join(lines)
