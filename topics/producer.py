"""Publish orders onto `orders.placed`: the documented Python producer API for shops.

Every order is validated by the real codec before anything is sent, so a bad order fails in the
caller's hands (a ``schemas.errors.DeadLetter`` subclass with its reason) instead of in the
dead-letter topic::

    from topics.producer import OrderPublisher
    pub = OrderPublisher({"bootstrap.servers": "127.0.0.1:19092"})
    pub.publish({"order_id": "o-1", "customer_id": "cust-0001", "currency": "EUR",
                 "total_cents": 300,
                 "items": [{"sku": "sku-0001", "quantity": 2, "unit_price_cents": 150}]})
    assert pub.flush(30) == 0   # 0 undelivered: every order acknowledged by all in-sync replicas
"""

from __future__ import annotations

import json
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import codec
from schemas.errors import UndecodableError
from schemas.events import OrderPlaced, canonical_json
from topics.catalogue import ORDERS_PLACED
from topics.read import coordinates

DeliveryCallback = Callable[[KafkaError | None, Message], None]

# what every orderbus producer sets, the shops' and the workers' (workers/runtime/clients.py)
DURABLE = {
    # a write counts only once every in-sync replica has it: losing one broker loses nothing
    "acks": "all",
    # retries after a lost ack cannot duplicate or reorder an order within a partition
    "enable.idempotence": True,
    # wait up to 5 ms to fill a batch: far more throughput for a latency no shop will notice, and
    # one request per partition carries a worker's batch of outputs
    "linger.ms": 5,
    # JSON compresses well and lz4 costs little CPU on either side
    "compression.type": "lz4",
    # the Java client's hash: one order id lands on the same partition whichever client wrote it
    "partitioner": "murmur2_random",
}
PRODUCER_DEFAULTS = {
    **DURABLE,
    # the codec accepts values up to MAX_VALUE_BYTES; librdkafka's default (1,000,000) is smaller
    "message.max.bytes": codec.MAX_VALUE_BYTES + 64 * 1024,
    # errors only: a broker going away is retried for us and reported through delivery results
    "log_level": 3,
}


class OrderPublisher:
    """Validating producer for OrderPlaced events. Not thread-safe; one per thread."""

    def __init__(self, client_config: dict[str, Any], topic: str = ORDERS_PLACED.name) -> None:
        self.topic = topic
        self._producer = Producer({**PRODUCER_DEFAULTS, **client_config})
        self.sent = 0  # handed to the producer
        self.delivered = 0  # acknowledged by the cluster
        self.failed = 0  # given up on by the producer (delivery.timeout.ms or fatal)
        self.last_error: KafkaError | None = None

    # -- sending ------------------------------------------------------------------------------

    def publish(self, order: dict[str, Any], on_delivery: DeliveryCallback | None = None) -> None:
        """Validate ``order`` (raises a DeadLetter subclass, nothing sent) and queue it, keyed by
        its order id, with the envelope headers. Delivery is asynchronous: see ``flush``."""
        value, headers, event = self.encode(order)
        self._produce(event.order_id.encode("utf-8"), value, headers, on_delivery)

    def publish_line(self, line: bytes, on_delivery: DeliveryCallback | None = None) -> None:
        """The same for an order as a shop sends it, one JSON document: decoded once (raises a
        DeadLetter subclass, nothing sent) and queued in its canonical wire form."""
        value, headers, event = self._validated(line)
        self._produce(event.order_id.encode("utf-8"), value, headers, on_delivery)

    def publish_raw(
        self,
        key: bytes | None,
        value: bytes,
        on_delivery: DeliveryCallback | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue bytes as they are, unvalidated (headers too, if given): the way to exercise the
        dead-letter path with malformed orders."""
        _check_size(value)
        self._produce(key, value, headers, on_delivery)

    def publish_sync(self, order: dict[str, Any], timeout: float = 30) -> tuple[int, int]:
        """Publish one order and wait for its acknowledgement; returns (partition, offset).
        Raises KafkaException on a delivery failure, TimeoutError if none came in time."""
        result: list[tuple[KafkaError | None, Message]] = []
        self.publish(order, on_delivery=lambda err, msg: result.append((err, msg)))
        self._producer.flush(timeout)
        if not result:
            raise TimeoutError(f"order {order.get('order_id')!r} not acknowledged in {timeout}s")
        err, msg = result[0]
        if err is not None:
            raise KafkaException(err)
        _, partition, offset = coordinates(msg)
        return partition, offset

    def flush(self, timeout: float = 30) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        return self._producer.flush(timeout)

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery callbacks without blocking for the whole queue."""
        return self._producer.poll(timeout)

    def __len__(self) -> int:
        """Messages queued or in flight, not yet acknowledged or failed."""
        return len(self._producer)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def encode(order: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]], OrderPlaced]:
        """The validated wire form of ``order``: (value, headers, event). Runs the same decode a
        worker runs, so whatever passes here passes intake's validation too."""
        try:
            raw = canonical_json(order)
        except (TypeError, ValueError) as exc:  # a set, a datetime, NaN: not JSON at all
            raise UndecodableError(f"order is not JSON-serialisable: {exc}") from None
        _check_size(raw)
        return OrderPublisher._validated(raw)

    @staticmethod
    def _validated(raw: bytes) -> tuple[bytes, list[tuple[str, bytes]], OrderPlaced]:
        # decode refuses a value over the limit as undecodable, a dead letter like any bad order
        event = codec.decode(raw, None, default_type=ORDERS_PLACED.events[0])
        assert isinstance(event, OrderPlaced)  # without headers, decode builds the default type
        value, headers = codec.encode(event)
        _check_size(value)
        return value, headers, event

    def _produce(
        self,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: DeliveryCallback | None,
    ) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = err
            if on_delivery is not None:
                on_delivery(err, msg)

        while True:
            try:
                # the stubs want a list of (str, str | bytes | None): a list of the narrower
                # (str, bytes) is as good, but list is invariant (Sequence would do)
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=key,
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=delivered,
                )
                break
            except BufferError:
                # the local queue is full: let deliveries drain, then try again (back-pressure)
                self._producer.poll(0.1)
        self.sent += 1
        self._producer.poll(0)  # serve callbacks of earlier messages as we go


def _check_size(value: bytes) -> None:
    if len(value) > codec.MAX_VALUE_BYTES:
        raise ValueError(
            f"order is {len(value)} bytes, over the limit of {codec.MAX_VALUE_BYTES} "
            "bytes (schemas.codec.MAX_VALUE_BYTES)"
        )


def key_of(value: bytes) -> bytes | None:
    """The order id of a malformed order when it has one (a string), so that its dead letter
    keeps the key a valid order would have had."""
    try:
        order_id = json.loads(value).get("order_id")
    except (ValueError, AttributeError):
        return None
    return order_id.encode("utf-8") if isinstance(order_id, str) else None
