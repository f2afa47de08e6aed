"""The embedded DynamoDB through `make serve` (devserver.serve and its DynamoDB child process):
memory (RSS of the server and of its embedded DynamoDB) over N reserves and the throughput
meanwhile, reserve and get p50 with many reservations loaded against a fresh server's empty
table, and how long a stopped server takes to exit.

    python -m bench.embedded [--loaded 100000] [--reserves 10000] [--samples 200]

The loaded table is filled with harness/bulk.py (BatchWriteItem, no transactions), 100
back-to-back hours per resource. The timed reserves have the same shape on both servers (20
resources, one hour after the other) and alternate between them call by call, so that only
the size of the table differs, not the load of the machine.
"""

import argparse
import concurrent.futures
import datetime
import os
import random
import signal
import statistics
import time
import uuid

from harness import bulk
from harness.local_server import LocalServer
from rsvp.client import ReservationClient

CLIENTS = 8
HOUR = datetime.timedelta(hours=1)
EPOCH = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
LOAD_EPOCH_NS = 1_900_000_000 * 10**9
PER_LOADED_RESOURCE = 100


def _processes(root: int) -> list:
    """The server and every process under it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(root: int) -> float:
    """RSS of the server and its embedded DynamoDB, MiB."""
    return sum(_rss_mib(pid) for pid in _processes(root))


def _p50_ms(latencies: list) -> float:
    return statistics.median(latencies) * 1000


def _timed(servers: dict, samples: int, known_ids: dict) -> dict:
    """Per server: p50 of `samples` reserves (20 resources, consecutive hours), then of `samples` gets.

    The servers take turns, call by call, so that a busy machine slows them alike.
    """
    clients = {name: ReservationClient(url) for name, url in servers.items()}
    for client in clients.values():  # untimed: a fresh server's first calls set up its clients and caches
        for n in range(10):
            start = EPOCH + n * HOUR
            client.get(client.reserve("warm-up", "warm-up", start, start + HOUR).id)
    made = {name: [] for name in servers}
    reserve_s, get_s = {name: [] for name in servers}, {name: [] for name in servers}
    for n in range(samples):
        start = EPOCH + (n // 20) * HOUR
        for name, client in clients.items():
            began = time.perf_counter()
            made[name].append(client.reserve(f"timed-{n % 20}", f"user-{n % 20}", start, start + HOUR).id)
            reserve_s[name].append(time.perf_counter() - began)
    chance = random.Random(samples)
    for n in range(samples):
        for name, client in clients.items():
            reservation_id = chance.choice(known_ids[name]) if known_ids.get(name) else made[name][n]
            began = time.perf_counter()
            client.get(reservation_id)
            get_s[name].append(time.perf_counter() - began)
    return {name: {"reserve_ms": _p50_ms(reserve_s[name]), "get_ms": _p50_ms(get_s[name])} for name in servers}


def _reserve_burst(url: str, count: int) -> float:
    """`count` reserves by CLIENTS concurrent clients on distinct resources; reserves per second."""
    tag, per_client = uuid.uuid4().hex[:8], max(1, count // CLIENTS)

    def one_client(number: int) -> None:
        client = ReservationClient(url)
        for n in range(per_client):
            start = EPOCH + n * HOUR
            client.reserve(f"burst-{tag}-{number}", f"burst-{number}", start, start + HOUR)

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one_client, range(CLIENTS)))
    return CLIENTS * per_client / (time.perf_counter() - began)


LOADERS = 4  # clients loading at once: their botocore work overlaps the server's


def _load(server: LocalServer, count: int) -> list:
    """Bulk-load `count` reservations (100 back to back per resource); returns their ids."""
    starts = list(range(0, count, PER_LOADED_RESOURCE))

    def loader(number: int) -> list:
        dynamodb, ids = server.dynamodb(), []
        for first in starts[number::LOADERS]:
            resource, size = f"loaded-{first // PER_LOADED_RESOURCE}", min(PER_LOADED_RESOURCE, count - first)
            bookings = bulk.back_to_back(resource, size, LOAD_EPOCH_NS, 3600 * 10**9, users=10)
            bulk.load(dynamodb, server.table, bulk.items_of(bookings))
            ids += [booking.reservation.id for booking in bookings]
        return ids

    with concurrent.futures.ThreadPoolExecutor(LOADERS) as pool:
        return [reservation_id for ids in pool.map(loader, range(LOADERS)) for reservation_id in ids]


def _items(server: LocalServer) -> int:
    """How many items the embedded table holds (a COUNT scan)."""
    dynamodb, count, arguments = server.dynamodb(), 0, {"TableName": server.table, "Select": "COUNT"}
    while True:
        answer = dynamodb.scan(**arguments)
        count += answer["Count"]
        if "LastEvaluatedKey" not in answer:
            return count
        arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def run(loaded: int = 100_000, reserves: int = 10_000, samples: int = 200) -> dict:
    server, fresh = LocalServer(), None
    try:
        pid = server.process.pid
        rss_start, items_start = rss_mib(pid), _items(server)
        per_second = _reserve_burst(server.url, reserves)
        rss_after, items_after = rss_mib(pid), _items(server)
        began = time.perf_counter()
        ids = _load(server, loaded)
        load_s = time.perf_counter() - began
        fresh = LocalServer()  # the empty table to compare with, timed in turns with the loaded one
        timed = _timed({"empty": fresh.url, "loaded": server.url}, samples, {"loaded": ids})
        empty, full = timed["empty"], timed["loaded"]
        rss_loaded = rss_mib(pid)
        server.process.send_signal(signal.SIGTERM)
        began = time.perf_counter()
        server.process.wait(timeout=60)
        stop_s = time.perf_counter() - began
    finally:
        server.stop()
        if fresh is not None:
            fresh.stop()
    result = {
        "empty": empty,
        "loaded": full,
        "rss_start_mib": rss_start,
        "rss_after_reserves_mib": rss_after,
        "rss_growth_mib": rss_after - rss_start,
        "rss_loaded_mib": rss_loaded,
        "reserves": reserves,
        "items_written": items_after - items_start,
        "reserves_per_second": per_second,
        "load_seconds": load_s,
        "stop_seconds": stop_s,
        "reserve_ratio": full["reserve_ms"] / empty["reserve_ms"],
        "get_ratio": full["get_ms"] / empty["get_ms"],
    }
    print(f"{'table':>22} | {'reserve p50 ms':>14} | {'get p50 ms':>10}")
    print(f"{'empty':>22} | {empty['reserve_ms']:>14.1f} | {empty['get_ms']:>10.1f}")
    print(f"{f'{loaded:,} loaded':>22} | {full['reserve_ms']:>14.1f} | {full['get_ms']:>10.1f}")
    print(
        f"ratio loaded / empty: reserve {result['reserve_ratio']:.2f}, get {result['get_ratio']:.2f} (goal <= 1.5); "
        f"loading took {load_s:.0f} s"
    )
    print(
        f"RSS (server + embedded DynamoDB): {rss_start:.0f} MiB at start, {rss_after:.0f} MiB after {reserves:,} "
        f"reserves (+{result['rss_growth_mib']:.0f} MiB, goal <= 150; {per_second:.0f} reserves/s by {CLIENTS} "
        f"clients), {rss_loaded:.0f} MiB with {loaded:,} more loaded"
    )
    added = result["items_written"]
    print(
        f"the {reserves:,} reserves left {added:,} more items in the table (reservation, booking, change event, request id, "
        f"guards, user records): {result['rss_growth_mib'] * 1024 / max(1, added):.1f} KiB of RSS per item held"
    )
    print(f"stopped (SIGTERM) with everything loaded: exited in {stop_s:.2f} s (goal <= 5)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loaded", type=int, default=100_000, help="reservations bulk-loaded for the loaded phase")
    parser.add_argument("--reserves", type=int, default=10_000, help="reserves made while watching memory")
    parser.add_argument("--samples", type=int, default=200, help="timed reserves (and gets) per phase")
    options = parser.parse_args()
    run(options.loaded, options.reserves, options.samples)


if __name__ == "__main__":
    main()
