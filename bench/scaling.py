"""Cost against history size: one resource holding 100 vs 100,000 reservations.

For a windowed Query page: items read per item returned (read amplification,
what DynamoDB bills). For Reserve: round trips and items read. Both with
their latency against the embedded DynamoDB (moto in process, patched by
devserver/moto_patches.py so that a call costs what it touches): the item
counts are the cost figures, the latency ratios show that the local store
stays flat too.

    python -m bench.scaling [--sizes 100 100000] [--repeats 5]

Latencies are the best of the repeats (as timeit reports): on a shared, busy machine the
median of a few runs moves by 2x from one minute to the next, the best one does not.
"""
import argparse
import time

from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from chalicelib.slots import SLOT_NS, slot_of
from devserver import bulk
from tests.conftest import TABLE, moto_table

from .reads import CallCounter

HOUR_NS = 3600 * 10**9
START_NS = 1_700_000_000 * 10**9


def window_query(history: int, matches: int):
    """The `matches` latest 1-hour reservations of a resource that has `history` back to back."""
    first = START_NS + (history - matches) * HOUR_NS
    query = pb.QueryRequest(resource_id="room", start=Timestamp(seconds=first // 10**9 + 1800),
                            end=Timestamp(seconds=(START_NS + history * HOUR_NS) // 10**9), page_size=matches)
    return pb.FilterRequest(query=query)


def measure(history: int, matches: int, repeats: int) -> dict:
    with moto_table() as client:
        bulk.load(client, TABLE, bulk.back_to_back("room", history, START_NS, HOUR_NS))
        api = default_api()
        request = window_query(history, matches)
        latencies = []
        with CallCounter(api.service.store.client) as counter:
            for _ in range(repeats):
                counter.reset()
                began = time.perf_counter()
                answer = api.filter(request)
                latencies.append(time.perf_counter() - began)
            returned = len(answer.reservations)
            assert returned == matches, (returned, matches)
            row = {"history": history, "returned": returned, "items_read": counter.items_read,
                   "round_trips": counter.round_trips, "amplification": counter.items_read / returned,
                   "latency_ms": min(latencies) * 1000}
            # Reserves in the slot after the history: the same items touched (a slot holding only
            # these claims) whatever the history, so that only the size of the table differs.
            free_ns = (slot_of(START_NS + history * HOUR_NS - 1) + 1) * SLOT_NS
            reserve_latencies = []
            for n in range(repeats):
                counter.reset()
                start = Timestamp(seconds=(free_ns + 2 * n * HOUR_NS) // 10**9)
                end = Timestamp(seconds=start.seconds + 3600)
                began = time.perf_counter()
                api.reserve(pb.ReserveRequest(reservation=pb.Reservation(
                    user_id="user0", resource_id="room", start=start, end=end)))
                reserve_latencies.append(time.perf_counter() - began)
            row.update(reserve_round_trips=counter.round_trips, reserve_items_read=counter.items_read,
                       reserve_ms=min(reserve_latencies) * 1000)
            return row


def run(sizes=(100, 100_000), matches: int = 50, repeats: int = 5) -> list:
    rows = [measure(size, matches, repeats) for size in sizes]
    print(f"{'history':>9} | Query: {'returned':>8} {'read':>5} {'trips':>5} {'ampl.':>5} {'ms (moto)':>9} "
          f"| Reserve: {'read':>4} {'trips':>5} {'ms (moto)':>9}")
    for row in rows:
        print(f"{row['history']:>9} |        {row['returned']:>8} {row['items_read']:>5} {row['round_trips']:>5} "
              f"{row['amplification']:>5.2f} {row['latency_ms']:>9.1f} |          {row['reserve_items_read']:>4} "
              f"{row['reserve_round_trips']:>5} {row['reserve_ms']:>9.1f}")
    first, last = rows[0], rows[-1]
    last.update(amplification_ratio=last["amplification"] / first["amplification"],
                reserve_items_ratio=last["reserve_items_read"] / max(1, first["reserve_items_read"]),
                query_latency_ratio=last["latency_ms"] / first["latency_ms"],
                reserve_latency_ratio=last["reserve_ms"] / first["reserve_ms"])
    print(f"ratio {last['history']} / {first['history']}: Query read amplification {last['amplification_ratio']:.2f}, "
          f"Reserve items read {last['reserve_items_ratio']:.2f}; embedded DynamoDB (moto) latency: "
          f"Query {last['query_latency_ratio']:.2f}x, Reserve {last['reserve_latency_ratio']:.2f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 100_000], help="history sizes")
    parser.add_argument("--matches", type=int, default=50, help="reservations in the window (page size)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (the best one counts)")
    options = parser.parse_args()
    run(options.sizes, options.matches, options.repeats)


if __name__ == "__main__":
    main()
