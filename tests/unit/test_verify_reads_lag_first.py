"""verify judges the databases 'quiet' by the groups' lag, so it must read the lag before the
state the lag vouches for: a status worker catching up between a status read and a later lag
read made verify report a status mismatch for an order whose status was on its way (the lag
read zero, the status read was older)."""

from __future__ import annotations

from offline import offline_settings

from orderbus.ops import verify_facts


def test_the_lag_is_read_before_the_state_it_vouches_for(monkeypatch):
    reads: list[str] = []

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Conn:
        def cursor(self):
            return Cursor()

        def close(self):
            pass

    def read_from(settings, database, work):
        reads.append(database)
        return {}

    monkeypatch.setattr(verify_facts, "read", lambda *a, **k: iter(()))
    monkeypatch.setattr(verify_facts, "read_events", lambda *a, **k: iter(()))
    monkeypatch.setattr(verify_facts, "read_from", read_from)
    monkeypatch.setattr(
        verify_facts, "connect", lambda settings, database: reads.append(database) or Conn()
    )
    monkeypatch.setattr(verify_facts.participant_store, "holds", lambda cur: {})
    monkeypatch.setattr(verify_facts.participant_store, "balances", lambda cur, ledger: [])
    monkeypatch.setattr(verify_facts, "lag", lambda settings: reads.append("lag") or {})
    monkeypatch.setattr(verify_facts, "open_transactions", lambda kafka, parts: {})
    monkeypatch.setattr(verify_facts.Verifier, "of", classmethod(lambda cls, settings: cls({})))
    verify_facts.gather(offline_settings(prefix="p."))
    assert reads[0] == "lag" and len(reads) > 1, reads
