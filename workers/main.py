"""One worker instance: build its handler, serve its metrics, run the loop until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

from infra.postgres.databases import DATABASE
from topics.admin import wrong_partitions
from topics.catalogue import ACCESS, Names
from workers.runtime.clients import LoopConfig
from workers.runtime.db import Database
from workers.runtime.handler import Handler
from workers.runtime.liveness import Liveness
from workers.runtime.loop import Fatal, Loop
from workers.runtime.metrics import Metrics
from workers.runtime.settings import Settings
from workers.runtime.signing import AUTHORS, Signer, Verifier

PIPELINE = ("intake", "coordinator", "inventory", "payment", "shipping", "status")
WORKERS = PIPELINE + ("tracker",)  # the tracker watches; it decides nothing


def build(name: str, settings: Settings, metrics: Metrics, liveness: Liveness) -> Handler:
    if name not in DATABASE:  # every handler has a database; the tracker is run apart
        raise ValueError(f"unknown worker {name!r}; one of {', '.join(WORKERS)}")
    names = settings.names

    def db_retry() -> None:
        metrics.db_retries.labels(name).inc()
        liveness.waiting()

    db = Database(settings.dsns[DATABASE[name]], on_retry=db_retry)
    if name == "intake":
        from workers.intake.hold import Downstream
        from workers.intake.worker import IntakeHandler

        downstream = None
        if settings.intake_max_backlog:
            downstream = Downstream(
                settings.kafka(),
                watched(names),
                settings.intake_max_backlog,
                names.partitions,
                lambda held: metrics.held.labels(name).set(len(held)),
                lambda group, unknown: metrics.backpressure_unknown.labels(name, group).set(
                    int(unknown)
                ),
            )
        return IntakeHandler(db, names, metrics, settings.deadline_ms, downstream)
    if name == "coordinator":
        from workers.coordinator.worker import CoordinatorHandler

        return CoordinatorHandler(settings, db, names, metrics)
    # every worker below acts only on events their authors signed (workers/runtime/signing.py)
    verifier = Verifier.of(settings)
    if name in ("inventory", "payment"):
        from workers.participant.core import INVENTORY, PAYMENT
        from workers.participant.store import LEDGERS
        from workers.participant.worker import ParticipantHandler

        resource = INVENTORY if name == "inventory" else PAYMENT
        return ParticipantHandler(
            resource, LEDGERS[resource.participant], db, names, metrics, verifier, settings.crash
        )
    if name == "shipping":
        from workers.shipping.worker import ShippingHandler

        return ShippingHandler(db, names, metrics, verifier)
    if name == "status":
        from workers.status.worker import StatusHandler

        return StatusHandler(db, names, metrics, verifier)
    raise ValueError(f"unknown worker {name!r}; one of {', '.join(WORKERS)}")


def watched(names: Names) -> list[tuple[str, str]]:
    """(group, topic) of every worker intake holds back for: the groups it may watch, each on
    the topic it reads."""
    return [
        (names.group(g), names.topic(t)) for g in ACCESS["intake"].watches for t in ACCESS[g].reads
    ]


def loop_config(
    name: str, slot: int, settings: Settings, protocol: str = "classic", static: bool = False
) -> LoopConfig:
    return LoopConfig(
        group=settings.names.group(name),
        instance=settings.instance_id(slot),
        protocol=protocol,
        static=static,
    )


def run(
    name: str,
    instance: int,
    settings: Settings,
    metrics_port: int = 0,
    protocol: str = "classic",
    static: bool = False,
) -> int:
    settings = settings.as_principal(name)  # each service speaks to Kafka as itself
    if name == "tracker":  # a faust app with its own event loop and logging
        from workers.tracker.app import run_tracker

        return run_tracker(settings, instance, metrics_port)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {name}-{instance} %(levelname)s %(message)s",
    )
    metrics = Metrics(name)
    metrics.serve(metrics_port)
    liveness = Liveness()
    handler = build(name, settings, metrics, liveness)
    wrong = wrong_partitions(settings.kafka(), handler.topics, settings.names)
    if wrong:
        logging.getLogger(__name__).critical(
            "not starting: ORDERBUS_PARTITIONS is %d, but %s; a topic's count is set when it is "
            "made, so set ORDERBUS_PARTITIONS to the cluster's",
            settings.partitions,
            ", ".join(f"{t} has {n}" for t, n in sorted(wrong.items())),
        )
        return 2
    metrics.start_at_zero()
    cfg = loop_config(name, instance, settings, protocol, static)
    signer = (
        Signer(name, settings.signing_key(name), settings.names.signed())
        if name in AUTHORS
        else None
    )
    loop = Loop(settings, cfg, handler, metrics, liveness, signer)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    try:
        loop.run()
    except Fatal as e:
        logging.getLogger(__name__).critical("stopping: %s", e)
        return 3
    return 0
