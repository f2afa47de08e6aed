"""Cost against history size: one resource holding 100 vs 100,000 reservations (issue 10).

The resource is undefined (the default shape: 5-day guard slots) and holds back-to-back one-hour
bookings, bulk-loaded into moto in process. Measured with the honest meter (harness.meter):

* a windowed Query page (filter): the 50 latest reservations of the window: items read per item
  returned (read amplification, what DynamoDB bills), rounds, RRU;
* a reserve in the guard slot after the history (the same items touched whatever the history):
  items read, rounds, RRU, WRU.

Both with their latency against the embedded DynamoDB (moto in process, patched by
devserver/moto_patches.py so that a call costs what it touches), the best of `repeats` calls: the
item counts are the cost figures, the latency ratios show that the local store stays flat too.

    python -m bench.scaling [--sizes 100 100000] [--repeats 5]
"""

import argparse
import time

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.layout import Shape
from chalicelib.runtime import default_api
from harness import bulk
from harness.meter import Meter
from harness.moto import TABLE, moto_table

from .common import (
    CONTEXT,
    HOUR_S,
    bookings,
    load_into_moto,
    measure,
    moto_images,
    reserve,
    table,
    timestamp,
    units,
)

START_S = 1_700_000_000 // HOUR_S * HOUR_S


def window_query(history: int, matches: int) -> pb.FilterRequest:
    """The `matches` latest 1-hour reservations of a resource that has `history` back to back."""
    first = START_S + (history - matches) * HOUR_S
    query = pb.QueryRequest(
        resource_id="room", start=timestamp(first + 1800), end=timestamp(START_S + history * HOUR_S), page_size=matches
    )
    return pb.FilterRequest(query=query)


def measure_history(history: int, matches: int, repeats: int) -> dict:
    with moto_table():
        load_into_moto(TABLE, bulk.items_of(bookings("room", history, START_S, HOUR_S, users=10)))
        api = default_api()
        request = window_query(history, matches)
        with Meter(api.reservations.store.client, images=moto_images()) as meter:
            queries = [measure(meter, lambda: api.filter(request, CONTEXT)) for _ in range(repeats)]
            returned = len(queries[-1].result.reservations)
            assert returned == matches, (returned, matches)
            # reserves in the 5-day guard slot after the history: the same items touched whatever the history
            slot = Shape().slot_ns // 10**9
            free = ((START_S + history * HOUR_S - 1) // slot + 1) * slot
            reserve(api, "room", "user0", free - 2 * HOUR_S, free - HOUR_S)  # warm: hint, user records
            reserves = [
                measure(
                    meter, lambda n=n: reserve(api, "room", "user0", free + 2 * n * HOUR_S, free + (2 * n + 1) * HOUR_S)
                )
                for n in range(repeats)
            ]
    query, made = queries[-1].usage, reserves[-1].usage
    return {
        "history": history,
        "returned": returned,
        "items_read": query.items_read,
        "rounds": query.rounds,
        "rru": query.rru,
        "amplification": query.items_read / returned,
        "latency_ms": min(m.wall_ms for m in queries),
        "reserve_items_read": made.items_read,
        "reserve_rounds": made.rounds,
        "reserve_rru": made.rru,
        "reserve_wru": made.wru,
        "reserve_ms": min(m.wall_ms for m in reserves),
    }


def run(sizes=(100, 100_000), matches: int = 50, repeats: int = 5) -> list:
    began = time.perf_counter()
    rows = [measure_history(size, matches, repeats) for size in sizes]
    table(
        [
            "history",
            "Query: returned",
            "read",
            "rounds",
            "ampl.",
            "RRU",
            "ms (moto)",
            "Reserve: read",
            "rounds",
            "RRU",
            "WRU",
            "ms (moto)",
        ],
        [
            [
                f"{r['history']:,}",
                r["returned"],
                r["items_read"],
                r["rounds"],
                f"{r['amplification']:.2f}",
                units(r["rru"]),
                f"{r['latency_ms']:.1f}",
                r["reserve_items_read"],
                r["reserve_rounds"],
                units(r["reserve_rru"]),
                units(r["reserve_wru"]),
                f"{r['reserve_ms']:.1f}",
            ]
            for r in rows
        ],
    )
    first, last = rows[0], rows[-1]
    last.update(
        amplification_ratio=last["amplification"] / first["amplification"],
        reserve_items_ratio=last["reserve_items_read"] / max(1, first["reserve_items_read"]),
        query_latency_ratio=last["latency_ms"] / first["latency_ms"],
        reserve_latency_ratio=last["reserve_ms"] / first["reserve_ms"],
    )
    print(
        f"ratio {last['history']:,} / {first['history']:,}: Query read amplification "
        f"{last['amplification_ratio']:.2f}, Reserve items read {last['reserve_items_ratio']:.2f}; embedded "
        f"DynamoDB (moto in process) latency: Query {last['query_latency_ratio']:.2f}x, Reserve "
        f"{last['reserve_latency_ratio']:.2f}x (best of {repeats}, the least disturbed by the machine's other "
        f"work; the bench took "
        f"{time.perf_counter() - began:.0f} s, most of it loading)"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 100_000], help="history sizes")
    parser.add_argument("--matches", type=int, default=50, help="reservations in the window (page size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (the best counts)")
    options = parser.parse_args()
    run(options.sizes, options.matches, options.repeats)


if __name__ == "__main__":
    main()
