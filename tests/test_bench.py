"""Tiny runs of every benchmark, so that they cannot rot: each must run and print sane figures."""
from bench import cold_start, dynamodb_cost, embedded, handler_overhead, scaling, throughput


def test_cold_start(capsys):
    result = cold_start.run(runs=1)
    assert result["floor_ms"] > 0 and result["first_reserve_ms"] > 0
    assert "ratio" in capsys.readouterr().out


def test_handler_overhead():
    results = handler_overhead.run(count=20)
    assert set(results) == {"reserve", "confirm", "update", "cancel", "get", "filter (10)"}
    assert all(p50 <= p99 for p50, p99 in results.values())


def test_dynamodb_cost():
    costs = dynamodb_cost.run()
    assert costs["reserve 1 h"]["round_trips"] <= 2  # the goal: reserve in at most 2 round trips
    assert costs["get"]["round_trips"] == 1
    assert costs["reserve 14 days"]["wru"] > costs["reserve 1 h"]["wru"] > 0
    assert all(row["usd_per_million"] > 3.70 for row in costs.values())  # API Gateway + Lambda at least


def test_scaling():
    first, last = scaling.run(sizes=(10, 300), matches=5, repeats=1)
    assert first["amplification"] == last["amplification"] <= 1.5
    assert first["reserve_round_trips"] == last["reserve_round_trips"] == 2
    assert last["query_latency_ratio"] > 0 and last["reserve_latency_ratio"] > 0


def test_throughput():
    result = throughput.run(per_client=2)
    assert result["failed"] == 0 and result["hot_per_second"] > 0


def test_embedded(capsys):
    result = embedded.run(loaded=200, reserves=16, samples=5)
    assert result["empty"]["reserve_ms"] > 0 and result["loaded"]["get_ms"] > 0
    assert result["rss_start_mib"] > 0 and 0 < result["stop_seconds"] < 5
    assert "ratio loaded / empty" in capsys.readouterr().out
