"""The partitioner against Kafka's own test vectors (UtilsTest.testMurmur2)."""

import pytest

from topics.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    "key, expected",
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key, expected):
    assert murmur2(key) == expected


# where Kafka's Java producer puts these keys among 6 partitions, the same as the workers must
@pytest.mark.parametrize(
    "key, expected", [(b"21", 0), (b"abc", 3), (b"a-little-bit-long-string", 2)]
)
def test_a_key_lands_where_kafka_puts_it(key, expected):
    assert partition_for(key, 6) == expected


def test_order_ids_spread_over_every_partition():
    assert {partition_for(f"o-{i}".encode(), 6) for i in range(100)} == set(range(6))
