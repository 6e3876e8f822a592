"""Deterministic test orders: the same arguments give the same bytes, run after run.

Each item is ``(value, is_valid, kind)``: the message value as a producer would send it, whether the
codec accepts it, and what it is (``valid``, or the dead-letter reason it should earn).
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from schemas.events import canonical_json

CURRENCY = "EUR"
INVALID_KINDS = ("undecodable", "schema_violation", "rule_violation")

Generated = tuple[bytes, bool, str]


def order_body(
    order_id: str, customer_id: str, lines: list[tuple[str, int, int]]
) -> dict[str, Any]:
    """An OrderPlaced body with a correct total; ``lines`` are (sku, quantity, unit_price_cents)."""
    items = [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in lines]
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "items": items,
        "currency": CURRENCY,
        "total_cents": sum(q * p for _, q, p in lines),
    }


def generate(
    n: int,
    seed: int,
    skus: list[str],
    customers: list[str],
    price_cents: int,
    invalid_share: float = 0.0,
    hot_sku: str | None = None,
) -> Iterator[Generated]:
    """``n`` orders with ids ``o{seed}-{i}``. Valid ones have 1-3 lines of quantity 1-3 (with
    ``hot_sku``: one line of it, quantity 1, a flash sale). Exactly ``floor(n * invalid_share)``
    are invalid, spread evenly, their kinds rotating through INVALID_KINDS."""
    if not 0.0 <= invalid_share <= 1.0:
        raise ValueError(f"invalid_share {invalid_share} is not between 0 and 1")
    if not skus or not customers:
        raise ValueError("need at least one sku and one customer")
    if price_cents < 0:
        raise ValueError(f"price_cents {price_cents} is negative")
    # a private Random: the sequence must not depend on who else draws from the global one
    rng = random.Random(seed)
    invalid_so_far = 0
    for i in range(n):
        order_id = f"o{seed}-{i}"
        customer = rng.choice(customers)
        if hot_sku is not None:
            lines = [(hot_sku, 1, price_cents)]
        else:
            chosen = rng.sample(skus, min(len(skus), rng.randint(1, 3)))
            lines = [(sku, rng.randint(1, 3), price_cents) for sku in chosen]
        body = order_body(order_id, customer, lines)
        # Bresenham-style spreading: an exact count, evenly placed, no randomness needed
        if int((i + 1) * invalid_share) > invalid_so_far:
            kind = INVALID_KINDS[invalid_so_far % len(INVALID_KINDS)]
            invalid_so_far += 1
            yield _spoil(body, kind, invalid_so_far), False, kind
        else:
            yield canonical_json(body), True, "valid"


def _spoil(body: dict[str, Any], kind: str, nth: int) -> bytes:
    """Break ``body`` the way ``kind`` names; alternate between two variants of each."""
    if kind == "undecodable":
        whole = canonical_json(body)
        return whole[: len(whole) // 2] if nth % 2 else b"\xff\xfenot json"
    if kind == "schema_violation":
        if nth % 2:
            body["items"][0]["quantity"] = 0
        else:
            del body["currency"]
        return canonical_json(body)
    if kind == "rule_violation":
        body["total_cents"] += 1
        return canonical_json(body)
    raise ValueError(f"unknown invalid kind {kind!r}")


def mixed_demo_orders(
    seed: int,
    skus: list[str],
    customers: list[str],
    price_cents: int,
    scarce_sku: str,
    scarce_stock: int,
    poor_customer: str,
    poor_balance_cents: int,
    good: int = 20,
    out_of_stock: int = 3,
    insufficient_funds: int = 3,
    unknown_sku: int = 2,
    malformed: int = 3,
) -> list[Generated]:
    """A shuffled demo batch whose expected outcome is in ``kind``: ``good`` (CONFIRMED),
    ``out_of_stock``, ``insufficient_funds``, ``unknown_sku`` (REJECTED with that reason), and
    malformed ones (dead letters, kind = the codec's reason). Good orders avoid the scarce sku and
    the poor customer, so only the orders meant to be refused are."""
    rng = random.Random(seed)
    plenty = [s for s in skus if s != scarce_sku]
    rich = [c for c in customers if c != poor_customer]
    if not plenty or not rich:
        raise ValueError("need a sku besides the scarce one and a customer besides the poor one")
    out: list[Generated] = []
    ids = (f"d{seed}-{i}" for i in range(10**9))

    def add(kind: str, lines: list[tuple[str, int, int]], customer: str | None = None) -> None:
        body = order_body(next(ids), customer or rng.choice(rich), lines)
        out.append((canonical_json(body), True, kind))

    for _ in range(good):
        add("good", [(rng.choice(plenty), 1, price_cents)])
    for _ in range(out_of_stock):
        add("out_of_stock", [(scarce_sku, scarce_stock + 1, price_cents)])
    for _ in range(insufficient_funds):
        # one unit priced just over the balance: refused by payments whatever the stock
        add("insufficient_funds", [(rng.choice(plenty), 1, poor_balance_cents + 1)], poor_customer)
    for _ in range(unknown_sku):
        add("unknown_sku", [(f"no-such-sku-{rng.randrange(10**6)}", 1, price_cents)])
    for k in range(malformed):
        kind = INVALID_KINDS[k % len(INVALID_KINDS)]
        body = order_body(next(ids), rng.choice(rich), [(rng.choice(plenty), 1, price_cents)])
        out.append((_spoil(body, kind, k + 1), False, kind))
    rng.shuffle(out)
    return out
