"""The partitioner against Kafka's own test vectors (UtilsTest.testMurmur2)."""
import pytest

from topics.partition import murmur2, partition_for


@pytest.mark.parametrize("key, expected", [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_kafka(key, expected):
    assert murmur2(key) == expected


def test_partition_is_the_positive_hash_modulo_the_count():
    assert partition_for(b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6
    assert {partition_for(f"o-{i}".encode(), 6) for i in range(100)} == set(range(6))
