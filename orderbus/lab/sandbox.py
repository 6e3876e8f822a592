"""A private pipeline on the shared cluster: its own topics (by prefix), its own databases, its own
worker processes. Benchmarks and tests run in one so they never touch the real order flow."""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka.admin import AdminClient

from infra.postgres import databases
from orderbus.ops.supervise import Supervisor
from topics import acl
from topics.admin import delete, ensure
from topics.catalogue import ORDERS_PLACED, ORDERS_STATUS, TX_LOG
from topics.producer import OrderPublisher
from workers.participant import store as participant_store
from workers.participant.store import ACCOUNTS, LEDGERS, STOCK
from workers.runtime.db import Database
from workers.runtime.settings import Settings
from workers.status import store as status_store

T = TypeVar("T")

ONE_EACH = {"intake": 1, "coordinator": 1, "inventory": 1, "payment": 1, "shipping": 1, "status": 1}


class Sandbox:
    def __init__(
        self,
        settings: Settings,
        tag: str | None = None,
        counts: dict[str, int] | None = None,
        deadline_ms: int | None = None,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
        worker_args: tuple[str, ...] = (),
        partitions: int | None = None,
    ) -> None:
        self.tag = tag or "s" + uuid.uuid4().hex[:8]
        self.layout = settings.layout()
        self.dbs = {s: f"{self.tag}_{s}" for s in databases.SERVICES}
        for service, name in self.dbs.items():
            databases.ensure(self.layout, name, service)
        dsns = {s: databases.dsn(self.layout, n) for s, n in self.dbs.items()}
        deadline_ms = deadline_ms or settings.deadline_ms
        self.settings = dataclasses.replace(
            settings,
            prefix=f"{self.tag}.",
            dsns=dsns,
            deadline_ms=deadline_ms,
            metrics_port=0,
            partitions=partitions or settings.partitions,
        )
        self.topic_names = [
            r.name for r in ensure(self.settings.kafka(), names=self.settings.names)
        ]
        if self.settings.security != "plaintext":
            acl.ensure(self.settings.kafka(), self.settings.names)
        self.env = {
            "ORDERBUS_TOPIC_PREFIX": f"{self.tag}.",
            "ORDERBUS_DEADLINE_MS": str(deadline_ms),
            "ORDERBUS_METRICS_PORT": "0",
            "ORDERBUS_PARTITIONS": str(self.settings.partitions),
            **{f"ORDERBUS_DSN_{s.upper()}": d for s, d in dsns.items()},
            **(env or {}),
        }
        self.sup = Supervisor(
            self.settings,
            counts or ONE_EACH,
            env=self.env,
            log_dir=log_dir or settings.home / "logs" / self.tag,
            log=lambda *_: None,
            worker_args=worker_args,
        )
        self.publisher = OrderPublisher(
            self.settings.as_principal("producer").kafka(), topic=self.placed
        )

    @property
    def placed(self) -> str:
        return self.settings.names.topic(ORDERS_PLACED)

    @property
    def tx_log_topic(self) -> str:
        return self.settings.names.topic(TX_LOG)

    @property
    def status_topic(self) -> str:
        return self.settings.names.topic(ORDERS_STATUS)

    def start(self) -> "Sandbox":
        self.sup.start()
        self.sup.watch_in_background()
        return self

    def close(self) -> None:
        self.sup.stop()
        # its catalogue topics and any its tracker made (changelogs), all behind its prefix
        made = AdminClient(self.settings.kafka()).list_topics(timeout=30).topics
        delete(
            self.settings.kafka(),
            sorted(set(self.topic_names) | {t for t in made if t.startswith(self.settings.prefix)}),
        )
        if self.settings.security != "plaintext":
            acl.remove(self.settings.kafka(), self.settings.names)
        for name in self.dbs.values():
            databases.drop(self.layout, name)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- data
    def sql(self, database: str, query: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """Any statement, for the integration tests that corrupt or inspect a database's rows
        directly; the pipeline's own reads and writes go through the stores."""

        def work(cur: Any) -> Any:  # psycopg2's cursor
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None

        return self._run(database, work)

    def _run(self, database: str, work: Callable[[Any], T]) -> T:
        """What `work(cursor)` returns, run in one transaction on `database`."""
        return Database.once(self.settings.dsns[database], work)

    def seed(
        self, stock: dict[str, int] | None = None, accounts: dict[str, int] | None = None
    ) -> None:
        for ledger, amounts in ((STOCK, stock), (ACCOUNTS, accounts)):
            if amounts:
                self._run(
                    ledger.database,
                    functools.partial(participant_store.fill, ledger=ledger, amounts=amounts),
                )

    def statuses(self, order_ids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        return self._run(
            status_store.DATABASE, lambda cur: status_store.statuses(cur, among=list(order_ids))
        )

    def wait_final(
        self,
        order_ids: Iterable[str],
        timeout_s: float = 60,
        final: Collection[str] = ("SHIPPED", "REJECTED"),
    ) -> dict[str, tuple[Any, ...]]:
        ids = list(order_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.statuses(ids)
            missing = [o for o in ids if st.get(o, ("",))[0] not in final]
            if not missing:
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(missing)} of {len(ids)} orders not final after "
                    f"{timeout_s:.0f}s, e.g. {missing[:3]}: {[st.get(o) for o in missing[:3]]}"
                )
            time.sleep(0.3)

    def wait_settled(self, timeout_s: float = 60) -> None:
        """Until no participant holds anything: every decision has reached both databases."""
        deadline = time.monotonic() + timeout_s
        while any(
            self._run(ledger.database, participant_store.count_held) for ledger in LEDGERS.values()
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"holds still held after {timeout_s:.0f}s")
            time.sleep(0.2)
