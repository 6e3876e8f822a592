"""bench's split of an order's latency into steps, from when each step's output was produced."""

from orderbus.lab.readings import hop_latencies


def test_each_step_runs_from_one_output_to_the_next():
    sent = {"a": 0.0, "b": 1.0}
    tx = {
        "a": {"begun": 0.1, "votes": [0.2, 0.3], "decided": 0.6},
        "b": {"begun": 1.2, "votes": [1.5], "decided": 1.9},
    }
    final = {"a": 1.0, "b": 2.0}
    h = hop_latencies(sent, tx, final)
    assert [round(h[s]["p50_ms"]) for s in h] == [100, 200, 300, 100]
    assert [round(h[s]["p99_ms"]) for s in h] == [200, 300, 400, 400]
    assert all(s["orders"] == 2 for s in h.values())


def test_a_vote_redelivered_after_the_decision_is_not_the_one_it_awaited():
    sent = {"a": 0.0}
    tx = {"a": {"begun": 0.1, "votes": [0.2, 0.3, 0.9], "decided": 0.6}}
    h = hop_latencies(sent, tx, {"a": 1.0})
    assert [round(h[s]["p50_ms"]) for s in h] == [100, 200, 300, 400]


def test_an_order_without_the_whole_chain_is_left_out():
    sent = {"a": 0.0, "late": 0.0, "unseen": 0.0}
    tx = {
        "a": {"begun": 0.1, "votes": [0.2], "decided": 0.3},
        "late": {"begun": 0.1, "decided": 10.1},
    }  # aborted by its deadline: no vote
    final = {"a": 0.4, "late": 10.2}
    h = hop_latencies(sent, tx, final)
    assert all(s["orders"] == 1 for s in h.values())
    assert round(h["coordinator"]["p50_ms"]) == 100
