"""Intake's pure core: what an incoming order is, and what starts its transaction."""

from __future__ import annotations

import pytest

from schemas.events import Line, OrderPlaced, Prepare, TxBegun
from workers.intake.core import Seen, begin, classify

ORDER = OrderPlaced("o-1", "c-1", (Line("sku-1", 2, 250), Line("sku-2", 1, 100)), "EUR", 600)
HASH = ORDER.content_hash()
OTHER_HASH = OrderPlaced("o-1", "c-1", (Line("sku-1", 3, 250),), "EUR", 750).content_hash()


@pytest.mark.parametrize(
    "seen, content_hash, partition, offset, outcome",
    [
        pytest.param(None, HASH, 0, 10, "new", id="new"),
        pytest.param(Seen(HASH, 0, 10), HASH, 0, 10, "redelivery", id="redelivery"),
        pytest.param(Seen(HASH, 0, 10), HASH, 0, 11, "duplicate", id="duplicate-later-offset"),
        pytest.param(Seen(HASH, 0, 10), HASH, 1, 10, "duplicate", id="duplicate-other-partition"),
        pytest.param(Seen(HASH, 0, 10), OTHER_HASH, 0, 11, "conflict", id="conflict"),
        # the same position with other content cannot be the same message: still a conflict
        pytest.param(Seen(HASH, 0, 10), OTHER_HASH, 0, 10, "conflict", id="conflict-same-position"),
    ],
)
def test_classify(seen, content_hash, partition, offset, outcome):
    assert classify(seen, content_hash, partition, offset) == outcome


@pytest.mark.parametrize("now_ms, deadline_after_ms", [(0, 30_000), (1_700_000_000_000, 5_000)])
def test_begin_asks_every_participant_it_names_by_one_deadline(now_ms, deadline_after_ms):
    outputs = begin(ORDER, now_ms, deadline_after_ms)
    begun = [e for _, e in outputs if isinstance(e, TxBegun)]
    prepares = {dest: e for dest, e in outputs if isinstance(e, Prepare)}
    assert len(begun) == 1 and prepares and set(begun[0].participants) == set(prepares)
    assert {e.order for e in prepares.values()} == {ORDER}
    deadlines = {begun[0].deadline_ms} | {e.deadline_ms for e in prepares.values()}
    assert deadlines == {now_ms + deadline_after_ms}
