"""Which partition a keyed record goes to: Kafka's Java DefaultPartitioner, which every orderbus
producer uses too (librdkafka's `murmur2_random`), so any process can tell where an order's
events live."""

from __future__ import annotations


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's Java DefaultPartitioner for a keyed record: toPositive(murmur2(key)) % partitions.
    Every record is checked against it on the way in, so one partition skips the hash."""
    if partitions == 1:
        return 0
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(key: bytes) -> int:
    """Kafka's Utils.murmur2, as a signed 32-bit int."""
    m, r, length = 0x5BD1E995, 24, len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[length - length % 4 :]
    for i in reversed(range(len(tail))):
        h ^= tail[i] << (8 * i)
    if tail:
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h
