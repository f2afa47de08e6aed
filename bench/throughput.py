"""Reserve throughput through the local server (`make serve`): 8 concurrent clients on one hot
resource (every write meets the others on the same slot item) vs on 8 distinct resources.
The clients are rsvp.client.ReservationClient, which retries ABORTED with the same request id;
calls that still fail are counted.

    python -m bench.throughput [--per-client 10]
"""
import argparse
import concurrent.futures
import threading
import time
import uuid

import datetime

from rsvp.client import ReservationClient, ReservationError
from harness.local_server import LocalServer

CLIENTS = 8


def _burst(url: str, per_client: int, hot: bool) -> tuple:
    """(reservations made per second, calls failed) with CLIENTS threads of `per_client` disjoint reserves."""
    tag = uuid.uuid4().hex[:8]
    barrier = threading.Barrier(CLIENTS + 1)
    epoch = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)

    def client(number: int) -> int:
        resource = f"hot-{tag}" if hot else f"room-{tag}-{number}"
        connection, failed = ReservationClient(url), 0
        barrier.wait()
        for n in range(per_client):
            start = epoch + datetime.timedelta(hours=number * per_client + n)
            try:
                connection.reserve(resource, f"u{number}", start, start + datetime.timedelta(hours=1))
            except ReservationError:
                failed += 1
        return failed

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, number) for number in range(CLIENTS)]
        barrier.wait()
        began = time.perf_counter()
        failed = sum(future.result() for future in futures)
    return (CLIENTS * per_client - failed) / (time.perf_counter() - began), failed


def run(per_client: int = 10) -> dict:
    server = LocalServer()
    try:
        distinct, distinct_failed = _burst(server.url, per_client, hot=False)
        hot, hot_failed = _burst(server.url, per_client, hot=True)
    finally:
        server.stop()
    print(f"reserve throughput, {CLIENTS} clients x {per_client}: 8 distinct resources {distinct:.0f}/s "
          f"({distinct_failed} failed), 1 hot resource {hot:.0f}/s ({hot_failed} failed), ratio {hot / distinct:.2f}; "
          "the local server applies one DynamoDB call at a time")
    return {"distinct_per_second": distinct, "hot_per_second": hot, "failed": distinct_failed + hot_failed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-client", type=int, default=10)
    run(parser.parse_args().per_client)
