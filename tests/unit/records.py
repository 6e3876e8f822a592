"""A consumed record as a value object: what the workers read of confluent_kafka.Message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Msg:
    _value: bytes | None
    _headers: list | None
    _key: bytes | None = b"k"
    _topic: str = "t.orders.placed.v1"
    _partition: int = 2
    _offset: int = 41

    def value(self):
        return self._value

    def headers(self):
        return self._headers

    def key(self):
        return self._key

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset
