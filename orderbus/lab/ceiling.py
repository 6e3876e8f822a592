"""The brokers' ceiling on this machine: Kafka's own ProducerPerformance writing 200-byte
records as the workers write theirs (acks=all, idempotent, lz4, linger 5 ms, RF 3 with
min.insync.replicas 2, the same security), so the pipeline's records/s can be read as a share of
what the cluster takes at all."""

from __future__ import annotations

import re
import subprocess
import tempfile

# confluent_kafka.admin imports NewTopic from cimpl as its public name, without `as` or __all__
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from workers.runtime.settings import Settings

PERF = "org.apache.kafka.tools.ProducerPerformance"
SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec")


def producer_ceiling(
    settings: Settings, topic: str, records: int = 300_000, timeout_s: float = 300
) -> float:
    """Records/s ProducerPerformance reached writing `records` to `topic`, made here (the
    caller deletes it: a sandbox drops every topic behind its prefix)."""
    admin = AdminClient({"log_level": 3, **settings.kafka()})
    made = admin.create_topics(
        [NewTopic(topic, settings.partitions, 3, config={"min.insync.replicas": "2"})]
    )
    made[topic].result(30)
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as config:  # mode 0600
        config.write(settings.java_properties())
        config.flush()
        done = subprocess.run(
            [
                "java",
                "-Xmx512m",
                "-cp",
                f"{settings.layout().kafka_lib}/*",
                PERF,
                "--topic",
                topic,
                "--num-records",
                str(records),
                "--record-size",
                "200",
                "--throughput",
                "-1",
                "--producer.config",
                config.name,
                "--producer-props",
                f"bootstrap.servers={settings.bootstrap}",
                "acks=all",
                "enable.idempotence=true",
                "compression.type=lz4",
                "linger.ms=5",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    found = SUMMARY.findall(done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(
            f"ProducerPerformance failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}"
        )
    return float(found[-1][1])
