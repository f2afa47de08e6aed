"""Tiny runs of every benchmark, so that they cannot rot: each must run and print sane figures.

    python -m bench.smoke               # every benchmark, tiny
    python -m bench.smoke density pools # some of them

Only the shape of what they print is checked, and the few figures that do not depend on this machine
(calls, rounds, units); the benchmarks themselves are `make bench` (BENCHMARKS.md). `make test` runs
each check in a process of its own (tests/test_bench.py); exit status 1 if a check fails.
"""

import contextlib
import io
import sys
import traceback

from . import (
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


def check_cold_start(printed):
    result = cold_start.run(runs=1)
    assert result["floor_ms"] > 0 and result["first_reserve_ms"] > 0 and result["import_app_ms"] > 0
    assert "ratio" in printed()


def check_handler_overhead(printed):
    results = handler_overhead.run(count=3)
    assert {"reserve", "reschedule", "availability (1 x 1 day)", "listen (from a cursor)"} <= set(results)
    assert all(p50 <= p99 and cpu > 0 for p50, p99, cpu, _ in results.values())


def check_dynamodb_cost(printed):
    costs = dynamodb_cost.run(around=20, lot_hours=3)
    reserve = costs["reserve 1 h"]  # the last section of that name: busy, dense
    assert reserve["rounds"] >= 2 and reserve["wru_index"] > 0 and reserve["event_wru"] > 0
    assert costs["reserve 1 h + request id"]["wru"] > reserve["wru"]
    assert costs["get"]["rounds"] == 1 and costs["get"]["wru"] == 0
    assert all(row["usd_per_million"] > 3.70 for row in costs.values())  # API Gateway + Lambda at least
    assert "change event's own cost" in printed()


def check_density(printed):
    rows = density.run(densities=(0, 10))
    assert len(rows) == 4
    assert len({row["reserve"].usage.wru for row in rows}) == 1  # the same whatever the density or shape


def check_busy_resource(printed):
    result = busy_resource.run(minutes=12, seconds=6, writers=2, per_writer=3)
    assert all(run["failed"] == 0 for run in result["runs"])
    assert result["concurrent"]["made"] == 6 and result["concurrent"]["aborted"] == 0


def check_modelled_throughput(printed):
    results = modelled_throughput.run(writers=(1, 2), seconds=0.3, shared=(2,))
    assert len(results) == 3 and all(r["made"] > 0 and r["busiest_wcu"] > 0 for r in results)


def check_pools(printed):
    result = pools.run(writers=2, per_writer=3, nights=(1, 9), lot_hours=8, hotel_attempts=100, lot_starts=(2,))
    assert all(m.usage.rounds == 2 for pair in result["lot"].values() for m in pair)
    assert result["concurrent"]["violations"] == [] and result["concurrent"]["lost"] == 0


def check_availability(printed):
    results = availability.run(counts=(1, 2), timed_calls=2)
    assert all(r["measured"].usage.rounds >= 2 and r["handler_ms"] > 0 for r in results)


def check_listen(printed):
    result = listen.run(reserves=2, missed=2)
    assert all(r["missing"] == 0 and r["duplicates"] == 0 for r in result["resume"])
    assert all(len(values) == 2 for values in result["latency"]["from_sent"].values())


def check_scaling(printed):
    first, last = scaling.run(sizes=(10, 300), matches=5, repeats=1)
    assert first["amplification"] == last["amplification"] <= 1.5
    assert first["reserve_rounds"] == last["reserve_rounds"] == 2
    assert last["query_latency_ratio"] > 0 and last["reserve_latency_ratio"] > 0


def check_throughput(printed):
    result = throughput.run(per_client=2)
    assert result["failed"] == 0 and result["hot_per_second"] > 0 and result["sized_per_second"] > 0


def check_embedded(printed):
    result = embedded.run(loaded=200, reserves=16, samples=5)
    assert result["empty"]["reserve_ms"] > 0 and result["loaded"]["get_ms"] > 0
    assert result["rss_start_mib"] > 0 and 0 < result["stop_seconds"] < 5
    assert "ratio loaded / empty" in printed()


CHECKS = {name.removeprefix("check_"): check for name, check in globals().items() if name.startswith("check_")}


def main(names: list) -> int:
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        print(f"no benchmark named {', '.join(unknown)}; there are {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    failed = 0
    for name in names or list(CHECKS):
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output):
                CHECKS[name](output.getvalue)
        except Exception:
            failed += 1
            print(f"FAILED {name}\n{output.getvalue()}{traceback.format_exc()}", file=sys.stderr)
        else:
            print(f"ok {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
