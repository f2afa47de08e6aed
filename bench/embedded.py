"""The embedded DynamoDB through `make serve` (devserver.serve and its DynamoDB child process):
reserve and get p50 on an empty table and with many reservations loaded, memory (RSS of the server
and of its embedded DynamoDB) over N reserves, reserve throughput meanwhile, and how long a
stopped server takes to exit.

    python -m bench.embedded [--loaded 100000] [--reserves 10000] [--samples 200]

The loaded table is filled with harness/bulk.py (BatchWriteItem, no transactions), 100
back-to-back hours per resource; the timed reserves have the same shape in both phases (20
resources, one hour after the other), so only the size of the table differs.
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
EPOCH = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
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


def _timed_reserves_and_gets(url: str, phase: str, samples: int, known_ids: list) -> dict:
    """`samples` reserves one after the other (20 resources, consecutive hours), then `samples` gets."""
    client, made, reserve_s, get_s = ReservationClient(url), [], [], []
    for n in range(samples):
        start = EPOCH + (n // 20) * HOUR
        began = time.perf_counter()
        made.append(client.reserve(f"timed-{phase}-{n % 20}", f"user-{n % 20}", start, start + HOUR).id)
        reserve_s.append(time.perf_counter() - began)
    chance = random.Random(samples)
    for n in range(samples):
        reservation_id = chance.choice(known_ids) if known_ids else made[n]
        began = time.perf_counter()
        client.get(reservation_id)
        get_s.append(time.perf_counter() - began)
    return {"reserve_ms": _p50_ms(reserve_s), "get_ms": _p50_ms(get_s)}


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
            reservations = bulk.back_to_back(resource, size, LOAD_EPOCH_NS, 3600 * 10**9, users=10)
            bulk.load(dynamodb, server.table, bulk.items_of(reservations))
            ids += [booking.reservation.id for booking in reservations]
        return ids

    with concurrent.futures.ThreadPoolExecutor(LOADERS) as pool:
        return [reservation_id for ids in pool.map(loader, range(LOADERS)) for reservation_id in ids]


def run(loaded: int = 100_000, reserves: int = 10_000, samples: int = 200) -> dict:
    server = LocalServer()
    try:
        pid = server.process.pid
        rss_start = rss_mib(pid)
        empty = _timed_reserves_and_gets(server.url, "empty", samples, [])
        per_second = _reserve_burst(server.url, reserves)
        rss_after = rss_mib(pid)
        began = time.perf_counter()
        ids = _load(server, loaded)
        load_s = time.perf_counter() - began
        full = _timed_reserves_and_gets(server.url, "loaded", samples, ids)
        rss_loaded = rss_mib(pid)
        server.process.send_signal(signal.SIGTERM)
        began = time.perf_counter()
        server.process.wait(timeout=60)
        stop_s = time.perf_counter() - began
    finally:
        server.stop()
    result = {"empty": empty, "loaded": full, "rss_start_mib": rss_start, "rss_after_reserves_mib": rss_after,
              "rss_growth_mib": rss_after - rss_start, "rss_loaded_mib": rss_loaded, "reserves": reserves,
              "reserves_per_second": per_second, "load_seconds": load_s, "stop_seconds": stop_s,
              "reserve_ratio": full["reserve_ms"] / empty["reserve_ms"], "get_ratio": full["get_ms"] / empty["get_ms"]}
    print(f"{'table':>22} | {'reserve p50 ms':>14} | {'get p50 ms':>10}")
    print(f"{'empty':>22} | {empty['reserve_ms']:>14.1f} | {empty['get_ms']:>10.1f}")
    print(f"{f'{loaded:,} loaded':>22} | {full['reserve_ms']:>14.1f} | {full['get_ms']:>10.1f}")
    print(f"ratio loaded / empty: reserve {result['reserve_ratio']:.2f}, get {result['get_ratio']:.2f} (goal <= 1.5); "
          f"loading took {load_s:.0f} s")
    print(f"RSS (server + embedded DynamoDB): {rss_start:.0f} MiB at start, {rss_after:.0f} MiB after {reserves:,} "
          f"reserves (+{result['rss_growth_mib']:.0f} MiB, goal <= 150; {per_second:.0f} reserves/s by {CLIENTS} "
          f"clients), {rss_loaded:.0f} MiB with {loaded:,} more loaded")
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
