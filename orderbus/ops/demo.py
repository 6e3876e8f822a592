"""`orderbus demo`: the whole pipeline on the local cluster, with a mixed batch of orders."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

from orderbus.ops import cluster
from orderbus.ops.errors import UsageError
from orderbus.ops.generate import mixed_demo_orders
from orderbus.ops.groups import active_groups
from orderbus.ops.report import build_report, read_from, render_report
from orderbus.ops.seed import add_catalog
from orderbus.ops.supervise import Supervisor
from orderbus.ops.wait import until
from topics.catalogue import ORDERS_PLACED
from topics.producer import OrderPublisher
from workers.main import WORKERS
from workers.participant import store as participant_store
from workers.participant.store import LEDGERS
from workers.runtime.settings import Settings
from workers.status import store as status_store

# one SKU with less stock, and one customer with less money, than some orders ask for
SCARCE_STOCK, POOR_BALANCE_CENTS = 2, 500
PRICE_CENTS = 1_000  # of every item

EXPECTED = {
    "good": "SHIPPED",
    "out_of_stock": "REJECTED inventory:out_of_stock",
    "insufficient_funds": "REJECTED payment:insufficient_funds",
    "unknown_sku": "REJECTED inventory:unknown_sku",
}


def demo(settings: Settings, log: Callable[[str], None] = print) -> int:
    cluster.up(settings, settings.brokers, log=log)
    settings = Settings.from_env()  # `up` may have just made the passwords
    busy = active_groups(settings)
    if busy:
        raise UsageError(f"workers are already running in {', '.join(busy)}; stop them first")
    # a catalogue of the run's own beside what there is, not a reset: a reset is refused once
    # the pipeline has history, and the demo runs again and again on one cluster
    run = int(time.time())
    skus = {f"d{run}-sku-{i:02d}": 50 for i in range(1, 6)}
    customers = {f"d{run}-cust-{i:02d}": 100_000 for i in range(1, 11)}
    scarce, poor = f"d{run}-scarce", f"d{run}-poor"
    add_catalog(settings, skus | {scarce: SCARCE_STOCK}, customers | {poor: POOR_BALANCE_CENTS})
    log(f"added {len(skus) + 1} SKUs and {len(customers) + 1} customers of this run's own")
    sup = Supervisor(settings, {w: 1 for w in WORKERS}, log=log)
    sup.start()
    sup.watch_in_background()
    try:
        batch = mixed_demo_orders(
            run,
            list(skus),
            [*customers, poor],
            price_cents=PRICE_CENTS,
            scarce_sku=scarce,
            scarce_stock=SCARCE_STOCK,
            poor_customer=poor,
            poor_balance_cents=POOR_BALANCE_CENTS,
        )
        publisher = OrderPublisher(
            settings.as_principal("producer").kafka(), topic=settings.names.topic(ORDERS_PLACED)
        )
        expected: dict[str, str] = {}
        for value, valid, kind in batch:
            body = json.loads(value) if kind in EXPECTED else None
            if body is not None:
                publisher.publish(body)
                expected[body["order_id"]] = kind
            else:
                publisher.publish_raw(None, value)
        publisher.flush(30)
        log(
            f"published {len(batch)} orders: "
            + ", ".join(f"{n} {k}" for k, n in Counter(k for _, _, k in batch).items())
        )
        seen = _wait(settings, expected, log)
    finally:
        sup.stop()
    mismatches = 0
    log("\nORDER OUTCOMES (expected -> seen)")
    for kind, want in EXPECTED.items():
        got = Counter(seen.get(o, "missing") for o, k in expected.items() if k == kind)
        ok = set(got) == {want}
        mismatches += not ok
        log(f"  {kind:<20} {sum(got.values()):>3} x {want:<38} {'ok' if ok else dict(got)}")
    log("\n" + render_report(build_report(settings)))
    return 1 if mismatches else 0


def _wait(
    settings: Settings,
    expected: dict[str, str],
    log: Callable[[str], None],
    timeout_s: float = 90,
) -> dict[str, str]:
    """order id -> what the status read model shows, once every order is final or `timeout_s`
    has passed."""
    seen: dict[str, str] = {}

    def final(order_id: str) -> bool:
        return seen.get(order_id, "").split(" ")[0] in ("SHIPPED", "REJECTED")

    def all_final() -> bool:
        shown = read_from(
            settings,
            status_store.DATABASE,
            lambda cur: status_store.statuses(cur, among=list(expected)),
        )
        seen.update({o: (s if s == "SHIPPED" else f"{s} {r}") for o, (s, r) in shown.items()})
        return all(final(o) for o in expected)

    until(all_final, timeout_s, poll_s=0.5)
    log(f"{sum(map(final, expected))}/{len(expected)} valid orders reached a final status")
    # the report counts stock and money: the last aborts release their holds first
    until(lambda: not _held(settings, list(expected)), 5.0)
    return seen


def _held(settings: Settings, order_ids: list[str]) -> bool:
    """Some participant still holds stock or money for one of these orders."""
    return any(
        read_from(
            settings,
            ledger.database,
            lambda cur: participant_store.held_orders(cur, among=order_ids),
        )
        for ledger in LEDGERS.values()
    )
