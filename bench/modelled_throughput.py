"""Issue 13 (d): reserves per second on one busy resource, on a model of DynamoDB.

harness.model_store.ModelStore is the in-memory store with DynamoDB's latencies (5 ms per read
round, 15 ms per transaction) and per-item transaction conflicts (a transaction touching an item that
another in-flight transaction touches is refused), and it counts the write units each partition key
takes in every 1-second window (items and pks from chalicelib.dynamo._actions(plan)).

One resource defined with max_duration 1 h (1-hour guard slots), already holding 2,000 one-minute
bookings (made through the service, the model's latency off). N writers, each its own ReservationService (N Lambdas) over the one model store, reserve
1-minute reservations for `--seconds` each run:
  disjoint hours   writer w fills hours w, w + N, w + 2N, ... minute after minute;
  one hour         every writer takes the next free minute of the same hours (they share guards).
Printed per run: writers, reserves/s, rounds per success, transactions refused for a conflict, refused
for a changed condition, aborted answers, and the busiest partition key's WCU in one second (table;
and the busiest index partition), against DynamoDB's 1,000 WCU/s per partition key.

The model runs in Python threads on this (shared, 2-core) machine: the service's own CPU time is
real and can hold the rate below what the modelled latencies allow.

    python -m bench.modelled_throughput [--writers 1 2 4 5 6 8] [--shared 8 16] [--seconds 3]
"""

import argparse
import threading
import time

from chalicelib.errors import ServiceError
from chalicelib.runtime import build_api
from harness.model_store import PARTITION_WCU_PER_SECOND, ModelStore

from .common import HOUR_S, MINUTE_S, define, reserve, table

BASE = 1_900_800_000
GOAL_PER_SECOND = 200
WRITERS = (1, 2, 4, 5, 6, 8)
SHARED = (8, 16)


def _run(writers: int, seconds: float, shared_hours: bool, preloaded: int = 2000) -> dict:
    store = ModelStore()
    store.modelling = False  # fill it up through the service, without latency
    filler = build_api(store)
    define(filler, "busy", max_duration=HOUR_S)
    for n in range(preloaded):
        start = BASE - (n + 1) * MINUTE_S
        reserve(filler, "busy", f"user{n % 50}", start, start + MINUTE_S)
    store.modelling = True
    apis = [build_api(store) for _ in range(writers)]
    for number, api in enumerate(apis):  # warm Lambdas: shape hint cached, user and tenant records made
        start = BASE - (preloaded + 1000 + number) * MINUTE_S
        reserve(api, "busy", f"writer{number}", start, start + MINUTE_S)
    store.counts.clear()
    outcome = {"made": 0, "aborted": 0, "failed": 0}
    lock = threading.Lock()
    next_minute = [0]
    barrier = threading.Barrier(writers + 1)
    stop_at = [0.0]

    def writer(number: int) -> None:
        api, done = apis[number], 0
        barrier.wait()
        while time.monotonic() < stop_at[0]:
            if shared_hours:
                with lock:
                    minute, next_minute[0] = next_minute[0], next_minute[0] + 1
            else:
                hour, within = divmod(done, 60)
                minute = (number + writers * hour) * 60 + within
            start = BASE + minute * MINUTE_S
            try:
                reserve(api, "busy", f"writer{number}", start, start + MINUTE_S)
                key = "made"
                done += 1
            except ServiceError as error:
                key = "aborted" if error.code.name == "ABORTED" else "failed"
            with lock:
                outcome[key] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    stop_at[0] = began + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    counts = store.counts
    pk, wcu = store.busiest(began)
    index_pk, index_wcu = store.busiest(began, "index")
    return {
        "writers": writers,
        "shared_hours": shared_hours,
        **outcome,
        "per_second": outcome["made"] / elapsed,
        "rounds_per_success": (counts["reads"] + counts["commits"]) / max(1, outcome["made"]),
        "conflicts": counts["conflicts"],
        "stale": counts["stale"],
        "busiest_pk": pk,
        "busiest_wcu": wcu,
        "busiest_index": index_pk,
        "busiest_index_wcu": index_wcu,
    }


def run(writers=WRITERS, seconds: float = 3.0, shared=SHARED) -> list:
    results = [_run(n, seconds, shared_hours=False) for n in writers]
    results += [_run(n, seconds, shared_hours=True) for n in shared]
    rows = [
        [
            r["writers"],
            "one hour" if r["shared_hours"] else "disjoint hours",
            f"{r['per_second']:.0f}",
            f"{r['rounds_per_success']:.2f}",
            r["conflicts"],
            r["stale"],
            r["aborted"],
            r["failed"],
            f"{r['busiest_wcu']:,}",
            r["busiest_pk"],
            f"{r['busiest_index_wcu']:,}",
            r["busiest_index"],
        ]
        for r in results
    ]
    table(
        [
            "writers",
            "minutes taken in",
            "reserves/s",
            "rounds/success",
            "conflicts",
            "stale",
            "aborted",
            "failed",
            "max pk WCU/s",
            "busiest pk",
            "max index WCU/s",
            "busiest index partition",
        ],
        rows,
    )
    met = [
        r
        for r in results
        if r["per_second"] >= GOAL_PER_SECOND
        and r["busiest_wcu"] <= PARTITION_WCU_PER_SECOND
        and max(r["busiest_index_wcu"], 0) <= PARTITION_WCU_PER_SECOND
    ]
    print(
        f"model: 5 ms per read round, 15 ms per transaction, per-item transaction conflicts; goal >= "
        f"{GOAL_PER_SECOND} reserves/s on one resource with every partition key <= "
        f"{PARTITION_WCU_PER_SECOND:,} WCU/s: met with "
        + (", ".join(f"{r['writers']} writers" for r in met) if met else "no run")
        + "; conflicts: transactions refused because another in flight touched an item; stale: refused because "
        "a condition no longer held (a guard taken meanwhile)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=list(WRITERS))
    parser.add_argument(
        "--shared",
        type=int,
        nargs="*",
        default=list(SHARED),
        help="writer counts of the runs where every writer takes minutes of the same hours",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    options = parser.parse_args()
    run(tuple(options.writers), options.seconds, tuple(options.shared))


if __name__ == "__main__":
    main()
