"""The coordinator's fold: every ordering of an order's tx.log events, and the timer side."""

from __future__ import annotations

import itertools
from typing import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    Abort,
    Acked,
    Commit,
    DeadlinePassed,
    Decided,
    StatusChanged,
    TxBegun,
    Voted,
)
from workers.coordinator.fold import (
    Progress,
    Timers,
    Tx,
    due,
    fold,
    in_doubt,
    is_finished,
    replay,
    step,
)

O = "o-1"
BOTH = ("inventory", "payment")
BEGIN = TxBegun(O, BOTH, 1_000)
BEGIN_AGAIN = TxBegun(O, ("inventory",), 9_999)  # must be ignored: participants and deadline stay
DEADLINE = DeadlinePassed(O, 1_000)


def vote(participant: str, yes: bool) -> Voted:
    return Voted(O, participant, "yes" if yes else "no", None if yes else f"no_{participant}")


def oracle(events: Sequence) -> tuple[str | None, str | None]:
    """The rules restated without state: find the first prefix that settles the order."""
    for end in range(1, len(events) + 1):
        prefix = events[:end]
        begun = [e for e in prefix if isinstance(e, TxBegun)]
        if isinstance(prefix[-1], DeadlinePassed):
            return "abort", "deadline"
        if not begun:
            continue
        named = begun[0].participants
        votes = [e for e in prefix if isinstance(e, Voted) and e.participant in named]
        noes = [v for v in votes if v.vote == "no"]
        if noes:
            return "abort", f"{noes[0].participant}:{noes[0].reason}"
        if set(named) <= {v.participant for v in votes}:
            return "commit", None
    return None, None


def scenarios():
    for inv, pay, deadline, again, ack in itertools.product(
        (None, True, False), (None, True, False), (False, True), (False, True), (False, True)
    ):
        events = [BEGIN]
        events += [vote("inventory", inv)] if inv is not None else []
        events += [vote("payment", pay)] if pay is not None else []
        events += [DEADLINE] if deadline else []
        events += [BEGIN_AGAIN] if again else []
        # An ack of a decision we never made must never count, nor change anything.
        events += [Acked(O, "inventory", "commit")] if ack else []
        yield pytest.param(events, id=f"inv={inv}-pay={pay}-dl={deadline}-again={again}-ack={ack}")


@pytest.mark.parametrize("events", scenarios())
def test_every_ordering(events):
    for order in itertools.permutations(events):
        tx = replay(order)
        assert tx == replay(order)  # determinism
        assert (tx.outcome, tx.reason) == oracle(order)
        first = next((e for e in order if isinstance(e, TxBegun)), None)
        if first is not None:  # whichever TxBegun came first names the participants
            assert (tx.participants, tx.deadline_ms) == (first.participants, first.deadline_ms)
        if tx.outcome == "commit":  # only with a yes from every named one, and no named no
            named_votes = [
                e for e in order if isinstance(e, Voted) and e.participant in first.participants
            ]
            assert {v.participant for v in named_votes if v.vote == "yes"} == set(
                first.participants
            )
            assert all(v.vote == "yes" for v in named_votes)
        _check_steps(order, tx)


def _check_steps(order, final: Tx) -> None:
    tx, decided_at, decided_tx, emitted, told = None, None, None, [], []
    for i, event in enumerate(order):
        before = tx.outcome if tx else None
        tx, outputs = step(tx, event, now_ms=100 + i)
        if before is not None:  # once decided, never changes
            assert (tx.outcome, tx.reason) == (final.outcome, final.reason)
        if outputs and decided_at is None:
            decided_at, decided_tx = i, tx
            emitted += outputs
        elif outputs:  # after the decision: only participants told late
            told += outputs
        assert in_doubt(tx) == (
            tx.outcome is None
            and any(isinstance(e, Voted) and e.vote == "yes" for e in order[: i + 1])
        )
    assert tx == final
    if final.outcome is None:
        assert emitted == [] and not is_finished(final)
        return
    assert sum(isinstance(e, Decided) for _, e in emitted) == 1
    assert emitted[0] == ("tx.log", Decided(O, final.outcome, final.reason))
    status = "CONFIRMED" if final.outcome == "commit" else "REJECTED"
    assert emitted[-1] == ("status", StatusChanged(O, status, final.reason, 100 + decided_at))
    command = Commit(O) if final.outcome == "commit" else Abort(O, final.reason)
    # Whom to tell is known at the decision; a later TxBegun adds names, told at once.
    assert emitted[1:-1] == [(p, command) for p in decided_tx.targets]
    assert sorted(told) == sorted(
        (p, command) for p in final.targets if p not in decided_tx.targets
    )
    assert set(final.targets) >= set(final.participants)
    # The only ack in the scenarios is inventory's commit: it finishes an inventory-only commit.
    acked = any(isinstance(e, Acked) for e in order)
    assert is_finished(final) == (
        acked and final.outcome == "commit" and final.targets == ("inventory",)
    )


