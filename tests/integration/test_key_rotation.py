"""A signing key rotated under load, as README's Security section tells an operator: the new key
first in the service's file, the service restarted. What the old key signed stays valid for
every reader (the coordinator's re-fold after a restart, verify, audit), no order is decided
twice, and nothing is dead-lettered as forged."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid
from collections import defaultdict

import pytest
from pipeline import Pipeline, order

from orderbus.ops.keys import rotate
from orderbus.ops.verify import verify
from schemas import codec
from topics.catalogue import DLQ_REASON
from topics.read import read

pytestmark = pytest.mark.integration

ORDERS, RATE = 240, 30.0


def test_a_key_rotated_under_load_keeps_history_valid(settings, tmp_path):
    files = {}
    for service in ("inventory", "coordinator"):  # copies: the shared secrets stay as they are
        files[service] = tmp_path / f"signing-{service}.key"
        shutil.copy(settings.signing_key_file(service), files[service])
    env = {f"ORDERBUS_SIGNING_KEY_{s.upper()}_FILE": str(f) for s, f in files.items()}
    p = Pipeline(settings, "k" + uuid.uuid4().hex[:8], tmp_path, deadline_ms=10_000, env=env)
    keyed = dataclasses.replace(p.settings, env={**p.settings.env, **env})
    ids = [f"k-{i}" for i in range(ORDERS)]
    try:
        p.stock(**{"k-sku": 100_000})
        p.account(kc=100_000_000)
        p.start()

        def publish():
            for oid in ids:
                p.publisher.publish(order(oid, "kc", ("k-sku", 1, 100)))
                time.sleep(1 / RATE)

        load = threading.Thread(target=publish)
        load.start()
        time.sleep(2)
        rotate(keyed, "inventory")
        p.restart("inventory")
        p.restart("coordinator")  # its take-over re-folds votes the old key signed
        time.sleep(2)
        rotate(keyed, "coordinator")
        p.restart("coordinator")
        load.join()
        assert p.publisher.flush(30) == 0

        final = p.wait_final(ids, timeout_s=120)
        outcomes = defaultdict(set)
        for msg in read(p.settings.kafka(), p.tx_log_topic, timeout_s=60):
            event = codec.decode(msg.value(), msg.headers())
            if event.TYPE == "Decided":
                outcomes[event.order_id].add(event.outcome)
        assert [o for o, seen in outcomes.items() if len(seen) > 1] == []
        forged = [d for d in p.dead_letters() if d["headers"][DLQ_REASON] == "forged"]
        assert forged == []
        shipped = sum(1 for st in final.values() if st[0] == "SHIPPED")
        print(f"\n{shipped} of {ORDERS} shipped, {ORDERS - shipped} rejected, across two rotations")
        result = verify(keyed, wait_s=90)
        assert result["violations"] == [], result["violations"]
    finally:
        p.close()
