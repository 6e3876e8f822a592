"""Kafka's own command-line tools, run against the test cluster as the admin principal."""

from __future__ import annotations

import subprocess
import tempfile

CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def run(settings, main: str, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as config:  # mode 0600
        config.write(settings.java_properties())
        config.flush()
        return subprocess.run(
            [
                "java",
                "-cp",
                f"{settings.layout().kafka_lib}/*",
                main,
                "--bootstrap-server",
                settings.bootstrap,
                "--command-config",
                config.name,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