@pytest.mark.parametrize(
    "outcome_votes, outcome",
    [((True, True), "commit"), ((False, True), "abort"), ((True, False), "abort")],
)
def test_acks_finish_in_any_order(outcome_votes, outcome):
    base = [BEGIN, vote("inventory", outcome_votes[0]), vote("payment", outcome_votes[1])]
    acks = [Acked(O, p, outcome) for p in BOTH]
    for order in itertools.permutations(acks):
        tx = replay(base + [order[0]])
        assert tx.outcome == outcome and not is_finished(tx)
        tx = fold(tx, order[1])
        assert is_finished(tx) and tx.acked == frozenset(BOTH) and not tx.conflicts


def test_ack_of_the_other_outcome_is_a_conflict_not_an_ack():
    tx = replay(
        [
            BEGIN,
            vote("inventory", True),
            vote("payment", True),
            Acked(O, "inventory", "abort"),
            Acked(O, "payment", "commit"),
        ]
    )
    assert tx.acked == {"payment"} and tx.conflicts == {"inventory"} and not is_finished(tx)


def test_recorded_decisions_are_kept_for_audit_but_never_trusted():
    tx = replay([Decided(O, "commit", None), BEGIN, vote("inventory", False)])
    assert tx.outcome == "abort" and tx.recorded == (("commit", None),)


def test_votes_before_begin_are_kept_until_the_participants_are_known():
    tx = replay([vote("payment", True), vote("inventory", True)])
    assert tx.outcome is None and in_doubt(tx)
    assert fold(tx, BEGIN).outcome == "commit"


def test_vote_of_an_unnamed_participant_does_not_decide():
    only_inventory = TxBegun(O, ("inventory",), 5)
    tx = replay([only_inventory, vote("payment", False)])
    assert tx.outcome is None
    tx = fold(tx, vote("inventory", True))
    assert (tx.outcome, tx.targets) == ("commit", ("inventory",))


def test_deadline_before_begin_aborts_and_tells_every_voter():
    tx, outputs = step(fold(None, vote("payment", True)), DEADLINE, now_ms=7)
    assert (tx.outcome, tx.reason, tx.targets) == ("abort", "deadline", ("payment",))
    assert ("payment", Abort(O, "deadline")) in outputs
    tx = fold(tx, BEGIN)  # a late begin adds whom to tell, not what was decided
    assert tx.outcome == "abort" and tx.targets == ("inventory", "payment")


def test_redelivered_votes_are_recorded_once():
    assert replay([BEGIN, vote("inventory", True), vote("inventory", True)]).votes == (
        ("inventory", "yes", None),
    )


def test_foreign_events_are_refused():
    with pytest.raises(ValueError):
        fold(Tx(order_id="other"), BEGIN)
    with pytest.raises(TypeError):
        fold(None, Commit(O))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        replay([])


TX_LOG = st.sampled_from(
    [BEGIN, BEGIN_AGAIN, DEADLINE, Decided(O, "abort", "x")]
    + [vote(p, y) for p in BOTH for y in (True, False)]
    + [Acked(O, p, o) for p in BOTH for o in ("commit", "abort")]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TX_LOG, max_size=14))
def test_any_sequence_decides_at_most_once(events):
    # Contradicting or repeated votes included: whatever the log holds, one decision, one output
    # set.
    tx, decisions = None, []
    for i, event in enumerate(events):
        previous = tx
        tx, outputs = step(tx, event, now_ms=i)
        if previous is not None and previous.outcome is not None:
            assert (tx.outcome, tx.reason) == (previous.outcome, previous.reason)
        decisions += [e for _, e in outputs if isinstance(e, Decided)]
    assert len(decisions) == (0 if tx is None or tx.outcome is None else 1)
    if events:
        assert replay(events) == tx and (tx.outcome, tx.reason) == oracle(events)


# --- the timer side -------------------------------------------------------------------------

OPEN = replay([BEGIN, vote("inventory", True)])  # deadline 1_000
COMMITTED = replay([BEGIN, vote("inventory", True), vote("payment", True)])
HALF_ACKED = fold(COMMITTED, Acked(O, "inventory", "commit"))
ABORTED = replay([BEGIN, vote("payment", False)])
ORPHAN = fold(None, vote("payment", True))

