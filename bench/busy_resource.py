"""Issue 13 (b, c): one exclusive resource defined with max_duration 1 h (1-hour guard slots), busy.

(b) Back to back, one writer: 10,000 consecutive 1-minute reservations (every other one with a
    request id), then a denser run: 3,600 consecutive 1-second reservations, which fill one 1-hour
    guard slot. Every reserve goes through the API in process against moto and is measured with the
    honest meter (harness.meter): all must succeed; WRU per reserve (index writes included) first,
    median and max, without and with the change event's own cost (issue 17 added the event to every
    change's transaction), and rounds per reserve. Goal: WRU <= 8 per reserve (<= 10 with a request
    id) from the first to the last.
(c) Concurrent writers: 8 threads, each with its own DynamoDB client and service (8 Lambdas),
    reserve disjoint hours of one such resource (writer w takes hours w, w + 8, w + 16, ...), against
    moto in process applying one call at a time (bench.common.one_call_at_a_time). Goal: rounds per
    success <= 2.5, none aborted.

    python -m bench.busy_resource [--minutes 10000] [--seconds 3600] [--writers 8] [--per-writer 25]
"""

import argparse
import concurrent.futures
import threading
import time
import uuid

from chalicelib.dynamo import DynamoStore, client_from_environment
from chalicelib.errors import ServiceError
from chalicelib.runtime import build_api, default_api
from harness.meter import Meter
from harness.moto import TABLE, moto_table

from .common import (
    HOUR_S,
    MINUTE_S,
    define,
    median,
    moto_images,
    one_call_at_a_time,
    reserve,
    table,
    units,
)

BASE = 1_900_800_000  # a UTC midnight
WRU_GOAL, WRU_GOAL_REQUEST_ID, ROUNDS_GOAL = 8, 10, 2.5


def _series(values: list) -> str:
    return f"{units(values[0])} / {units(median(values))} / {units(max(values))}" if values else "-"


def back_to_back(api, meter, resource_id: str, count: int, length_s: float, start_s: float) -> dict:
    """`count` consecutive reserves of `length_s`, every other one with a request id."""
    plain, with_id, failed, rounds = [], [], 0, []
    began = time.perf_counter()
    for n in range(count):
        start = start_s + n * length_s
        request_id = str(uuid.uuid4()) if n % 2 else ""
        meter.discard()
        try:
            reserve(api, resource_id, f"user{n % 7}", start, start + length_s, request_id=request_id)
        except ServiceError:
            failed += 1
            meter.discard()
            continue
        usage = meter.take()
        (with_id if request_id else plain).append(usage)
        rounds.append(usage.rounds)
    return {
        "count": count,
        "length_s": length_s,
        "failed": failed,
        "seconds": time.perf_counter() - began,
        "plain": plain,
        "with_id": with_id,
        "rounds": rounds,
    }


def concurrent_writers(writers: int, per_writer: int) -> dict:
    """Writers on disjoint hours of one resource, each with its own client; rounds per success."""
    define(default_api(), "shared", max_duration=HOUR_S)
    apis = [build_api(DynamoStore(TABLE, client_from_environment())) for _ in range(writers)]
    meters = [Meter(api.reservations.store.client, count_writes=False) for api in apis]
    barrier = threading.Barrier(writers)
    outcome = {"made": 0, "aborted": 0, "other_failures": 0}
    lock = threading.Lock()

    def writer(number: int) -> None:
        api = apis[number]
        barrier.wait()
        for k in range(per_writer):
            hour = BASE + (number + writers * k) * HOUR_S
            try:
                reserve(api, "shared", f"writer{number}", hour, hour + HOUR_S)
                key = "made"
            except ServiceError as error:
                key = "aborted" if error.code.name == "ABORTED" else "other_failures"
            with lock:
                outcome[key] += 1

    for meter in meters:
        meter.__enter__()
    try:
        began = time.perf_counter()
        with one_call_at_a_time(), concurrent.futures.ThreadPoolExecutor(writers) as pool:
            list(pool.map(writer, range(writers)))
        seconds = time.perf_counter() - began
    finally:
        for meter in meters:
            meter.__exit__()
    usages = [meter.take() for meter in meters]
    rounds, calls = sum(u.rounds for u in usages), sum(u.calls for u in usages)
    failed_writes = sum(u.failed for u in usages)
    return {
        "writers": writers,
        "reserves": writers * per_writer,
        **outcome,
        "rounds": rounds,
        "calls": calls,
        "refused_transactions": failed_writes,
        "seconds": seconds,
        "rounds_per_success": rounds / max(1, outcome["made"]),
        "calls_per_success": calls / max(1, outcome["made"]),
    }


