"""The participant core shared by inventory and payment: hold all or nothing, commit or release
once, a redelivery returns the recorded outcome, and no amount is created or lost."""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Abort, Acked, Commit, Line, OrderPlaced, Prepare, Voted
from workers.participant.core import INVENTORY, PAYMENT, Hold, Resource, apply

DEADLINE = 5_000
RESOURCES = [pytest.param(INVENTORY, id="inventory"), pytest.param(PAYMENT, id="payment")]


def order(resource: Resource, oid: str, needs: list[tuple[str, int]]) -> OrderPlaced:
    """An order whose demand on `resource` is `needs`, as (key, amount) pairs (repeats allowed
    for inventory: one line each). Payment demands one key: the customer, for the total."""
    if resource is INVENTORY:
        items = tuple(Line(k, n, 100) for k, n in needs)
        return OrderPlaced(oid, "c-1", items, "EUR", sum(n * 100 for _, n in needs))
    ((customer, cents),) = needs
    return OrderPlaced(oid, customer, (Line("sku-x", 1, cents),), "EUR", cents)


def prepare(resource: Resource, oid: str, needs, deadline: int = DEADLINE) -> Prepare:
    return Prepare(oid, order(resource, oid, needs), deadline)


def voted(resource: Resource, oid: str, vote: str, reason: str | None = None) -> Voted:
    return Voted(oid, resource.participant, vote, reason)  # type: ignore[arg-type]


def acked(resource: Resource, oid: str, outcome: str) -> Acked:
    return Acked(oid, resource.participant, outcome)  # type: ignore[arg-type]


def held(oid: str, amounts: dict[str, int]) -> Hold:
    return Hold(oid, "yes", "held", None, amounts)


# --- Prepare --------------------------------------------------------------------------------

# (available, needs, vote, reason, deltas): one row per outcome of a first Prepare.
PREPARE_BOTH = [
    pytest.param({"k": 5}, [("k", 5)], "yes", None, {"k": [-5, 5, 0]}, id="exactly-enough"),
    pytest.param({"k": 9}, [("k", 2)], "yes", None, {"k": [-2, 2, 0]}, id="plenty"),
    pytest.param({"k": 4}, [("k", 5)], "no", "short", {}, id="short"),
    pytest.param({"k": 0}, [("k", 1)], "no", "short", {}, id="empty"),
    pytest.param({"other": 9}, [("k", 1)], "no", "unknown", {}, id="unknown-key"),
    pytest.param({}, [("k", 1)], "no", "unknown", {}, id="nothing-known"),
]

PREPARE_INVENTORY = [
    pytest.param(
        {"a": 5, "b": 5},
        [("a", 2), ("b", 3)],
        "yes",
        None,
        {"a": [-2, 2, 0], "b": [-3, 3, 0]},
        id="two-lines",
    ),
    pytest.param(
        {"a": 5, "b": 2}, [("a", 2), ("b", 3)], "no", "short", {}, id="one-line-short-holds-nothing"
    ),
    pytest.param(
        {"a": 1, "b": 5},
        [("a", 2), ("b", 3)],
        "no",
        "short",
        {},
        id="first-line-short-holds-nothing",
    ),
    pytest.param(
        {"a": 5}, [("a", 2), ("b", 3)], "no", "unknown", {}, id="one-line-unknown-holds-nothing"
    ),
    pytest.param(
        {"a": 5}, [("a", 2), ("a", 3)], "yes", None, {"a": [-5, 5, 0]}, id="duplicate-lines-add-up"
    ),
    pytest.param(
        {"a": 4}, [("a", 2), ("a", 3)], "no", "short", {}, id="duplicate-lines-short-together"
    ),
]


def _reason(resource: Resource, reason: str | None) -> str | None:
    return {"short": resource.short, "unknown": resource.unknown}.get(reason, reason)


def _check_prepare(resource, available, needs, vote, reason, deltas):
    avail_before = dict(available)
    out = apply(resource, available, {}, [prepare(resource, "o-1", needs)])
    want_reason = _reason(resource, reason)
    assert out.outputs == [voted(resource, "o-1", vote, want_reason)]
    assert out.deltas == deltas
    assert out.anomalies == []
    hold = out.holds["o-1"]
    assert (hold.vote, hold.reason) == (vote, want_reason)
    if vote == "yes":
        total: dict[str, int] = defaultdict(int)
        for k, n in needs:
            total[k] += n
        assert (hold.state, dict(hold.amounts)) == ("held", total)
    else:
        assert (hold.state, dict(hold.amounts)) == ("refused", {})
    assert available == avail_before


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("available, needs, vote, reason, deltas", PREPARE_BOTH)
def test_prepare(resource, available, needs, vote, reason, deltas):
    _check_prepare(resource, available, needs, vote, reason, deltas)