DUE = [
    # (id, tx, timers, now, orphan_after, expected timers, expected destinations)
    ("before-deadline", OPEN, Timers(), 999, None, Timers(), []),
    ("at-deadline", OPEN, Timers(), 1_000, None, Timers(deadline_appended_ms=1_000), ["tx.log"]),
    (
        "appended-recently",
        OPEN,
        Timers(deadline_appended_ms=1_000),
        1_499,
        None,
        Timers(deadline_appended_ms=1_000),
        [],
    ),
    (
        "appended-once",
        OPEN,
        Timers(deadline_appended_ms=1_000),
        99_000,
        None,
        Timers(deadline_appended_ms=1_000),
        [],
    ),
    ("decided-starts-clock", COMMITTED, Timers(), 2_000, None, Timers(resent_ms=2_000), []),
    (
        "decided-resend-not-yet",
        COMMITTED,
        Timers(resent_ms=2_000),
        2_499,
        None,
        Timers(resent_ms=2_000),
        [],
    ),
    (
        "decided-resend",
        COMMITTED,
        Timers(resent_ms=2_000),
        2_500,
        None,
        Timers(resent_ms=2_500, resends=1),
        ["inventory", "payment"],
    ),
    (
        "second-resend-waits-twice",
        COMMITTED,
        Timers(resent_ms=2_500, resends=1),
        3_499,
        None,
        Timers(resent_ms=2_500, resends=1),
        [],
    ),
    # never heard from since: down, and the command waits in its log (the backoff is below)
    (
        "silent-gets-one-resend-only",
        COMMITTED,
        Timers(resent_ms=2_500, resends=1),
        99_000,
        None,
        Timers(resent_ms=2_500, resends=1),
        [],
    ),
    (
        "resend-only-missing",
        HALF_ACKED,
        Timers(resent_ms=0),
        2_500,
        None,
        Timers(resent_ms=2_500, resends=1),
        ["payment"],
    ),
    (
        "abort-resend",
        ABORTED,
        Timers(resent_ms=0),
        600,
        None,
        Timers(resent_ms=600, resends=1),
        ["inventory", "payment"],
    ),
    (
        "all-acked",
        fold(HALF_ACKED, Acked(O, "payment", "commit")),
        Timers(resent_ms=0),
        9_000,
        None,
        Timers(resent_ms=0),
        [],
    ),
    ("orphan-no-window", ORPHAN, Timers(first_seen_ms=0), 10**9, None, Timers(first_seen_ms=0), []),
    (
        "orphan-too-early",
        ORPHAN,
        Timers(first_seen_ms=0),
        59_999,
        60_000,
        Timers(first_seen_ms=0),
        [],
    ),
    (
        "orphan-due",
        ORPHAN,
        Timers(first_seen_ms=0),
        60_000,
        60_000,
        Timers(first_seen_ms=0, deadline_appended_ms=60_000),
        ["tx.log"],
    ),
]


@pytest.mark.parametrize(
    "tx, timers, now, orphan_after, want_timers, want_to",
    [c[1:] for c in DUE],
    ids=[c[0] for c in DUE],
)
def test_due(tx, timers, now, orphan_after, want_timers, want_to):
    got_timers, outputs = due(tx, timers, now, resend_after_ms=500, orphan_after_ms=orphan_after)
    assert got_timers == want_timers
    assert [to for to, _ in outputs] == want_to
    for to, event in outputs:
        if to == "tx.log":
            assert event == DeadlinePassed(O, now)
        else:
            assert event == (Commit(O) if tx.outcome == "commit" else Abort(O, tx.reason))


def test_deadline_marker_from_due_decides_through_the_fold():
    timers, outputs = due(OPEN, Timers(), 1_000, resend_after_ms=500)
    tx, decided = step(OPEN, outputs[0][1], now_ms=1_001)
    assert (tx.outcome, tx.reason) == ("abort", "deadline")
    assert [to for to, _ in decided] == ["tx.log", "inventory", "payment", "status"]
    assert due(tx, timers, 1_001, resend_after_ms=500) == (
        Timers(deadline_appended_ms=1_000, resent_ms=1_001),
        [],
    )


