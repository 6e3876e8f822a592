"""A private pipeline for a test module: its own topics (by prefix), its own databases, its own
worker processes, on the shared cluster."""
from __future__ import annotations

import dataclasses
import json
import time

import psycopg2

from infra.postgres import databases
from orderbus.supervise import Supervisor
from schemas import codec
from schemas.events import OrderPlaced
from topics.admin import delete, ensure
from topics.producer import OrderPublisher

SERVICE_DB = {"orders": "orders", "inventory": "inventory", "payments": "payments",
              "shipping": "shipping"}
TERMINAL = ("SHIPPED", "REJECTED")


class Pipeline:
    def __init__(self, settings, tag: str, tmp_path, counts=None, deadline_ms: int = 4000):
        self.layout = settings.layout()
        self.tag = tag
        self.dbs = {s: f"{tag}_{s}" for s in SERVICE_DB}
        for service, name in self.dbs.items():
            databases.ensure(self.layout, name, service)
        dsns = {s: databases.dsn(self.layout, n) for s, n in self.dbs.items()}
        self.settings = dataclasses.replace(settings, prefix=f"{tag}.", dsns=dsns,
                                            deadline_ms=deadline_ms, metrics_port=0)
        self.topic_names = [r.name for r in ensure(self.settings.kafka(), name_prefix=f"{tag}.")]
        env = {"ORDERBUS_TOPIC_PREFIX": f"{tag}.", "ORDERBUS_DEADLINE_MS": str(deadline_ms),
               "ORDERBUS_METRICS_PORT": "0",
               **{f"ORDERBUS_DSN_{s.upper()}": d for s, d in dsns.items()}}
        counts = counts or {"intake": 1, "coordinator": 1, "inventory": 1, "payment": 1,
                            "shipping": 1, "status": 1}
        self.sup = Supervisor(self.settings, counts, env=env, log_dir=tmp_path / "logs",
                              log=lambda *_: None)
        self.publisher = OrderPublisher(self.settings.kafka(),
                                        topic=self.settings.names.topic(_placed()))

    def start(self):
        self.sup.start()
        self.sup.watch_in_background()
        return self

    def close(self):
        self.sup.stop()
        delete(self.settings.kafka(), self.topic_names)
        for name in self.dbs.values():
            databases.drop(self.layout, name)

    # -- data
    def sql(self, service: str, query: str, args=()):
        with psycopg2.connect(self.settings.dsns[service]) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall() if cur.description else None
        conn.close()
        return rows

    def stock(self, **skus: int):
        for sku, n in skus.items():
            self.sql("inventory", "INSERT INTO stock (sku, initial, available) VALUES (%s, %s, %s)",
                     (sku, n, n))

    def account(self, **customers: int):
        for cid, cents in customers.items():
            self.sql("payments", "INSERT INTO accounts (customer_id, initial_cents, balance_cents) "
                     "VALUES (%s, %s, %s)", (cid, cents, cents))

    def publish(self, *orders: dict):
        for o in orders:
            self.publisher.publish(o)
        assert self.publisher.flush(30) == 0

    def statuses(self, order_ids) -> dict[str, tuple]:
        rows = self.sql("orders", "SELECT order_id, status, reason FROM order_status "
                        "WHERE order_id = ANY(%s)", (list(order_ids),))
        return {r[0]: (r[1], r[2]) for r in rows}

    def wait_final(self, order_ids, timeout_s: float = 60) -> dict[str, tuple]:
        ids = list(order_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.statuses(ids)
            if all(st.get(o, ("",))[0] in TERMINAL for o in ids):
                return st
            if time.monotonic() > deadline:
                missing = {o: st.get(o) for o in ids if st.get(o, ("",))[0] not in TERMINAL}
                raise AssertionError(f"{len(missing)} orders not final after {timeout_s}s: "
                                     f"{dict(list(missing.items())[:5])}")
            time.sleep(0.3)

    def dead_letters(self, timeout_s: float = 10) -> list[dict]:
        from confluent_kafka import Consumer, TopicPartition
        from topics.catalogue import ORDERS_DLQ
        topic = self.settings.names.topic(ORDERS_DLQ)
        c = Consumer(self.settings.kafka(**{"group.id": "dlq-reader", "enable.auto.commit": False,
                                            "isolation.level": "read_committed"}))
        c.assign([TopicPartition(topic, p, 0) for p in range(ORDERS_DLQ.partitions)])
        out, deadline = [], time.monotonic() + timeout_s
        idle = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle < 2:
            for m in c.consume(500, timeout=0.2):
                if m.error() is None:
                    idle = time.monotonic()
                    out.append({"key": m.key(), "value": m.value(),
                                "headers": {k: v.decode() for k, v in (m.headers() or [])}})
        c.close()
        return out


def _placed():
    from topics.catalogue import ORDERS_PLACED
    return ORDERS_PLACED


def order(oid: str, customer: str, *lines: tuple[str, int, int], currency: str = "EUR") -> dict:
    items = [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in lines]
    return {"order_id": oid, "customer_id": customer, "items": items, "currency": currency,
            "total_cents": sum(q * p for _, q, p in lines)}


def raw(order_dict: dict) -> bytes:
    return json.dumps(order_dict).encode()


def valid(order_dict: dict) -> OrderPlaced:
    return codec.decode(raw(order_dict), None, default_type="OrderPlaced")
