"""`orderbus seed` on a pipeline of the test's own. A seed clears orders, holds, statuses and
shipments; the coordinator keeps every decision for good, and tx.log keeps every event. Once a
pipeline has that history, a seed under it would leave a re-used order id undecided for ever and
make a replay hold stock for good: it is refused, with the reason and the way out, and nothing
changes."""

from __future__ import annotations

import pytest
from pipeline import Pipeline, order

from orderbus.ops.errors import UsageError
from orderbus.ops.report import build_report
from orderbus.ops.seed import reset_catalog
from orderbus.ops.verify import verify
from workers.coordinator import store as coordinator_store
from workers.coordinator.fold import Tx

pytestmark = pytest.mark.integration

SKUS, CUSTOMERS = {"sd-sku": 4}, {"sd-rich": 100_000}


def state(pipe: Pipeline, ids: list[str]) -> tuple:
    """Orders, stock and money as the report shows them, and each order's status (not the
    report's dead-letter count, which reads the unprefixed topic: other pipelines write there)."""
    shown = build_report(pipe.settings, detail=True)
    return {k: v for k, v in shown.items() if not k.startswith("dead_letters")}, pipe.statuses(ids)


def test_a_seed_after_orders_were_decided_is_refused_and_the_same_ids_again_stay_final(
    settings, tmp_path, unique
):
    with Pipeline(settings, unique, tmp_path) as pipe:
        reset_catalog(pipe.settings, SKUS, CUSTOMERS)  # a pipeline with no history yet
        pipe.start()
        # four fit the stock, two are refused: commits and aborts both
        orders = [order(f"{unique}-{i}", "sd-rich", ("sd-sku", 1, 100)) for i in range(6)]
        ids = [o["order_id"] for o in orders]
        pipe.publish(*orders)
        pipe.wait_final(ids)
        pipe.wait_settled()
        for child in pipe.sup.children:  # the operator stops the workers before seeding
            pipe.sup.hold(child)
        before = state(pipe, ids)

        try:
            reset_catalog(pipe.settings, SKUS, CUSTOMERS)
            refusal = None
        except UsageError as e:
            refusal = str(e)
        after = state(pipe, ids)

        # the operator publishes the same ids again: a seeded run repeated
        for child in pipe.sup.children:
            pipe.sup.release(child)
        pipe.publish(*orders)
        final = pipe.wait_final(ids)
        assert sorted(s for s, _ in final.values()) == ["REJECTED"] * 2 + ["SHIPPED"] * 4
        assert verify(pipe.settings, wait_s=90)["violations"] == []
        assert (
            refusal is not None
            and pipe.tx_log_topic in refusal
            and "orderbus down --purge" in refusal
        )
        assert after == before


def test_a_seed_is_refused_while_the_coordinator_keeps_decisions_though_tx_log_is_empty(
    settings, tmp_path, unique
):
    # tx.log re-created under a coordinator store that was kept: its decisions still count
    with Pipeline(settings, unique, tmp_path) as pipe:
        tx = Tx(
            order_id=f"{unique}-0",
            begun=True,
            participants=("inventory", "payment"),
            outcome="commit",
        )
        pipe._run(
            coordinator_store.DATABASE,
            lambda cur: coordinator_store.save(cur, [(tx.order_id, 0, 5, True, tx)], {0: 6}),
        )
        with pytest.raises(UsageError) as refused:
            reset_catalog(pipe.settings, SKUS, CUSTOMERS)
        assert "coordinator" in str(refused.value), str(refused.value)
        assert build_report(pipe.settings)["stock"]["initial"] == 0  # nothing was seeded
