"""The order generator: deterministic, correct totals, exact invalid share, every kind as named."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from orderbus.ops.generate import INVALID_KINDS, generate, mixed_demo_orders
from schemas.codec import decode
from schemas.errors import DeadLetter

SKUS = [f"sku-{i:04d}" for i in range(1, 11)]
CUSTOMERS = [f"cust-{i:04d}" for i in range(1, 6)]


def run(n=300, seed=42, **kw):
    return list(generate(n, seed, SKUS, CUSTOMERS, 250, **kw))


def test_same_seed_same_bytes_other_seed_other_ids():
    assert run(invalid_share=0.2) == run(invalid_share=0.2)
    ids = {json.loads(v)["order_id"] for v, ok, _ in run(seed=1) if ok}
    other = {json.loads(v)["order_id"] for v, ok, _ in run(seed=2) if ok}
    assert len(ids) == 300 and not ids & other


def test_valid_orders_decode_with_correct_totals_and_bounds():
    for value, ok, kind in run():
        assert ok and kind == "valid"
        event = decode(value, None, default_type="OrderPlaced")
        assert event.total_cents == sum(l.quantity * l.unit_price_cents for l in event.items)
        assert 1 <= len(event.items) <= 3 and all(1 <= l.quantity <= 3 for l in event.items)
        assert len({l.sku for l in event.items}) == len(event.items)
        assert event.currency == "EUR" and event.customer_id in CUSTOMERS


def test_hot_sku_orders_one_unit_of_it():
    for value, _, _ in run(hot_sku="sku-0003"):
        items = decode(value, None, default_type="OrderPlaced").items
        assert [(l.sku, l.quantity) for l in items] == [("sku-0003", 1)]


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 1 / 3, 1.0])
def test_invalid_share_is_exact_and_kinds_rotate(share):
    items = run(n=300, invalid_share=share)
    bad = [(v, kind) for v, ok, kind in items if not ok]
    assert len(bad) == int(300 * share)
    counts = Counter(kind for _, kind in bad)
    assert set(counts) <= set(INVALID_KINDS)
    if len(bad) >= 3:
        assert max(counts.values()) - min(counts.values()) <= 1


def test_each_invalid_order_fails_decode_with_its_kind():
    for value, ok, kind in run(n=60, invalid_share=0.5):
        if ok:
            continue
        with pytest.raises(DeadLetter) as caught:
            decode(value, None, default_type="OrderPlaced")
        assert caught.value.reason == kind


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        run(invalid_share=1.5)
    with pytest.raises(ValueError):
        list(generate(1, 1, [], CUSTOMERS, 1))


def test_mixed_demo_orders_are_what_their_kind_says():
    orders = mixed_demo_orders(
        5,
        SKUS,
        CUSTOMERS,
        250,
        scarce_sku="sku-0001",
        scarce_stock=2,
        poor_customer="cust-0001",
        poor_balance_cents=100,
    )
    assert orders == mixed_demo_orders(5, SKUS, CUSTOMERS, 250, "sku-0001", 2, "cust-0001", 100)
    kinds = Counter(kind for _, _, kind in orders)
    assert kinds["good"] == 20 and kinds["out_of_stock"] == 3 and kinds["insufficient_funds"] == 3
    for value, ok, kind in orders:
        if not ok:
            with pytest.raises(DeadLetter):
                decode(value, None, default_type="OrderPlaced")
            continue
        event = decode(value, None, default_type="OrderPlaced")
        skus = {l.sku for l in event.items}
        if kind == "good":
            assert "sku-0001" not in skus and event.customer_id != "cust-0001"
        elif kind == "out_of_stock":
            assert event.items[0].quantity > 2
        elif kind == "insufficient_funds":
            assert event.customer_id == "cust-0001" and event.total_cents > 100
        else:
            assert not skus & set(SKUS)
