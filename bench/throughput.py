"""Reserve throughput through the local server (`make serve`, its embedded DynamoDB in a child process):
8 concurrent clients, each making `per-client` reserves of disjoint hours, on
  8 distinct resources   (undefined resources: nothing shared);
  1 hot resource         undefined: 5-day guard slots, so every writer meets the others on one guard;
  1 hot resource, 1-hour slots   defined with max_duration 1 h: writers of different hours touch
                         different guards.
The clients are rsvp.client.ReservationClient (Connect over HTTP), which retries ABORTED with the same
request id; calls that still fail are counted. Issue 10's goal: 8 distinct resources at least 5x v1's
20-30 reserves/s.

    python -m bench.throughput [--per-client 25]
"""

import argparse
import concurrent.futures
import datetime
import os
import threading
import time
import uuid

from harness.local_server import LocalServer
from rsvp.client import ReservationClient, ReservationError

CLIENTS = 8
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(root: int) -> dict:
    """CPU seconds used so far by the server (devserver.serve) and by its embedded DynamoDB child."""
    from .embedded import _processes

    used = {"server": 0.0, "embedded DynamoDB": 0.0}
    for pid in _processes(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                name = "embedded DynamoDB" if b"devserver.dynamodb" in cmdline.read() else "server"
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            used[name] += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError, ValueError):
            continue
    return used


def _burst(url: str, per_client: int, hot: bool, hot_resource: str = "") -> tuple:
    """(reservations made per second, calls failed) with CLIENTS threads of `per_client` disjoint reserves."""
    tag = uuid.uuid4().hex[:8]
    barrier = threading.Barrier(CLIENTS + 1)
    epoch = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)

    def client(number: int) -> int:
        resource = (hot_resource or f"hot-{tag}") if hot else f"room-{tag}-{number}"
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


def run(per_client: int = 25, server: LocalServer = None) -> dict:
    """On `server` if given (left running), else on a LocalServer of its own."""
    own = server is None
    server = server or LocalServer()
    try:
        before, clients_before = _cpu_seconds(server.process.pid), time.process_time()
        distinct, distinct_failed = _burst(server.url, per_client, hot=False)
        after, clients_after = _cpu_seconds(server.process.pid), time.process_time()
        made = CLIENTS * per_client - distinct_failed
        cpu_ms = {name: (after[name] - before[name]) * 1000 / max(1, made) for name in after}
        cpu_ms["clients (this process)"] = (clients_after - clients_before) * 1000 / max(1, made)
        hot, hot_failed = _burst(server.url, per_client, hot=True)
        sized_resource = f"hot-1h-{uuid.uuid4().hex[:6]}"
        ReservationClient(server.url).define_resource(sized_resource, max_duration=datetime.timedelta(hours=1))
        sized, sized_failed = _burst(server.url, per_client, hot=True, hot_resource=sized_resource)
    finally:
        if own:
            server.stop()
    print(f"reserve throughput through make serve, {CLIENTS} clients x {per_client} reserves of disjoint hours:")
    print(
        f"  8 distinct resources                      {distinct:5.0f}/s ({distinct_failed} failed)  "
        f"(goal >= 5 x v1's 20-30/s, i.e. >= 100-150/s)"
    )
    print(
        f"  1 hot resource, undefined (5-day slots)   {hot:5.0f}/s ({hot_failed} failed)  "
        f"ratio to distinct {hot / distinct:.2f}"
    )
    print(
        f"  1 hot resource, max_duration 1 h          {sized:5.0f}/s ({sized_failed} failed)  "
        f"ratio to distinct {sized / distinct:.2f}"
    )
    print("  (the embedded DynamoDB applies one call at a time, in its own process)")
    print(
        "  CPU per reserve during the distinct-resources run: "
        + ", ".join(f"{name} {value:.1f} ms" for name, value in cpu_ms.items())
        + f" ({os.cpu_count()} cores, shared)"
    )
    return {
        "distinct_per_second": distinct,
        "hot_per_second": hot,
        "sized_per_second": sized,
        "failed": distinct_failed + hot_failed + sized_failed,
        "cpu_ms": cpu_ms,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-client", type=int, default=25)
    run(parser.parse_args().per_client)