@pytest.mark.parametrize("available, needs, vote, reason, deltas", PREPARE_INVENTORY)
def test_prepare_inventory_lines(available, needs, vote, reason, deltas):
    _check_prepare(INVENTORY, available, needs, vote, reason, deltas)


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_late_prepare_still_holds(resource):
    # being behind is not a refusal: only the coordinator aborts for a deadline (the core reads
    # no clock at all)
    out = apply(resource, {"k": 5}, {}, [prepare(resource, "o-1", [("k", 1)])])
    assert out.outputs == [voted(resource, "o-1", "yes", None)]
    assert out.deltas == {"k": [-1, 1, 0]}


# A known order's recorded vote is returned again, whatever the stock is now; a released hold was
# aborted, and never answers a fresh yes.
RECORDED = [
    pytest.param(held("o-1", {"k": 2}), "yes", None, id="held"),
    pytest.param(Hold("o-1", "yes", "committed", None, {"k": 2}), "yes", None, id="committed"),
    pytest.param(Hold("o-1", "yes", "released", None, {"k": 2}), "no", "released", id="released"),
    pytest.param(Hold("o-1", "no", "refused", "R"), "no", "R", id="refused"),
    pytest.param(
        Hold("o-1", "no", "aborted", "aborted_before_prepare"),
        "no",
        "aborted_before_prepare",
        id="aborted",
    ),
]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("recorded, vote, reason", RECORDED)
@pytest.mark.parametrize("stock", [0, 100])
def test_prepare_redelivered_returns_recorded_vote(resource, recorded, vote, reason, stock):
    out = apply(resource, {"k": stock}, {"o-1": recorded}, [prepare(resource, "o-1", [("k", 2)])])
    assert out.outputs == [voted(resource, "o-1", vote, reason)]
    assert out.deltas == {} and out.holds == {} and out.anomalies == []


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("stock, vote", [(5, "yes"), (1, "no")])
def test_prepare_twice_in_one_batch_moves_once(resource, stock, vote):
    p = prepare(resource, "o-1", [("k", 2)])
    out = apply(resource, {"k": stock}, {}, [p, p])
    reason = None if vote == "yes" else resource.short
    assert out.outputs == [voted(resource, "o-1", vote, reason)] * 2
    assert out.deltas == ({"k": [-2, 2, 0]} if vote == "yes" else {})


# --- Commit and Abort -----------------------------------------------------------------------

# (known hold or None, command, state after or None for unchanged, deltas, acked outcome or None
# for an anomaly).
DECISIONS = [
    pytest.param(
        held("o-1", {"k": 3}),
        Commit("o-1"),
        "committed",
        {"k": [0, -3, 3]},
        "commit",
        id="commit-held",
    ),
    pytest.param(
        Hold("o-1", "yes", "committed", None, {"k": 3}),
        Commit("o-1"),
        None,
        {},
        "commit",
        id="commit-again",
    ),
    pytest.param(
        held("o-1", {"k": 3}),
        Abort("o-1", "r"),
        "released",
        {"k": [3, -3, 0]},
        "abort",
        id="abort-held",
    ),
    pytest.param(
        Hold("o-1", "yes", "released", None, {"k": 3}),
        Abort("o-1", "r"),
        None,
        {},
        "abort",
        id="abort-again",
    ),
    pytest.param(
        Hold("o-1", "no", "refused", "R"), Abort("o-1", "r"), None, {}, "abort", id="abort-refused"
    ),
    pytest.param(
        Hold("o-1", "no", "aborted", "aborted_before_prepare"),
        Abort("o-1", "r"),
        None,
        {},
        "abort",
        id="abort-aborted",
    ),
    pytest.param(None, Abort("o-1", "r"), "aborted", {}, "abort", id="abort-unknown"),
    pytest.param(
        Hold("o-1", "yes", "committed", None, {"k": 3}),
        Abort("o-1", "r"),
        None,
        {},
        None,
        id="abort-committed-anomaly",
    ),
    pytest.param(
        Hold("o-1", "no", "refused", "R"),
        Commit("o-1"),
        None,
        {},
        None,
        id="commit-refused-anomaly",
    ),
    pytest.param(None, Commit("o-1"), None, {}, None, id="commit-unknown-anomaly"),
    pytest.param(
        Hold("o-1", "no", "aborted", "aborted_before_prepare"),
        Commit("o-1"),
        None,
        {},
        None,
        id="commit-aborted-anomaly",
    ),
    pytest.param(
        Hold("o-1", "yes", "released", None, {"k": 3}),
        Commit("o-1"),
        None,
        {},
        None,
        id="commit-released-anomaly",
    ),
]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("known, command, state, deltas, ack", DECISIONS)
def test_decision(resource, known, command, state, deltas, ack):
    known_map = {"o-1": known} if known else {}
    before = copy.deepcopy(known_map)
    out = apply(resource, {"k": 7}, known_map, [command])
    assert out.deltas == deltas
    if ack is None:
        assert out.outputs == [] and len(out.anomalies) == 1 and "o-1" in out.anomalies[0]
    else:
        assert out.outputs == [acked(resource, "o-1", ack)] and out.anomalies == []
    if state is None:
        assert out.holds == {}
    else:
        assert out.holds["o-1"].state == state
    if state == "aborted":
        assert out.holds["o-1"].vote == "no" and not out.holds["o-1"].amounts
    assert known_map == before


