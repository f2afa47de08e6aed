"""Tiny runs of every benchmark, so that they cannot rot: each must run and print sane figures.

Only the shape of what they print is checked, and the few figures that do not depend on this machine
(calls, rounds, units); the benchmarks themselves are `make bench` (BENCHMARKS.md).
"""

from bench import (
    availability,
    busy_resource,
    cold_start,
    density,
    dynamodb_cost,
    embedded,
    handler_overhead,
    listen,
    modelled_throughput,
    pools,
    scaling,
    throughput,
)
from harness.meter import Gsi, index_writes, table_gsis


def test_meter_index_writes_follow_the_projection():
    gsis = table_gsis()
    assert {g.name: g.projection for g in gsis}["holds"] == "KEYS_ONLY" and len(gsis) == 6
    keys_only = Gsi("k", "hk", "hexp", "KEYS_ONLY")
    item = {"pk": {"S": "p"}, "sk": {"S": "s"}, "hk": {"S": "H#1"}, "hexp": {"N": "5"}, "note": {"S": "x"}}
    assert [w.what for w in index_writes(None, item, (keys_only,))] == ["put"]
    assert index_writes(item, {**item, "note": {"S": "y"}}, (keys_only,)) == []  # keys only: nothing changed
    assert [w.what for w in index_writes(item, {**item, "hexp": {"N": "6"}}, (keys_only,))] == ["delete", "put"]
    everything = Gsi("a", "hk", "hexp", "ALL")
    assert [w.what for w in index_writes(item, {**item, "note": {"S": "y"}}, (everything,))] == ["update"]
    assert [w.what for w in index_writes(item, None, (everything,))] == ["delete"]


def test_cold_start(capsys):
    result = cold_start.run(runs=1)
    assert result["floor_ms"] > 0 and result["first_reserve_ms"] > 0 and result["import_app_ms"] > 0
    assert "ratio" in capsys.readouterr().out


def test_handler_overhead():
    results = handler_overhead.run(count=3)
    assert {"reserve", "reschedule", "availability (1 x 1 day)", "listen (from a cursor)"} <= set(results)
    assert all(p50 <= p99 and cpu > 0 for p50, p99, cpu, _ in results.values())


def test_dynamodb_cost(capsys):
    costs = dynamodb_cost.run(around=20, lot_hours=3)
    reserve = costs["reserve 1 h"]  # the last section of that name: busy, dense
    assert reserve["rounds"] >= 2 and reserve["wru_index"] > 0 and reserve["event_wru"] > 0
    assert costs["reserve 1 h + request id"]["wru"] > reserve["wru"]
    assert costs["get"]["rounds"] == 1 and costs["get"]["wru"] == 0
    assert all(row["usd_per_million"] > 3.70 for row in costs.values())  # API Gateway + Lambda at least
    assert "change event's own cost" in capsys.readouterr().out


def test_density():
    rows = density.run(densities=(0, 10))
    assert len(rows) == 4
    assert len({row["reserve"].usage.wru for row in rows}) == 1  # the same whatever the density or shape


def test_busy_resource():
    result = busy_resource.run(minutes=12, seconds=6, writers=2, per_writer=3)
    assert all(run["failed"] == 0 for run in result["runs"])
    assert result["concurrent"]["made"] == 6 and result["concurrent"]["aborted"] == 0


def test_modelled_throughput():
    results = modelled_throughput.run(writers=(1, 2), seconds=0.3, shared=(2,))
    assert len(results) == 3 and all(r["made"] > 0 and r["busiest_wcu"] > 0 for r in results)


def test_pools():
    result = pools.run(writers=2, per_writer=3, nights=(1, 9), lot_hours=8, hotel_attempts=100, lot_starts=(2,))
    assert all(m.usage.rounds == 2 for pair in result["lot"].values() for m in pair)
    assert result["concurrent"]["violations"] == [] and result["concurrent"]["lost"] == 0


def test_availability():
    results = availability.run(counts=(1, 2), timed_calls=2)
    assert all(r["measured"].usage.rounds >= 2 and r["handler_ms"] > 0 for r in results)


def test_listen(local_server):
    result = listen.run(reserves=2, missed=2, server=local_server)
    assert all(r["missing"] == 0 and r["duplicates"] == 0 for r in result["resume"])
    assert all(len(values) == 2 for values in result["latency"]["from_sent"].values())


def test_scaling():
    first, last = scaling.run(sizes=(10, 300), matches=5, repeats=1)
    assert first["amplification"] == last["amplification"] <= 1.5
    assert first["reserve_rounds"] == last["reserve_rounds"] == 2
    assert last["query_latency_ratio"] > 0 and last["reserve_latency_ratio"] > 0


def test_throughput(local_server):
    result = throughput.run(per_client=2, server=local_server)
    assert result["failed"] == 0 and result["hot_per_second"] > 0 and result["sized_per_second"] > 0


def test_embedded(capsys):
    result = embedded.run(loaded=200, reserves=16, samples=5)
    assert result["empty"]["reserve_ms"] > 0 and result["loaded"]["get_ms"] > 0
    assert result["rss_start_mib"] > 0 and 0 < result["stop_seconds"] < 5
    assert "ratio loaded / empty" in capsys.readouterr().out
