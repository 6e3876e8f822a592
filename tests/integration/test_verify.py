"""`orderbus verify` on a real sandbox pipeline: clean after a run, and catching each kind of
deliberately corrupted state."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from confluent_kafka import Producer
from pipeline import order

from infra.postgres.server import admin_connect
from infra.procs import InfraError
from orderbus.ops.verify import verify
from schemas import codec
from schemas.events import Decided
from topics.catalogue import ORDERS_DLQ, TX_LOG
from workers.runtime.signing import signed_as

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipe(settings, tmp_path_factory):
    """The shared sandbox pipeline, with a deadline long enough that no order of this test is
    aborted for time on a busy machine (its counts are exact)."""
    import uuid

    from pipeline import Pipeline

    p = Pipeline(
        settings, "v" + uuid.uuid4().hex[:8], tmp_path_factory.mktemp("pipe"), deadline_ms=60_000
    )
    p.start()
    yield p
    p.close()


def kinds(result) -> set[str]:
    return {v["kind"] for v in result["violations"]}


def test_clean_run_verifies_then_each_corruption_is_caught(pipe):
    pipe.stock(**{"v-sku": 5, "v-two": 100})
    pipe.account(**{"v-rich": 100_000, "v-poor": 10})
    good = [order(f"v-ok-{i}", "v-rich", ("v-two", 1, 100)) for i in range(6)]
    bad = [
        order("v-poor-1", "v-poor", ("v-two", 1, 100)),
        order("v-oos-1", "v-rich", ("v-sku", 9, 100)),
    ]
    pipe.publish(*good, *bad)
    pipe.publisher.publish_raw(b"junk", b"\xff not json")
    assert pipe.publisher.flush(30) == 0
    pipe.wait_final([o["order_id"] for o in good + bad])
    clean = verify(pipe.settings, wait_s=60)
    assert clean["violations"] == [], clean["violations"]
    assert (clean["committed"], clean["aborted"], clean["dead_letters"]) == (6, 2, 1)

    pipe.sup.stop()  # nothing may repair what we break now
    inv = pipe.dbs["inventory"]
    admin = admin_connect(pipe.layout, inv)
    with admin.cursor() as cur:
        cur.execute("ALTER TABLE stock DROP CONSTRAINT stock_check")
    admin.close()
    pipe.sql("inventory", "UPDATE holds SET state = 'released' WHERE order_id = 'v-ok-0'")
    pipe.sql("inventory", "UPDATE stock SET available = available + 5 WHERE sku = 'v-sku'")
    pipe.sql(
        "inventory",
        "INSERT INTO holds (order_id, vote, state, amounts) VALUES ('v-oos-1', 'yes', 'held', "
        "'{\"v-sku\": 9}') ON CONFLICT (order_id) DO UPDATE SET state = 'held', vote = 'yes', "
        "amounts = EXCLUDED.amounts",
    )
    pipe.sql("payments", "UPDATE holds SET amounts = '{\"v-rich\": 1}' WHERE order_id = 'v-ok-1'")
    pipe.sql("orders", "UPDATE order_status SET status = 'REJECTED' WHERE order_id = 'v-ok-2'")
    pipe.sql("shipping", "INSERT INTO shipments (order_id) VALUES ('v-poor-1')")
    pipe.publish(order("v-late", "v-rich", ("v-two", 1, 100)))  # nobody is running
    pipe.publisher.publish_raw(b"junk2", b"{{{")
    assert pipe.publisher.flush(30) == 0
    # a second decision, signed as the coordinator's (as a coordinator gone wrong would write it;
    # tests/integration/test_forgery.py writes what another service cannot sign)
    forger, forged = Producer(pipe.settings.kafka(partitioner="murmur2_random")), []
    tx_log = pipe.settings.names.topic(TX_LOG)
    value, headers = codec.encode(Decided("v-ok-3", "abort", "second"))
    headers = signed_as(pipe.settings, "coordinator", tx_log, b"v-ok-3", value, headers)
    forger.produce(
        tx_log,
        key=b"v-ok-3",
        value=value,
        headers=headers,
        on_delivery=lambda err, _: forged.append(err),
    )
    assert forger.flush(30) == 0 and forged == [None]

    # a transaction left open on the dead-letter topic: committed reads stop short of it
    hanging = Producer(
        pipe.settings.kafka(
            **{"transactional.id": f"{pipe.settings.prefix}hang", "transaction.timeout.ms": 120_000}
        )
    )
    hanging.init_transactions(30)
    hanging.begin_transaction()
    hanging.produce(pipe.settings.names.topic(ORDERS_DLQ), key=b"open", value=b"open", partition=0)
    assert hanging.flush(30) == 0

    broken = verify(pipe.settings, wait_s=0)
    hanging.abort_transaction(30)
    found = kinds(broken)
    expected = {
        "inventory_not_applied",
        "inventory_final_mismatch",
        "inventory_not_conserved",
        "inventory_held_after_abort",
        "inventory_held_mismatch",
        "payment_not_applied",
        "payment_final_mismatch",
        "status_mismatch",
        "shipped_aborted",
        "missing",
        "invalid_not_dead",
        "two_decisions",
        "lag",
        "open_transaction",
    }
    assert expected <= found, f"not caught: {expected - found}"
    by_kind = {v["kind"]: v for v in broken["violations"]}
    assert by_kind["inventory_not_applied"]["orders"] == ("v-ok-0",)
    assert by_kind["payment_not_applied"]["orders"] == ("v-ok-1",)
    assert by_kind["status_mismatch"]["orders"] == ("v-ok-2",)
    assert by_kind["two_decisions"]["orders"] == ("v-ok-3",)
    assert by_kind["shipped_aborted"]["orders"] == ("v-poor-1",)
    assert by_kind["missing"]["orders"] == ("v-late",)
    assert "v-sku" in by_kind["inventory_not_conserved"]["detail"]
    assert (
        f"{pipe.settings.names.topic(ORDERS_DLQ)}[0] offsets"
        in by_kind["open_transaction"]["detail"]
    )
    assert {v["invariant"] for v in broken["violations"]} >= {1, 2, 3, 4, 6, 7}


def test_a_database_it_cannot_reach_gets_no_verdict_but_a_reason(pipe):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsns = {svc: f"{dsn} port={port}" for svc, dsn in pipe.settings.dsns.items()}
    unreachable = dataclasses.replace(pipe.settings, dsns=dsns)
    said = []
    with pytest.raises(InfraError, match=f"could not read the pipeline's state .*{port} failed"):
        verify(unreachable, wait_s=0, read_grace_s=3, log=said.append)
    assert said and all("waiting for the state to be readable" in m for m in said)
