"""Oracle stress over HTTP: client threads hammer a few hot resources through `make serve`.

Afterwards no two live reservations overlap, every acknowledged reserve is readable and every
acknowledged cancel gone, every rejection named a conflict that really existed, and the
consistency checker is clean. STRESS_OPERATIONS (per thread, default 500) sizes the run.
"""
import concurrent.futures
import datetime
import os
import random
import threading
import uuid

from rsvp import checker
from rsvp.client import ReservationClient, ReservationError

THREADS = 8
OPERATIONS = int(os.environ.get("STRESS_OPERATIONS", "500"))
EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)


class CountingClient(ReservationClient):
    """Counts HTTP attempts (all, and of the current call), so that client retries show up."""

    attempts = 0
    lock = threading.Lock()

    def _call(self, method, request, response_type):
        self.call_attempts = 0
        return super()._call(method, request, response_type)

    def _once(self, method, request, response_type):
        self.call_attempts += 1
        with CountingClient.lock:
            CountingClient.attempts += 1
        return super()._once(method, request, response_type)


def test_oracle_stress(local_server, capsys):
    tag = uuid.uuid4().hex[:6]
    resources = [f"hot-{tag}-{n}" for n in range(3)]
    ledger = {"reserved": {}, "cancelled": set(), "rejections": [], "lost cancel answers": 0}
    lock = threading.Lock()

    def worker(number: int) -> None:
        generator = random.Random(number)
        client = CountingClient(local_server.url)
        mine = []
        for _ in range(OPERATIONS):
            roll = generator.random()
            if roll < 0.55 or not mine:
                resource = generator.choice(resources)
                start = EPOCH + generator.randrange(0, 120) * HOUR
                end = start + generator.randrange(1, 6) * HOUR
                try:
                    made = client.reserve(resource, f"user{number}", start, end)
                except ReservationError as error:
                    assert error.code == "failed_precondition", error
                    with lock:
                        ledger["rejections"].append((resource, start, end, [c.id for c in error.conflicts]))
                    continue
                mine.append(made.id)
                with lock:
                    ledger["reserved"][made.id] = (resource, start, end)
            elif roll < 0.70:
                victim = mine.pop(generator.randrange(len(mine)))
                try:
                    client.cancel(victim)
                except ReservationError as error:
                    # only a retry whose first attempt's answer was lost may find it already gone
                    assert error.code == "not_found" and client.call_attempts > 1, error
                    with lock:
                        ledger["lost cancel answers"] += 1
                with lock:
                    ledger["cancelled"].add(victim)
            elif roll < 0.80:
                client.confirm(generator.choice(mine))
            elif roll < 0.90:
                client.update(generator.choice(mine), note=f"n{generator.randrange(100)}")
            else:
                list(client.query(resource_id=generator.choice(resources), page_size=50))

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(worker, number) for number in range(THREADS)]:
            future.result()

    reader = ReservationClient(local_server.url)
    live = {i: w for i, w in ledger["reserved"].items() if i not in ledger["cancelled"]}
    for reservation_id in ledger["cancelled"]:
        try:
            reader.get(reservation_id)
            raise AssertionError(f"cancelled {reservation_id} is still there")
        except ReservationError as error:
            assert error.code == "not_found"
    listed = {}
    for resource in resources:
        for found in reader.query(resource_id=resource, page_size=1000):
            listed[found.id] = found
    assert set(listed) == set(live), "live reservations differ from the acknowledged ones"
    for resource in resources:
        windows = sorted((w[1], w[2]) for w in live.values() if w[0] == resource)
        assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:])), f"overlap on {resource}"
    for resource, start, end, named in ledger["rejections"]:
        assert named, "a rejection named no conflict"
        for conflict_id in named:
            window = ledger["reserved"].get(conflict_id)
            assert window is not None, f"rejection named {conflict_id}, never acknowledged"
            assert window[0] == resource and window[1] < end and start < window[2]
    assert checker.check(local_server.dynamodb(), local_server.table) == []
    with capsys.disabled():
        print(f"\nstress: {THREADS} threads x {OPERATIONS} operations, {len(ledger['reserved'])} reserves won, "
              f"{len(ledger['rejections'])} conflicts, {len(ledger['cancelled'])} cancels, "
              f"{CountingClient.attempts} HTTP attempts ({ledger['lost cancel answers']} cancels retried after a "
              f"lost answer), {len(live)} live at the end")