@pytest.mark.parametrize("resource", RESOURCES)
def test_prepare_commit_commit_in_one_batch(resource):
    cmds = [prepare(resource, "o-1", [("k", 2)]), Commit("o-1"), Commit("o-1")]
    out = apply(resource, {"k": 5}, {}, cmds)
    assert out.outputs == [
        voted(resource, "o-1", "yes"),
        acked(resource, "o-1", "commit"),
        acked(resource, "o-1", "commit"),
    ]
    assert out.deltas == {"k": [-2, 0, 2]}
    assert out.holds["o-1"].state == "committed"


@pytest.mark.parametrize("resource", RESOURCES)
def test_prepare_abort_in_one_batch_frees_for_the_next(resource):
    cmds = [
        prepare(resource, "o-1", [("k", 2)]),
        Abort("o-1", "r"),
        prepare(resource, "o-2", [("k", 2)]),
    ]
    out = apply(resource, {"k": 2}, {}, cmds)
    assert out.outputs == [
        voted(resource, "o-1", "yes"),
        acked(resource, "o-1", "abort"),
        voted(resource, "o-2", "yes"),
    ]
    assert out.deltas == {"k": [-2, 2, 0]}
    assert (out.holds["o-1"].state, out.holds["o-2"].state) == ("released", "held")


@pytest.mark.parametrize("resource", RESOURCES)
def test_abort_before_prepare_same_batch(resource):
    cmds = [Abort("o-1", "deadline"), prepare(resource, "o-1", [("k", 1)])]
    out = apply(resource, {"k": 5}, {}, cmds)
    assert out.outputs == [
        acked(resource, "o-1", "abort"),
        voted(resource, "o-1", "no", "aborted_before_prepare"),
    ]
    assert out.deltas == {}
    assert out.holds["o-1"] == Hold("o-1", "no", "aborted", "aborted_before_prepare")


@pytest.mark.parametrize("resource", RESOURCES)
def test_abort_before_prepare_later_batch(resource):
    first = apply(resource, {"k": 5}, {}, [Abort("o-1", "deadline")])
    later = apply(resource, {"k": 5}, first.holds, [prepare(resource, "o-1", [("k", 1)])])
    assert later.outputs == [voted(resource, "o-1", "no", "aborted_before_prepare")]
    assert later.deltas == {} and later.holds == {}


@pytest.mark.parametrize("resource", RESOURCES)
def test_abort_then_commit_in_one_batch_is_an_anomaly(resource):
    cmds = [prepare(resource, "o-1", [("k", 2)]), Abort("o-1", "r"), Commit("o-1")]
    out = apply(resource, {"k": 5}, {}, cmds)
    assert out.outputs == [voted(resource, "o-1", "yes"), acked(resource, "o-1", "abort")]
    assert out.deltas == {"k": [0, 0, 0]}
    assert len(out.anomalies) == 1 and out.holds["o-1"].state == "released"


# --- A hot key within one batch -------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize(
    "stock, orders, amount, yes",
    [
        (3, 5, 1, 3),
        (0, 4, 1, 0),
        (10, 4, 3, 3),
        (12, 4, 3, 4),
        (5, 1, 6, 0),
    ],
)
def test_hot_key_never_goes_below_zero(resource, stock, orders, amount, yes):
    available = {"k": stock}
    cmds = [prepare(resource, f"o-{i}", [("k", amount)]) for i in range(orders)]
    out = apply(resource, available, {}, cmds)
    votes = [v.vote for v in out.outputs]
    assert votes == ["yes"] * yes + ["no"] * (orders - yes)  # first come, first served
    assert all(v.reason == resource.short for v in out.outputs if v.vote == "no")
    held_total = sum(h.amounts.get("k", 0) for h in out.holds.values() if h.state == "held")
    assert held_total == yes * amount
    assert out.deltas.get("k", [0, 0, 0]) == [-held_total, held_total, 0]
    assert stock + out.deltas.get("k", [0, 0, 0])[0] >= 0
    assert available == {"k": stock}


