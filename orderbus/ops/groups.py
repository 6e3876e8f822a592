"""Is the pipeline running? The worker groups that have members."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from infra.procs import InfraError
from topics.catalogue import GROUPS
from workers.runtime.settings import Settings

COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def active_groups(settings: Settings, attempts: int = 8) -> list[str]:
    """This pipeline's worker groups (behind its prefix) with members. A group that was never
    created is reported empty."""
    admin = AdminClient(settings.kafka(log_level=3))
    pending, busy = [settings.names.group(w) for w in GROUPS], []
    for attempt in range(attempts):
        retry = []
        for group, fut in admin.describe_consumer_groups(pending, request_timeout=10).items():
            try:
                if fut.result().members:
                    busy.append(group)
            except KafkaException as e:
                err = e.args[0]
                if err.name() == "GROUP_ID_NOT_FOUND":
                    continue
                # NOT_COORDINATOR and the like while __consumer_offsets is (re)loading, as
                # right after `up`; librdkafka does not flag these retriable for this request
                if (
                    not (err.retriable() or err.code() in COORDINATOR_MOVING)
                    or attempt == attempts - 1
                ):
                    raise InfraError(
                        f"cannot tell whether {group} is running: {err.str()} (or --force)"
                    ) from None
                retry.append(group)
        if not retry:
            break
        pending = retry
        time.sleep(0.5 * (attempt + 1))
    return sorted(busy)
