"""Processes that `orderbus up` starts: detached, tracked by pid file, stopped by pid only."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class InfraError(RuntimeError):
    """A fault the operator must fix; the message says what is wrong and what to do."""


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def running(pidfile: Path) -> int | None:
    pid = read_pid(pidfile)
    return pid if alive(pid) else None


class _Server(subprocess.Popen[bytes]):
    """A server outlives the process that started it by design (`orderbus down`, another
    process, stops it by pid), so its handle being collected while it runs is no leak."""

    def __del__(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_child_created", False) and self.poll() is None:
            return
        super().__del__(*args, **kwargs)


_children: list[_Server] = []


def start(
    argv: list[str],
    pidfile: Path,
    logfile: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    nice: int | None = None,
) -> int:
    """Start argv in its own session, detached from the caller, output to logfile; at niceness
    `nice` (absolute, -20..19; None: the caller's) through nice(1), so that every thread it
    starts has it. Raising priority needs CAP_SYS_NICE; without it the program runs at the
    caller's, with nice's warning in its log."""
    if nice is not None and nice != os.nice(0):
        argv = ["nice", "-n", str(nice - os.nice(0)), *argv]
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = _Server(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            user=user,
            start_new_session=True,
            close_fds=True,
        )
    _children.append(proc)  # kept, so a server started from a long-lived process is reaped
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pidfile: Path, grace_s: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """SIGTERM the recorded pid, SIGKILL after the grace period. True when something was stopped."""
    pid = running(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            _reap(pid)
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    for child in _children:
        if child.pid == pid:
            child.poll()
            return


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def exclusive(lockfile: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock, so a second `up`/`down` from another shell waits its turn or says
    so."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InfraError(
                f"another `orderbus {what}` is running on {lockfile.parent} "
                "(it holds the lock); wait for it to finish and try again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def require_apt(what: str, package: str) -> None:
    """Refuse, with what to do, where `apt_install` cannot run."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise InfraError(
            f"{what} is not installed; install it (Debian: apt-get install {package}) and run the "
            "command again"
        )


def apt_install(package: str) -> None:
    """Install a Debian package (as root)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise InfraError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}")


def signal_if_alive(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def reap_child(pid: int) -> None:
    """A broker we restarted earlier is our child: collect it, or it lingers as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, for an error that says why a service did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"
