"""Servers started by infra.procs: detached, tracked by pid, and quiet when their handle goes."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import warnings

from infra import procs

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def _resource_warnings(make_handle) -> list[str]:
    """Collect a handle to a running child and return the ResourceWarnings that raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        handle = make_handle()
        pid = handle.pid
        del handle
        gc.collect()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]


def test_a_plain_popen_warns_when_collected_while_running():
    # the check below could not fail if collecting a running child never warned
    assert _resource_warnings(lambda: subprocess.Popen(SLEEP)) != []


def test_a_server_handle_collected_while_it_runs_does_not_warn():
    assert _resource_warnings(lambda: procs._Server(SLEEP)) == []


def test_start_records_the_pid_and_stop_stops_it(tmp_path):
    pidfile, log = tmp_path / "s.pid", tmp_path / "s.log"
    pid = procs.start(SLEEP, pidfile, log)
    assert procs.running(pidfile) == pid
    assert procs.stop(pidfile, grace_s=5)
    assert not procs.alive(pid)
    assert not pidfile.exists()
