"""An inventory instance stopped (SIGSTOP, a hung host, a debugger) inside its batch's transaction
keeps that transaction's advisory and row locks while it is stopped. The instance that takes its
partitions over waits on them; the server must end the stopped session so that the wait ends:
the order is confirmed before its deadline, the stopped transaction's writes are undone, and its
commit, once it runs again, fails with an error the workers retry (the batch is read again)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from pipeline import Pipeline, order

from orderbus.ops.verify import verify
from workers.participant import store
from workers.participant.store import STOCK
from workers.runtime.db import TRANSIENT, Database

pytestmark = pytest.mark.integration

DEADLINE_MS = 30_000  # well past the server's limit on a session idle inside its transaction


def test_an_instance_stopped_inside_its_transaction_does_not_hold_up_its_successor(
    settings, tmp_path
):
    p = Pipeline(settings, "z" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=DEADLINE_MS)
    oid, sku = "z-1", "z-sku"
    holding, resume = threading.Event(), threading.Event()
    ended: list[BaseException | None] = []

    def stopped_instance():
        # a session opened as every worker opens its own, so it has the workers' session settings
        db = Database(p.settings.dsns[STOCK.database])
        try:
            with db.transaction() as cur:  # the batch of a Prepare for the order, half done
                store.locked_holds(cur, [oid])
                store.available_for_update(cur, STOCK, [sku])
                store.write(cur, STOCK, [], [(sku, -1, 1, 0)])
                holding.set()
                resume.wait(120)  # stopped here, between two statements
        except BaseException as e:
            ended.append(e)
        else:
            ended.append(None)
        finally:
            db.close()

    stopped = threading.Thread(target=stopped_instance, daemon=True)
    try:
        p.stock(**{sku: 10, "z-warm": 10})
        p.account(**{"z-cust": 10_000})
        p.start()
        p.publish(order("z-warm", "z-cust", ("z-warm", 1, 100)))
        assert p.wait_final(["z-warm"], timeout_s=90)["z-warm"] == ("SHIPPED", None)

        stopped.start()
        assert holding.wait(30), "the stopped instance never took its locks"
        p.publish(order(oid, "z-cust", (sku, 1, 100)))
        # the inventory worker does wait on the stopped session's locks
        deadline = time.monotonic() + 15
        while not p.sql(
            "inventory",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "wait_event_type = 'Lock'",
        )[0][0]:
            assert time.monotonic() < deadline, (
                "the inventory worker never waited on the stopped session"
            )
            time.sleep(0.2)

        status = p.wait_final([oid], timeout_s=DEADLINE_MS / 1000 + 60)[oid]
        assert status == ("SHIPPED", None), f"the order waited on the stopped session: {status}"
        # it waited without being restarted by its watchdog
        assert [c.restarts for c in p.sup.children if c.name == "inventory"] == [0]

        resume.set()
        stopped.join(30)
        assert not stopped.is_alive()
        [error] = ended
        assert isinstance(error, TRANSIENT), f"its commit, once resumed: {error!r}"
        assert p.sql(
            "inventory", "SELECT available, held, committed FROM stock WHERE sku = %s", (sku,)
        ) == [(9, 0, 1)]  # the order's unit taken once; the stopped transaction's change undone
        result = verify(p.settings, wait_s=90)
        assert result["violations"] == [], result["violations"]
    finally:
        resume.set()
        if stopped.is_alive():
            stopped.join(30)
        p.close()
