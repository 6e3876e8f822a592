"""Workers of one pipeline on several hosts: each `orderbus run` numbers its instances from 0, and
the host's part of the instance id keeps two hosts' instances from fencing each other."""

from __future__ import annotations

import pytest
from pipeline import Pipeline, order

from orderbus.ops.supervise import Supervisor

pytestmark = pytest.mark.integration


def test_two_hosts_run_the_same_worker_without_fencing_each_other(settings, unique, tmp_path):
    # partitions for both hosts' instances to share
    pipe = Pipeline(settings, unique, tmp_path, env={"ORDERBUS_HOST_ID": "host-a"}, partitions=6)
    # the second host's supervisor: its own slot 0 of intake, in the same group as host-a's
    other = Supervisor(
        pipe.settings,
        {"intake": 1},
        env={**pipe.env, "ORDERBUS_HOST_ID": "host-b"},
        log_dir=tmp_path / "host-b",
        log=lambda *_: None,
    )
    try:
        pipe.start()
        other.start()
        other.watch_in_background()
        pipe.stock(**{"h-sku": 1_000})
        pipe.account(**{"h-cust": 1_000_000})
        # several rounds, so both intake instances run transactions after both have started
        for round_ in range(4):
            ids = [f"h{round_}-{i}" for i in range(30)]
            pipe.publish(*(order(o, "h-cust", ("h-sku", 1, 10)) for o in ids))
            pipe.wait_final(ids, timeout_s=60)
        intakes = [pipe.sup.find("intake"), other.find("intake")]
        assert [c.restarts for c in intakes] == [0, 0], (
            "an intake instance was fenced by the other host's and restarted"
        )
        assert all(c.proc.poll() is None for c in intakes)
    finally:
        other.stop()
        pipe.close()
