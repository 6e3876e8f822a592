"""The catalogue a run starts from: stock and balances reset in each service's database, and the
unit price `publish --generate` uses."""

from __future__ import annotations

import json
import re
from contextlib import closing
from pathlib import Path

import psycopg2

from orderbus.ops import report
from orderbus.ops.errors import UsageError
from workers.intake import store as intake_store
from workers.participant import store as participant_store
from workers.participant.store import ACCOUNTS, STOCK
from workers.shipping import store as shipping_store
from workers.status import store as status_store

SEED_FILE = "seed.json"  # under ORDERBUS_HOME: the unit price `publish --generate` uses
DEFAULT_PRICE_CENTS = 1000
# the OrderPlaced v1 schema's patterns: an id no valid order can name would be dead stock
ID_PATTERNS = {"skus": re.compile(r"[A-Za-z0-9_.-]{1,64}"), "customers": re.compile(r"[A-Za-z0-9_-]{1,64}")}


def reset_catalog(settings, skus: dict[str, int], customers: dict[str, int]) -> None:
    """Stock and balances as given; orders, holds and shipments cleared."""
    _reset(settings, status_store.DATABASE, status_store.clear)
    _reset(settings, intake_store.DATABASE, intake_store.clear)
    _reset(settings, shipping_store.DATABASE, shipping_store.clear)
    for ledger, amounts in ((STOCK, skus), (ACCOUNTS, customers)):
        _reset(
            settings,
            ledger.database,
            lambda cur, ledger=ledger, amounts=amounts: participant_store.fill(
                cur, ledger, amounts, replace=True
            ),
        )


def _reset(settings, database: str, work) -> None:
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
                    f"{path}: {section} id {key!r} is not one an order can name ({ID_PATTERNS[section].pattern})"
                )
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(f"{path}: {section}[{key!r}] = {n!r}; {what} must be an integer >= 0")
        out.append(table)
    return out[0], out[1]


def seeded_ids(settings) -> tuple[list[str], list[str]]:
    skus = report.read_from(settings, STOCK.database, lambda cur: participant_store.keys(cur, STOCK))
    customers = report.read_from(settings, ACCOUNTS.database, lambda cur: participant_store.keys(cur, ACCOUNTS))
    if not skus or not customers:
        raise UsageError("no skus or no customers to order from; run `orderbus seed` first")
    return skus, customers


def seed_price(settings) -> int:
    try:
        return int(json.loads((settings.home / SEED_FILE).read_text())["price_cents"])
    except FileNotFoundError:
        return DEFAULT_PRICE_CENTS
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{settings.home / SEED_FILE} is damaged ({e}); run `orderbus seed`")
