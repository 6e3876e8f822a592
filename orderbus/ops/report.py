"""Read-side views over the services' databases and the dead-letter topic: the whole pipeline in
one dict (``build_report``), and one order across every service (``order_view``). Read only."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timezone
from typing import Any, TypeVar

import psycopg2

from topics.catalogue import ORDERS_DLQ
from topics.read import IncompleteRead, read
from workers.intake import store as intake_store
from workers.participant import store as participant_store
from workers.participant.store import ACCOUNTS, LEDGERS, STOCK
from workers.runtime.settings import Settings
from workers.shipping import store as shipping_store
from workers.status import store as status_store

# a report must come back even when the DLQ is large
DLQ_READ_SECONDS = 15.0

T = TypeVar("T")


def connect(settings: Settings, service: str) -> Any:
    conn = psycopg2.connect(settings.dsns[service])
    conn.set_session(readonly=True, autocommit=True)  # a report never writes or holds locks
    return conn


def read_from(settings: Settings, database: str, work: Callable[[Any], T]) -> T:
    """What `work(cursor)` returns, run on its own read-only connection to `database`."""
    with closing(connect(settings, database)) as conn, conn.cursor() as cur:
        return work(cur)


def build_report(settings: Settings, detail: bool = False) -> dict[str, Any]:
    by_status = read_from(settings, status_store.DATABASE, status_store.count_by_status)
    rejected_by_reason = read_from(settings, status_store.DATABASE, status_store.rejected_by_reason)
    in_doubt: set[str] = set()
    for ledger in LEDGERS.values():
        in_doubt.update(read_from(settings, ledger.database, participant_store.held_orders))
    stock_rows = read_from(
        settings, STOCK.database, lambda cur: participant_store.balances(cur, STOCK)
    )
    money_rows = read_from(
        settings, ACCOUNTS.database, lambda cur: participant_store.balances(cur, ACCOUNTS)
    )
    dead_letters, exact = count_dead_letters(settings)
    stock_fields, money_fields = STOCK.amounts, ACCOUNTS.amounts
    report: dict[str, Any] = {
        "orders": order_counts(
            read_from(settings, intake_store.DATABASE, intake_store.count_placed), by_status
        ),
        "rejected_by_reason": rejected_by_reason,
        "dead_letters": dead_letters,
        "dead_letters_exact": exact,
        "in_doubt": len(in_doubt),
        "stock": _sums(stock_rows, stock_fields),
        "money": _sums(money_rows, money_fields),
    }
    if detail:
        report["stock_by_sku"] = {r[0]: dict(zip(stock_fields, r[1:])) for r in stock_rows}
        report["money_by_customer"] = {r[0]: dict(zip(money_fields, r[1:])) for r in money_rows}
    return report


def order_counts(placed: int, by_status: dict[str, int]) -> dict[str, int]:
    """The orders by stage, as `report`, `top` and the console count them."""
    return {
        "placed": placed,
        "pending": by_status.get("PENDING", 0),
        # every committed order, whether shipping has booked it yet or not
        "confirmed": by_status.get("CONFIRMED", 0) + by_status.get("SHIPPED", 0),
        "rejected": by_status.get("REJECTED", 0),
        "shipped": by_status.get("SHIPPED", 0),
    }


def _sums(rows: list[tuple[Any, ...]], names: tuple[str, ...]) -> dict[str, int]:
    return {name: sum(int(r[i + 1]) for r in rows) for i, name in enumerate(names)}


def count_dead_letters(
    settings: Settings, timeout: float = DLQ_READ_SECONDS, topic: str | None = None
) -> tuple[int, bool]:
    """(messages in the pipeline's DLQ, or `topic`, whether the count is complete). Read, not
    computed from watermarks: offsets also count the commit markers and aborted writes of Kafka
    transactions (none of orderbus's principals may open one; a foreign producer's, or an older
    release's records)."""
    count = 0
    try:
        for _ in read(
            settings.kafka(), topic or settings.names.topic(ORDERS_DLQ), timeout_s=timeout
        ):
            count += 1
    except IncompleteRead:
        return count, False
    except KeyError:
        return 0, True  # no dead-letter topic yet: none written
    return count, True


def order_view(settings: Settings, order_id: str) -> dict[str, Any] | None:
    """Everything every service knows about one order, or None when none knows it."""
    view: dict[str, Any] = {"order_id": order_id, "status": None, "reason": None}
    timeline: list[tuple[str, str]] = []
    known = False
    order = read_from(
        settings, intake_store.DATABASE, lambda cur: intake_store.order_of(cur, order_id)
    )
    if order is not None:
        known = True
        customer, total, currency, recorded = order
        view.update(
            customer_id=customer, total_cents=total, currency=currency, recorded_at=_iso(recorded)
        )
        timeline.append((_iso(recorded), "recorded by intake"))
    shown = read_from(
        settings, status_store.DATABASE, lambda cur: status_store.status_of(cur, order_id)
    )
    if shown is not None:
        known = True
        status, reason, changed_ms = shown
        view.update(status=status, reason=reason, changed_ms=changed_ms)
        at = _iso(datetime.fromtimestamp(changed_ms / 1000, timezone.utc))
        timeline.append((at, f"status {status}" + (f" ({reason})" if reason else "")))
    view["participants"] = {}
    for ledger in LEDGERS.values():
        service = ledger.database
        hold = read_from(settings, service, lambda cur: participant_store.hold_of(cur, order_id))
        if hold is not None:
            known = True
            hold["changed_at"] = _iso(hold["changed_at"])
            timeline.append(
                (
                    hold["changed_at"],
                    f"{service}: voted {hold['vote']}, now "
                    f"{hold['state']}" + (f" ({hold['reason']})" if hold["reason"] else ""),
                )
            )
        view["participants"][service] = hold
    booked = read_from(
        settings, shipping_store.DATABASE, lambda cur: shipping_store.booked_at(cur, order_id)
    )
    view["shipment"] = None
    if booked is not None:
        known = True
        view["shipment"] = {"booked_at": _iso(booked)}
        timeline.append((_iso(booked), "shipment booked"))
    # a hold row keeps only its latest change, so the timeline is the latest step of each service
    view["timeline"] = [{"at": at, "event": what} for at, what in sorted(timeline)]
    return view if known else None


def _iso(value: datetime) -> str:
    # one zone for every service, so the timeline sorts as text whatever each session's TimeZone
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def render_report(report: dict[str, Any]) -> str:
    """The report as an aligned text table."""
    dl = f"{report['dead_letters']}" + ("" if report["dead_letters_exact"] else " (at least)")
    rows = [*report["orders"].items(), ("dead letters", dl), ("in doubt", report["in_doubt"])]
    lines = ["ORDERS"] + [f"  {k:<14}{v:>12}" for k, v in rows]
    if report["rejected_by_reason"]:
        lines.append("REJECTED BY REASON")
        width = max(14, *(len(r) + 2 for r in report["rejected_by_reason"]))
        lines += [f"  {r:<{width}}{n:>12}" for r, n in report["rejected_by_reason"].items()]
    lines.append(_table("STOCK", "sku", report["stock"], report.get("stock_by_sku")))
    lines.append(
        _table("MONEY (cents)", "customer", report["money"], report.get("money_by_customer"))
    )
    return "\n".join(lines)


def _table(
    title: str, key_name: str, totals: dict[str, int], per_key: dict[str, dict[str, int]] | None
) -> str:
    names = list(totals)
    rows = [(k, v) for k, v in (per_key or {}).items()] + [("total", totals)]
    width = max([len(key_name)] + [len(k) for k, _ in rows]) + 2
    out = [title, "  " + f"{key_name:<{width}}" + "".join(f"{n:>16}" for n in names)]
    out += ["  " + f"{k:<{width}}" + "".join(f"{v[n]:>16}" for n in names) for k, v in rows]
    return "\n".join(out)
