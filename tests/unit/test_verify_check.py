"""`verify.check` over hand-made facts: each kind of violation, one at a time, and a clean set;
and `verify` itself when the state cannot be read for a while."""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest
from confluent_kafka import KafkaError, KafkaException
from offline import offline_settings

from infra.procs import InfraError
from orderbus.ops import verify as verify_module
from orderbus.ops import verify_facts
from orderbus.ops.verify import check, verify
from orderbus.ops.verify_facts import Facts
from schemas.events import Acked, Line, OrderPlaced, TxBegun, Voted
from topics.read import IncompleteRead, ReadError
from workers.coordinator.fold import replay

PLACED = "orders.placed.v1"
P = ("inventory", "payment")


def order(oid, qty=1, price=100, cust="c1", sku="s1"):
    return OrderPlaced(oid, cust, (Line(sku, qty, price),), "EUR", qty * price)


def committed_tx(oid):
    return replay(
        [
            TxBegun(oid, P, 1),
            Voted(oid, "inventory", "yes", None),
            Voted(oid, "payment", "yes", None),
            Acked(oid, "inventory", "commit"),
            Acked(oid, "payment", "commit"),
        ]
    )


def aborted_tx(oid):
    return replay([TxBegun(oid, P, 1), Voted(oid, "inventory", "no", "out_of_stock")])


def clean_facts() -> Facts:
    """One committed order (a) and one aborted (b), all effects consistent, quiet."""
    a, b = order("a"), order("b", qty=2)
    f = Facts()
    f.placed["a"].append((0, 0, a.content_hash()))
    f.placed["b"].append((1, 0, b.content_hash()))
    f.orders = {"a": a, "b": b}
    f.txs = {"a": committed_tx("a"), "b": aborted_tx("b")}
    f.status = {"a": ("SHIPPED", None), "b": ("REJECTED", "inventory:out_of_stock")}
    f.holds = {
        "inventory": {"a": ("committed", {"s1": 1}), "b": ("refused", {})},
        "payment": {"a": ("committed", {"c1": 100})},
    }
    f.ledgers = {"inventory": {"s1": (10, 9, 0, 1)}, "payment": {"c1": (1000, 900, 0, 100)}}
    f.shipments = {"a"}
    f.lag = {("g", "t", 0): 0}
    f.quiet = True
    return f


def kinds(f) -> set[str]:
    return {v.kind for v in check(f, PLACED)}


def test_clean_facts_have_no_violation():
    assert check(clean_facts(), PLACED) == []


def _conflict(f):
    f.placed["a"].append((2, 5, "other-content"))


def _dead_but_decided(f):
    f.dead.add((PLACED, 0, 0))


def _acked_other(f):
    f.txs["a"] = dataclasses.replace(f.txs["a"], acks=f.txs["a"].acks | {("payment", "abort")})


def _negative(f):
    f.ledgers["inventory"]["s1"] = (10, -1, 0, 11)


def _not_shipped(f):
    f.shipments = set()


def _held_when_quiet(f):
    f.ledgers["payment"]["c1"] = (1000, 850, 50, 100)
    f.holds["payment"]["x"] = ("held", {"c1": 50})


def _begun_not_decided(f):
    f.txs["x"] = replay([TxBegun("x", P, 1), Voted("x", "payment", "yes", None)])


def _missing(f):
    f.txs.pop("a")


def _invalid_not_dead(f):
    f.invalid_placed.append((3, 7, "undecodable"))


def _open_transaction(f):
    f.open_txns[("orders.dlq.v1", 2)] = (40, 43)


def _offsets_unknown(f):
    f.open_txns[("orders.dlq.v1", 2)] = None


@pytest.mark.parametrize(
    "corrupt, kind",
    [
        (_conflict, "conflict_not_dead"),
        (_dead_but_decided, "decided_and_dead"),
        (_acked_other, "payment_acked_other_outcome"),
        (_negative, "inventory_negative"),
        (_not_shipped, "not_shipped"),
        (_held_when_quiet, "payment_held_when_quiet"),
        (_begun_not_decided, "begun_not_decided"),
        (_missing, "missing"),
        (_invalid_not_dead, "invalid_not_dead"),
        (_open_transaction, "open_transaction"),
        (_offsets_unknown, "open_transaction"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_each_corruption_is_its_own_violation(corrupt, kind):
    f = clean_facts()
    corrupt(f)
    assert kind in kinds(f)


def test_once_quiet_checks_wait_for_quiet():
    f = clean_facts()
    _not_shipped(f)
    f.quiet = False
    assert "not_shipped" not in kinds(f)


def test_a_missing_dead_letter_says_whether_it_was_written_uncommitted():
    f = clean_facts()
    f.invalid_placed += [(3, 7, "undecodable"), (4, 9, "schema_violation")]
    f.dead_written.add((PLACED, 4, 9))
    [v] = [v for v in check(f, PLACED) if v.kind == "invalid_not_dead"]
    assert "['3:7', '4:9']" in v.detail
    assert "open transaction: ['4:9']" in v.detail
    f.dead_written.clear()
    [v] = [v for v in check(f, PLACED) if v.kind == "invalid_not_dead"]
    assert "nor written uncommitted" in v.detail


SETTINGS = offline_settings()  # its orders topic is PLACED
BROKER_DOWN = KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
REFUSED = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not allowed"))


def _gather_failing(times: int, error: Exception = BROKER_DOWN):
    calls = []

    def gather(_settings):
        calls.append(1)
        if len(calls) <= times:
            raise error
        return clean_facts()

    return gather, calls


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(verify_module.time, "sleep", lambda _s: None)


def test_verify_reads_again_while_the_state_is_unreadable(monkeypatch, no_sleep):
    gather, calls = _gather_failing(2)
    monkeypatch.setattr(verify_module, "gather", gather)
    said = []
    result = verify(SETTINGS, wait_s=0, log=said.append)  # past the wait: the grace still holds
    assert result["violations"] == [] and result["orders"] == 2
    assert len(calls) == 3
    assert sum("broker down" in m for m in said) == 2


def test_verify_refuses_a_verdict_on_state_it_could_not_read(monkeypatch, no_sleep):
    gather, calls = _gather_failing(10**6)
    monkeypatch.setattr(verify_module, "gather", gather)
    with pytest.raises(InfraError, match=r"could not read .* \(reads failed: 1,.*broker down"):
        verify(SETTINGS, wait_s=0, read_grace_s=0)
    assert len(calls) == 1


def test_verify_does_not_read_again_what_is_refused(monkeypatch, no_sleep):
    gather, calls = _gather_failing(10**6, REFUSED)
    monkeypatch.setattr(verify_module, "gather", gather)
    with pytest.raises(KafkaException, match="not allowed"):
        verify(SETTINGS, wait_s=60)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "error, again",
    [
        (BROKER_DOWN, True),
        (REFUSED, False),
        (KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True)), False),
        (ReadError("reading t: down", KafkaError(KafkaError._TRANSPORT)), True),
        (ReadError("reading t: no", KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)), False),
        (IncompleteRead("t: partitions [0] not read to their end in 120s"), True),
        (psycopg2.OperationalError("connection refused"), True),
        (KeyError("topic t does not exist"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_failures_are_read_again(error, again):
    assert verify_facts.transient(error) is again
