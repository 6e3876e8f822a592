"""A private pipeline for a test module: its own topics (by prefix), its own databases, its own
worker processes, on the shared cluster."""

from __future__ import annotations

import json

from orderbus.lab.sandbox import Sandbox
from orderbus.ops.generate import CURRENCY, order_body
from schemas import codec
from schemas.events import OrderPlaced


class Pipeline(Sandbox):
    """The sandbox with the conveniences the tests want."""

    def __init__(
        self,
        settings,
        tag: str,
        tmp_path,
        deadline_ms: int = 4000,
        counts=None,
        env=None,
        partitions=None,
    ):
        super().__init__(
            settings,
            tag,
            counts=counts,
            deadline_ms=deadline_ms,
            log_dir=tmp_path / "logs",
            env=env,
            partitions=partitions,
        )

    def stock(self, **skus: int):
        self.seed(stock=skus)

    def account(self, **customers: int):
        self.seed(accounts=customers)

    def publish(self, *orders: dict):
        for o in orders:
            self.publisher.publish(o)
        assert self.publisher.flush(30) == 0

    def restart(self, name: str, env_without: str | None = None):
        """Stop every instance of `name` cleanly and start it again, without the variable
        `env_without` (a fault that ends here)."""
        if env_without:
            self.env.pop(env_without, None)  # the supervisor spawns from this very dict
        for child in [c for c in self.sup.children if c.name == name]:
            self.sup.hold(child)
            self.sup.release(child)

    def dead_letters(self, timeout_s: float = 30) -> list[dict]:
        """Every committed dead letter of this pipeline, read to the end of the topic."""
        from topics.catalogue import ORDERS_DLQ
        from topics.read import read

        return [
            {
                "key": m.key(),
                "value": m.value(),
                "headers": {k: (v or b"").decode() for k, v in (m.headers() or [])},
            }
            for m in read(
                self.settings.kafka(), self.settings.names.topic(ORDERS_DLQ), timeout_s=timeout_s
            )
        ]


def order(oid: str, customer: str, *lines: tuple[str, int, int], currency: str = CURRENCY) -> dict:
    return {**order_body(oid, customer, list(lines)), "currency": currency}


def raw(order_dict: dict) -> bytes:
    return json.dumps(order_dict).encode()


def valid(order_dict: dict) -> OrderPlaced:
    return codec.decode(raw(order_dict), None, default_type="OrderPlaced")