def run(minutes: int = 10_000, seconds: int = 3_600, writers: int = 8, per_writer: int = 25) -> dict:
    with moto_table():
        api = default_api()
        define(api, "minutes", max_duration=HOUR_S)
        define(api, "seconds", max_duration=HOUR_S)
        with Meter(api.reservations.store.client, images=moto_images()) as meter:
            runs = [
                back_to_back(api, meter, "minutes", minutes, MINUTE_S, BASE),
                back_to_back(api, meter, "seconds", seconds, 1.0, BASE),
            ]
        concurrent = concurrent_writers(writers, per_writer)
    rows = []
    for result in runs:
        for label, usages, goal in (
            ("no request id", result["plain"], WRU_GOAL),
            ("request id", result["with_id"], WRU_GOAL_REQUEST_ID),
        ):
            total = [u.wru for u in usages]
            without_event = [u.wru - u.kind_wru("event") for u in usages]
            over = [(n, u) for n, (u, w) in enumerate(zip(usages, without_event)) if w > goal]
            why = sorted(
                {
                    kind
                    for _, u in over
                    for kind in u.wru_by_kind
                    if kind not in ("reservation", "booking", "guard", "event", "request")
                }
            )
            rows.append(
                [
                    f"{result['count']:,} x {units(result['length_s'])} s",
                    label,
                    len(usages),
                    result["failed"] if label == "no request id" else "",
                    _series(without_event),
                    _series(total),
                    len(over),
                    ", ".join(why) or "-",
                    max(u.rounds for u in usages) if usages else "-",
                    sum(u.rounds > 2 for u in usages),
                    f"{result['count'] / result['seconds']:.0f}" if label == "no request id" else "",
                ]
            )
    print("(b) one writer, back to back, resource defined with max_duration 1 h (1-hour guard slots)")
    table(
        [
            "run",
            "reserves",
            "made",
            "failed",
            "WRU w/o event: first / median / max",
            "WRU with event",
            "over goal",
            "over because of",
            "max rounds",
            "> 2 rounds",
            "reserves/s (moto)",
        ],
        rows,
    )
    print(
        f"goal: WRU <= {WRU_GOAL} per reserve, <= {WRU_GOAL_REQUEST_ID} with a request id, first to last. WRU: "
        "table + index entries; 'with event' adds the change event's item and its index entries. 'over because "
        "of': items written besides the reservation, booking, guard, request id and event (user / tenant: the "
        "longest-reservation record of a user's or the tenant's first, or longest yet, reservation). Rounds: 2 "
        "while the slot's guard lists its bookings (up to 8), 3 once it is dense (the bookings around the "
        "window are then read after the guard); the first reserve of a resource in a fresh process also reads "
        "again once it learns the resource's shape."
    )
    c = concurrent
    print(
        f"(c) {c['writers']} concurrent writers, disjoint hours of one resource (moto in process, one call at a "
        f"time): {c['made']} of {c['reserves']} made, {c['aborted']} aborted, {c['other_failures']} other "
        f"failures; {c['rounds_per_success']:.2f} rounds and {c['calls_per_success']:.2f} calls per success "
        f"(goal <= {ROUNDS_GOAL} rounds), {c['refused_transactions']} transactions refused and retried; "
        f"{c['made'] / c['seconds']:.0f} reserves/s on moto"
    )
    return {"runs": runs, "concurrent": concurrent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10_000, help="1-minute reservations back to back")
    parser.add_argument("--seconds", type=int, default=3_600, help="1-second reservations back to back")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=25)
    options = parser.parse_args()
    run(options.minutes, options.seconds, options.writers, options.per_writer)


if __name__ == "__main__":
    main()