# A deadline is for a participant that is down or stuck; a re-send for one that lost the command
# or shows nothing since it was sent. (begun at offset 5, decided at offset 10, stall 500 ms)
BEGUN, DECIDED_AT = Timers(begun_at=5), Timers(decided_at=10, resent_ms=2_000)
RESENT = Timers(decided_at=10, resent_ms=2_500, resends=1)
PROGRESS = [
    ("behind-waits", OPEN, BEGUN, 1_000, {"payment": Progress(900, voted_past=3)}, []),
    ("silent-aborts", OPEN, BEGUN, 1_000, {"payment": Progress(400, voted_past=3)}, ["tx.log"]),
    ("went-past-aborts", OPEN, BEGUN, 1_000, {"payment": Progress(900, voted_past=7)}, ["tx.log"]),
    (
        "never-heard-counts-from-first-seen",
        OPEN,
        Timers(begun_at=5, first_seen_ms=800),
        1_000,
        {},
        [],
    ),
    (
        "orphan-never-waits",
        ORPHAN,
        Timers(first_seen_ms=0),
        60_000,
        {"payment": Progress(59_900)},
        ["tx.log"],
    ),
    (
        "behind-gets-no-resend",
        COMMITTED,
        DECIDED_AT,
        2_500,
        {"inventory": Progress(2_400, acked_past=8), "payment": Progress(2_300, acked_past=9)},
        [],
    ),
    (
        "silent-gets-resend",
        COMMITTED,
        DECIDED_AT,
        2_500,
        {"inventory": Progress(2_400, acked_past=8), "payment": Progress(1_500)},
        ["payment"],
    ),
    (
        "went-past-gets-resend",
        COMMITTED,
        DECIDED_AT,
        2_500,
        {"inventory": Progress(2_400, acked_past=12), "payment": Progress(2_300, acked_past=9)},
        ["inventory"],
    ),
    # after one re-send: a participant still silent is down (its log keeps the command), one back
    # and busy is behind; one back and quiet again lost it once more, after the backoff
    (
        "down-gets-no-second-resend",
        COMMITTED,
        RESENT,
        60_000,
        {"inventory": Progress(2_400, acked_past=8), "payment": Progress(1_500)},
        [],
    ),
    (
        "back-and-busy-waits",
        COMMITTED,
        RESENT,
        60_000,
        {"inventory": Progress(59_900, acked_past=8), "payment": Progress(59_800)},
        [],
    ),
    (
        "back-and-quiet-waits-twice",
        COMMITTED,
        RESENT,
        3_499,
        {"inventory": Progress(2_400, acked_past=8), "payment": Progress(2_600)},
        [],
    ),
    (
        "back-and-quiet-gets-another",
        COMMITTED,
        RESENT,
        3_500,
        {"inventory": Progress(2_400, acked_past=8), "payment": Progress(2_600)},
        ["payment"],
    ),
    (
        "resend-backoff-capped-not-yet",
        COMMITTED,
        Timers(decided_at=10, resent_ms=0, resends=20),
        29_999,
        {"payment": Progress(1)},
        [],
    ),
    (
        "resend-backoff-capped",
        COMMITTED,
        Timers(decided_at=10, resent_ms=0, resends=20),
        30_000,
        {"inventory": Progress(1), "payment": Progress(1)},
        ["inventory", "payment"],
    ),
]


@pytest.mark.parametrize(
    "tx, timers, now, progress, want_to", [c[1:] for c in PROGRESS], ids=[c[0] for c in PROGRESS]
)
def test_due_by_progress(tx, timers, now, progress, want_to):
    _, outputs = due(
        tx,
        timers,
        now,
        resend_after_ms=500,
        orphan_after_ms=60_000,
        progress=progress,
        stall_ms=500,
    )
    assert [to for to, _ in outputs] == want_to


def test_a_begin_read_past_its_deadline_gets_a_whole_deadline_from_then():
    """A begin's deadline is intake's clock, read before intake's own database work: read late
    by the coordinator (intake delayed after a quiet spell, or its host's clock behind), the
    order still gets a whole deadline from when the coordinator first saw it before a silent
    participant is taken for down."""
    timers = Timers(first_seen_ms=50_000, begun_at=7)  # OPEN's deadline is 1_000
    quiet = {"payment": Progress(20_000, 3, 3)}  # last heard on this partition 30 s before
    kw = dict(resend_after_ms=500, orphan_after_ms=10_000, progress=quiet, stall_ms=10_000)
    assert due(OPEN, timers, 59_999, **kw)[1] == []  # type: ignore[arg-type]
    _, outputs = due(OPEN, timers, 60_000, **kw)  # type: ignore[arg-type]
    assert outputs == [("tx.log", DeadlinePassed(O, 60_000))]
