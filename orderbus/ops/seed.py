"""The catalogue a run starts from: stock and balances reset in each service's database, and the
unit price `publish --generate` uses. A reset is for a pipeline with no history: the coordinator
keeps every decision for good, and nothing here may clear it (see `history`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import psycopg2

from orderbus.ops import report
from orderbus.ops.errors import UsageError
from topics.catalogue import TX_LOG
from topics.lag import log_ends
from workers.coordinator import store as coordinator_store
from workers.intake import store as intake_store
from workers.participant import store as participant_store
from workers.participant.store import ACCOUNTS, STOCK
from workers.runtime.settings import Settings
from workers.shipping import store as shipping_store
from workers.status import store as status_store

SEED_FILE = "seed.json"  # under ORDERBUS_HOME: the unit price `publish --generate` uses
DEFAULT_PRICE_CENTS = 1000
# the OrderPlaced v1 schema's patterns: an id no valid order can name would be dead stock
ID_PATTERNS = {
    "skus": re.compile(r"[A-Za-z0-9_.-]{1,64}"),
    "customers": re.compile(r"[A-Za-z0-9_-]{1,64}"),
}


def reset_catalog(settings: Settings, skus: dict[str, int], customers: dict[str, int]) -> None:
    """Stock and balances as given; orders, holds, statuses and shipments cleared. Refused
    (UsageError, with the reason and the way out) on a pipeline with history."""
    found = history(settings)
    if found:
        raise UsageError(
            f"this pipeline has history ({'; '.join(found)}). A seed clears orders and holds, but "
            "the coordinator keeps every decision for good: an order id used again would never "
            "be decided, and a replay of intake would hold stock and money for good. To start "
            "from empty: `orderbus down --purge` then `orderbus up` (the local cluster), or "
            "another ORDERBUS_TOPIC_PREFIX with empty databases"
        )
    _reset(settings, status_store.DATABASE, status_store.clear)
    _reset(settings, intake_store.DATABASE, intake_store.clear)
    _reset(settings, shipping_store.DATABASE, shipping_store.clear)
    _fill(settings, skus, customers, replace=True)


def add_catalog(settings: Settings, skus: dict[str, int], customers: dict[str, int]) -> None:
    """New skus and customers with these amounts, beside what there is: nothing is cleared, so
    a pipeline's history does not matter."""
    _fill(settings, skus, customers, replace=False)


def _fill(
    settings: Settings, skus: dict[str, int], customers: dict[str, int], replace: bool
) -> None:
    for ledger, amounts in ((STOCK, skus), (ACCOUNTS, customers)):
        _reset(
            settings,
            ledger.database,
            partial(participant_store.fill, ledger=ledger, amounts=amounts, replace=replace),
        )


def history(settings: Settings) -> list[str]:
    """What this pipeline has done that a seed cannot undo, a phrase each: records on tx.log,
    and the coordinator's saved state (kept though tx.log be re-created). Empty on a new one."""
    found = []
    topic = settings.names.topic(TX_LOG)
    records = sum(log_ends(settings.kafka(), topic).values())
    if records:
        found.append(f"{topic} holds {records} records")
    saved = report.read_from(settings, coordinator_store.DATABASE, coordinator_store.count_txs)
    if saved:
        found.append(f"the coordinator's store keeps {saved} orders' transactions")
    return found


def _reset(settings: Settings, database: str, work: Callable[[Any], object]) -> None:
    # one transaction per store: each is either reset and refilled, or left as it was
    with closing(psycopg2.connect(settings.dsns[database])) as conn, conn, conn.cursor() as cur:
        work(cur)


def load_catalog(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f'{path}: expected an object {{"skus": ..., "customers": ...}}')
    unknown = set(data) - {"skus", "customers"}
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)}")
    out = []
    for section, what in (("skus", "stock"), ("customers", "balance_cents")):
        table = data.get(section)
        if not isinstance(table, dict):
            raise UsageError(f'{path}: "{section}" must be an object of id -> {what}')
        for key, n in table.items():
            if not ID_PATTERNS[section].fullmatch(key):
                raise UsageError(
                    f"{path}: {section} id {key!r} is not one an order can name "
                    f"({ID_PATTERNS[section].pattern})"
                )
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(
                    f"{path}: {section}[{key!r}] = {n!r}; {what} must be an integer >= 0"
                )
        out.append(table)
    return out[0], out[1]


def seeded_ids(settings: Settings) -> tuple[list[str], list[str]]:
    skus = report.read_from(
        settings, STOCK.database, lambda cur: participant_store.keys(cur, STOCK)
    )
    customers = report.read_from(
        settings, ACCOUNTS.database, lambda cur: participant_store.keys(cur, ACCOUNTS)
    )
    if not skus or not customers:
        raise UsageError("no skus or no customers to order from; run `orderbus seed` first")
    return skus, customers


def seed_price(settings: Settings) -> int:
    try:
        return int(json.loads((settings.home / SEED_FILE).read_text())["price_cents"])
    except FileNotFoundError:
        return DEFAULT_PRICE_CENTS
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{settings.home / SEED_FILE} is damaged ({e}); run `orderbus seed`")
