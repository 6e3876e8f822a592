"""Two participant instances given the same Prepare at once (a zombie's batch and its
successor's, around a rebalance) hold the order's amounts once, on the real database."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from pipeline import order, valid

from orderbus.lab.sandbox import Sandbox
from schemas.events import Prepare
from workers.participant.core import INVENTORY
from workers.participant.store import STOCK
from workers.participant.worker import ParticipantHandler
from workers.runtime.metrics import Metrics
from workers.runtime.signing import Verifier

pytestmark = pytest.mark.integration


def handler(sb) -> ParticipantHandler:
    return ParticipantHandler(
        INVENTORY, STOCK, None, sb.settings.names, Metrics("inventory"), Verifier.of(sb.settings)
    )


def test_the_same_prepare_in_two_instances_at_once_holds_once(settings):
    with Sandbox(settings) as sb:
        sb.seed(stock={"race-sku": 10})
        prepare = Prepare(
            "race-1",
            valid(order("race-1", "c", ("race-sku", 3, 100))),
            int(time.time() * 1000) + 600_000,
        )
        first, second = (psycopg2.connect(sb.settings.dsns["inventory"]) for _ in range(2))
        try:
            with first.cursor() as cur:  # the first instance holds, and has not committed yet
                handler(sb)._apply(cur, [prepare])
            votes = []
            other = threading.Thread(
                target=lambda: votes.append(_apply_and_commit(handler(sb), second, prepare))
            )
            other.start()
            other.join(2.0)
            assert other.is_alive(), "the second instance did not wait for the first"
            first.commit()
            other.join(30)
            assert not other.is_alive()
            assert votes == [["yes"]]  # it found the recorded hold and voted again
        finally:
            first.close()
            second.close()
        [(available, held)] = sb.sql(
            "inventory", "SELECT available, held FROM stock WHERE sku = 'race-sku'"
        )
        assert (available, held) == (7, 3)


def _apply_and_commit(h, conn, prepare) -> list[str]:
    with conn.cursor() as cur:
        outcome = h._apply(cur, [prepare])
    conn.commit()
    return [v.vote for v in outcome.outputs]
