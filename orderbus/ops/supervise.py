"""Run worker instances as child processes; restart one that crashes; stop them cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from infra import netns, variables
from infra.postgres.databases import DATABASE
from workers.main import WORKERS
from workers.runtime.settings import Settings
from workers.runtime.signing import AUTHORS


@dataclass
class Child:
    name: str
    instance: int
    port: int
    host: int = 0  # on hosts of their own (`up --hosts`): the last byte of its address
    # this instance's own, over the supervisor's (a fault's)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff_s: float = 0.5
    started_at: float = 0.0
    held: bool = False  # stopped on purpose: not restarted until released

    @property
    def label(self) -> str:
        return f"{self.name}-{self.instance}"

    @property
    def namespace(self) -> str | None:
        return f"{netns.PREFIX}{self.label}" if self.host else None


@dataclass
class Supervisor:
    settings: Settings
    counts: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = Path()  # default: $ORDERBUS_HOME/logs
    log: Callable[[str], None] = print
    worker_args: tuple[str, ...] = ()  # e.g. ("--protocol", "consumer"), for every instance
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    # a Prometheus file_sd file naming every child's metrics endpoint (export_metrics)
    targets: Path | None = None
    # a restart and `stop` never interleave: no instance may be born after stop took its roll
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        port = self.settings.metrics_port
        for name, n in self.counts.items():
            if name not in WORKERS:
                raise ValueError(f"unknown worker {name!r}; one of {', '.join(WORKERS)}")
            for i in range(n):
                self.children.append(Child(name, i, port if port else 0, host=self._next_host()))
                port = port + 1 if port else 0
        if self.log_dir == Path():
            self.log_dir = self.settings.home / "logs"

    def _next_host(self) -> int:
        """On hosts of their own, the next worker address (SUBNET.100 up), past every one in use
        (a count would hand a scaled-in instance's successor a live one's); else 0."""
        if not self.settings.hosts:
            return 0
        return 1 + max((c.host for c in self.children if c.host), default=99)

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "orderbus",
            "worker",
            child.name,
            "--instance",
            str(child.instance),
            "--metrics-port",
            str(child.port),
            *self.worker_args,
        ]
        env = {**os.environ, **self.env, **child.env}
        if child.namespace:
            netns.ensure(child.namespace, child.host)
            argv = netns.inside(child.namespace, argv)
            env.update(host_env(self.settings, child))
        with open(self.log_dir / f"{child.label}.log", "ab") as out:
            child.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        child.started_at = time.monotonic()
        return child.proc

    def export_metrics(self, targets: Path) -> None:
        """Before `start`: every child serves its metrics on a port of its own that the OS
        reports free now, kept across its restarts (so Prometheus sees one target restart rather
        than a new one appear), and `targets` lists them for Prometheus' file-based discovery.
        For a machine that runs several pipelines (tests, benches) where fixed ports would clash."""
        for child in self.children:
            child.port = free_port()
        self.list_targets(targets)

    def list_targets(self, targets: Path) -> None:
        """Before `start`: `targets` lists every child's metrics endpoint, on the ports it has,
        for Prometheus' file-based discovery, from start until `stop` removes it (a pipeline
        stopped on purpose is no worker down; one whose supervisor died still is)."""
        self.targets = targets

    def _write_targets(self) -> None:
        """The file_sd file, replaced atomically: Prometheus watches it and must never read half.
        Labels are `service` and `slot`, not `worker` or `instance`: the scraped series carry a
        `worker` label and Prometheus sets `instance`, and a clash would rename one of them."""
        if self.targets is None:
            return
        entries = [
            {
                "targets": [f"127.0.0.1:{c.port}"],
                "labels": {"service": c.name, "slot": str(c.instance)},
            }
            for c in self.children
            if c.port
        ]
        self.targets.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.targets.with_name(f".{self.targets.name}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.targets)

    def start(self) -> None:
        self._write_targets()
        for child in self.children:
            proc = self._spawn(child)
            where = f"metrics on 127.0.0.1:{child.port}" if child.port else "metrics off"
            self.log(f"started {child.label:<14} pid {proc.pid:<7} {where}")

    def check(self) -> None:
        """Restart any child that exited while we were not stopping, with backoff."""
        for child in list(self.children):  # `add` and `remove` may change it meanwhile
            proc = child.proc
            code = proc.poll() if proc else None
            if proc is None or code is None or self.stopping or child.held:
                continue
            if time.monotonic() - child.started_at > 30:
                child.backoff_s = 0.5  # it ran a while: a fresh crash, not a crash loop
            self.log(
                f"{child.label} exited with {code}; restarting in {child.backoff_s:.1f}s "
                f"(see {self.log_dir / (child.label + '.log')})"
            )
            time.sleep(child.backoff_s)
            child.backoff_s = min(child.backoff_s * 2, 10.0)
            with self._lock:
                # held, or held and released (a fresh process) while this one backed off
                if self.stopping or child.held or child.proc is not proc:
                    return
                child.restarts += 1
                self._spawn(child)

    def watch(self, until: Callable[[], bool] = lambda: False, every_s: float = 0.5) -> None:
        while not self.stopping and not until():
            self.check()
            time.sleep(every_s)

    def watch_in_background(self) -> threading.Thread:
        t = threading.Thread(target=self.watch, daemon=True)
        t.start()
        return t

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM: each finishes its batch, commits, leaves its group. SIGKILL after grace."""
        with self._lock:
            self.stopping = True
            live = [(c, c.proc) for c in self.children if c.proc and c.proc.poll() is None]
        for _, proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c, proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{c.label} did not stop in {grace_s:.0f}s; killing it")
                proc.kill()
                proc.wait()
        if self.targets is not None:
            self.targets.unlink(missing_ok=True)
        for c in self.children:
            if c.namespace:
                netns.remove(c.namespace)

    def hold(
        self, child: Child, grace_s: float = 30.0, how: signal.Signals = signal.SIGTERM
    ) -> None:
        """Stop one instance and keep it stopped: cleanly (an operator's maintenance, a test), or
        with `how=signal.SIGKILL` as a crash would, minus the restart."""
        child.held = True
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(how)
            child.proc.wait(grace_s)

    def release(self, child: Child) -> None:
        child.held = False
        self._spawn(child)

    def add(self, name: str) -> Child:
        """Start one more instance of `name` (a scale-out; chaos's churn), metrics off unless
        they are exported."""
        with self._lock:
            if self.stopping:
                raise RuntimeError("the supervisor is stopping")
            slot = 1 + max((c.instance for c in self.children if c.name == name), default=-1)
            child = Child(name, slot, free_port() if self.targets else 0, host=self._next_host())
            self._spawn(child)
            self.children.append(child)
            self._write_targets()
        return child

    def remove(self, child: Child, grace_s: float = 30.0) -> None:
        """Stop one instance cleanly and forget it (a scale-in)."""
        self.hold(child, grace_s)
        with self._lock:
            self.children.remove(child)
            self._write_targets()
        if child.namespace:
            netns.remove(child.namespace)  # its host goes with it, and its address

    def find(self, name: str, instance: int = 0) -> Child:
        return next(c for c in self.children if c.name == name and c.instance == instance)


def host_env(settings: Settings, child: Child) -> dict[str, str]:
    """What a worker instance on a host of its own is given, as the README's "On several
    machines" tells an operator: where Kafka and its database are, the CA, its principal's
    password, the signing keys (its own to sign, every author's to check), the partition count,
    a host id; and a home of its own, empty of the cluster's files and secrets."""
    env = {
        "ORDERBUS_HOME": str(settings.home / "hosts" / child.label),
        "ORDERBUS_KAFKA_BOOTSTRAP": settings.bootstrap,
        "ORDERBUS_KAFKA_CA": settings.ca_file,
        "ORDERBUS_PARTITIONS": str(settings.partitions),
        "ORDERBUS_HOST_ID": child.label,
        variables.KAFKA_PASSWORD_FILE.of(child.name.upper()): str(
            settings.password_file(child.name)
        ),
        **{
            variables.SIGNING_KEY_FILE.of(a.upper()): str(settings.signing_key_file(a))
            for a in AUTHORS
        },
    }
    database = DATABASE.get(child.name)
    if database:
        env[variables.DSN.of(database.upper())] = settings.dsns[database]
    return env


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's choice for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]  # (host, port) for AF_INET
        return port