def test_inventory_all_or_none_across_orders_on_shared_keys():
    # o-1 takes the last "b", so o-2 (needing a and b) holds nothing and leaves "a" for o-3.
    cmds = [
        prepare(INVENTORY, "o-1", [("b", 1)]),
        prepare(INVENTORY, "o-2", [("a", 1), ("b", 1)]),
        prepare(INVENTORY, "o-3", [("a", 1)]),
    ]
    out = apply(INVENTORY, {"a": 1, "b": 1}, {}, cmds)
    assert [v.vote for v in out.outputs] == ["yes", "no", "yes"]
    assert out.deltas == {"a": [-1, 1, 0], "b": [-1, 1, 0]}


# --- Inputs are not mutated -----------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
def test_inputs_not_mutated(resource):
    available = {"k": 3, "j": 1}
    known = {
        "o-1": held("o-1", {"k": 2}),
        "o-2": held("o-2", {"j": 1}),
        "o-3": Hold("o-3", "yes", "committed", None, {"k": 1}),
    }
    before = (copy.deepcopy(available), copy.deepcopy(known))
    cmds = [
        Commit("o-1"),
        Abort("o-2", "r"),
        Abort("o-3", "r"),
        Abort("o-4", "r"),
        prepare(resource, "o-5", [("k", 3)]),
        prepare(resource, "o-6", [("k", 1)]),
    ]
    out = apply(resource, available, known, cmds)
    assert (available, known) == before
    assert known["o-1"].state == "held" and out.holds["o-1"].state == "committed"


# --- Property: conservation over random histories -------------------------------------------

KEYS = ("a", "b", "c")
ORDER_IDS = ("o-1", "o-2", "o-3", "o-4")


@st.composite
def histories(draw, resource: Resource):
    stock = {k: draw(st.integers(0, 6)) for k in KEYS if draw(st.booleans()) or k == "a"}
    orders = {}
    for oid in ORDER_IDS:
        if resource is INVENTORY:
            needs = draw(
                st.lists(
                    st.tuples(st.sampled_from(KEYS), st.integers(1, 4)), min_size=1, max_size=3
                )
            )
        else:
            needs = [(draw(st.sampled_from(KEYS)), draw(st.integers(1, 4)))]
        orders[oid] = prepare(resource, oid, needs, deadline=draw(st.integers(0, 20)))
    command = st.one_of(
        st.sampled_from(ORDER_IDS).map(lambda o: orders[o]),
        st.sampled_from(ORDER_IDS).map(Commit),
        st.sampled_from(ORDER_IDS).map(lambda o: Abort(o, "r")),
    )
    batches = draw(st.lists(st.lists(command, min_size=1, max_size=6), min_size=1, max_size=5))
    times = sorted(draw(st.lists(st.integers(0, 20), min_size=len(batches), max_size=len(batches))))
    return stock, batches, times


def _check_conservation(resource: Resource, history) -> None:
    start, batches, times = history
    available = dict(start)
    known: dict[str, Hold] = {}
    moved = {k: [0, 0, 0] for k in start}
    ends: dict[str, set[str]] = defaultdict(set)  # terminal states an order ever reached
    acks: dict[str, set[str]] = defaultdict(set)
    for batch, now in zip(batches, times):
        # every step: each prefix of the batch, from the same state, keeps stock non-negative
        for end in range(1, len(batch) + 1):
            part = apply(resource, available, known, batch[:end])
            for k, d in part.deltas.items():
                assert available[k] + d[0] >= 0
                assert moved[k][1] + d[1] >= 0 and moved[k][2] + d[2] >= 0
        out = apply(resource, available, known, batch)
        for k, d in out.deltas.items():
            assert k in start  # nothing moves on a key that does not exist
            available[k] += d[0]
            for i in range(3):
                moved[k][i] += d[i]
        known.update(out.holds)
        for oid, hold in known.items():
            if hold.state in ("committed", "released"):
                ends[oid].add(hold.state)
        for e in out.outputs:
            if isinstance(e, Acked):
                acks[e.order_id].add(e.outcome)

    for k in start:
        end_available = start[k] + moved[k][0]
        held_now, final = moved[k][1], moved[k][2]
        assert start[k] == end_available + held_now + final
        assert end_available == available[k] >= 0 and held_now >= 0 and final >= 0
        # the deltas agree with the recorded holds
        assert held_now == sum(h.amounts.get(k, 0) for h in known.values() if h.state == "held")
        assert final == sum(h.amounts.get(k, 0) for h in known.values() if h.state == "committed")
    for oid in ORDER_IDS:
        assert len(ends[oid]) <= 1, (oid, ends[oid])
        assert len(acks[oid]) <= 1, (oid, acks[oid])


@settings(max_examples=300, deadline=None)
@given(history=histories(INVENTORY))
def test_conservation_inventory(history):
    _check_conservation(INVENTORY, history)


@settings(max_examples=300, deadline=None)
@given(history=histories(PAYMENT))
def test_conservation_payment(history):
    _check_conservation(PAYMENT, history)
