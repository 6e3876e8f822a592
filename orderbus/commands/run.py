"""run (supervise worker instances), worker (one instance, as run starts it)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from orderbus.commands import Subparsers
from orderbus.ops.errors import UsageError
from orderbus.ops.supervise import Supervisor
from workers.main import WORKERS
from workers.runtime.settings import Settings


def register(sub: Subparsers) -> None:
    s = sub.add_parser("run", help="run workers as supervised child processes")
    s.add_argument("name", choices=(*WORKERS, "all"))
    s.add_argument("--instances", type=int, default=1, help="instances of each worker (default 1)")
    s.add_argument(
        "--membership",
        choices=("static", "dynamic"),
        default="dynamic",
        help="classic-protocol group membership of every worker (see README)",
    )
    s.set_defaults(func=_run)
    s = sub.add_parser("worker", help="one worker instance in the foreground (what `run` starts)")
    s.add_argument("name", choices=WORKERS)
    s.add_argument("--instance", type=int, default=0)
    s.add_argument("--metrics-port", type=int, default=0)
    s.add_argument("--protocol", choices=("classic", "consumer"), default="classic")
    s.add_argument(
        "--membership",
        choices=("static", "dynamic"),
        default="dynamic",
        help="classic protocol: dynamic membership (default) or static (a restarted "
        "instance gets its partitions back without a rebalance; see README)",
    )
    s.set_defaults(func=_worker)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.instances < 1:
        raise UsageError("--instances must be at least 1")
    names = WORKERS if args.name == "all" else (args.name,)
    sup = Supervisor(
        settings, {n: args.instances for n in names}, worker_args=("--membership", args.membership)
    )
    if settings.metrics_port:
        sup.list_targets(targets_file(settings))
    sup.start()
    print(f"logs in {sup.log_dir}; Ctrl-C stops every worker cleanly")
    if sup.targets:
        print(f"Prometheus finds the workers in {sup.targets} (infra/prometheus/prometheus.yml)")

    def stop(*_: object) -> None:
        sup.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sup.watch()
    sup.stop()
    print("stopped")
    return 0


def targets_file(settings: Settings) -> Path:
    """Where `run` lists its workers for Prometheus: infra/prometheus/prometheus.yml reads
    workers-*.json here under the default ORDERBUS_HOME. Named by the first metrics port, so a
    second `run` on ports of its own has a file of its own and a restarted one replaces its own."""
    return settings.home / "prometheus" / f"workers-{settings.metrics_port}.json"


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.main import run

    static = args.membership == "static" and args.protocol == "classic"
    return run(args.name, args.instance, settings, args.metrics_port, args.protocol, static)
