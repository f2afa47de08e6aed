"""Issue 16: availability and find_slots over 1 / 10 / 100 resources x 1 day / 1 week.

100 resources defined with max_duration 1 h (1-hour guard slots) and a label, each holding six
one-hour bookings a day (08:00, 10:00, ... 18:00 UTC) for two weeks, bulk-loaded into moto in
process; the windows start after the first week (a day: 6 bookings per resource; a week: 42).
Each call names its resources by id (the last rows: by label, through the resources index)
and is measured warm (made once before, unmetered) with the honest meter (harness.meter):
calls, sequential rounds (calls overlapping in time count as one), waves (the calls on the critical
path, given the 100 threads the store runs calls on: more than the rounds when a round holds more calls
than that, or a resource's read needs a second page; the order in which this machine's threads took
the tasks can move it by one or two), the most calls in flight at once, the bookings the window
holds and the items read, RRU, and $ per million calls. Handler time: the median of repeated calls
with every DynamoDB answer replayed from a recording of the measured call (bench.common.Recording):
the service's and botocore's own work, no DynamoDB wait.
find_slots asks for 1-hour slots, 100 per page. Goal: at most 2 sequential rounds for 100 resources x
1 day, RRU proportional to what the window holds.

    python -m bench.availability [--counts 1 10 100]
"""

import argparse

from chalicelib import layout
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import HOUR_NS, Resource
from chalicelib.runtime import default_api
from harness import bulk
from harness.meter import PRICES, Meter
from harness.moto import TABLE, moto_table

from .common import (
    CONTEXT,
    DAY_S,
    HOUR_S,
    Recording,
    bookings,
    define,
    load_into_moto,
    measure,
    median,
    moto_images,
    table,
    time_calls,
    timestamp,
    units,
)

BASE = 1_900_800_000  # a UTC midnight
DAYS = 14
PER_DAY = 6
HISTORY_DAYS = 7  # the window starts after a week of bookings: reads must not follow the history
ROUNDS_GOAL = 2


def _populate(api, count: int) -> None:
    items = []
    shape = layout.shape_for(Resource("x", max_duration_ns=HOUR_NS))
    for number in range(count):
        resource_id = f"room-{number:03}"
        define(api, resource_id, max_duration=HOUR_S, labels={"site": "hq"})
        for day in range(DAYS):
            for slot in range(PER_DAY):
                start = BASE + day * DAY_S + (8 + 2 * slot) * HOUR_S
                items += bulk.items_of(bookings(resource_id, 1, start, HOUR_S, user_prefix=f"u{number}-"), shape)
    load_into_moto(TABLE, items)


def _calls(api, count: int, days: int, labelled: bool = False) -> dict:
    window = dict(start=timestamp(BASE + HISTORY_DAYS * DAY_S), end=timestamp(BASE + (HISTORY_DAYS + days) * DAY_S))
    named = dict(labels={"site": "hq"}) if labelled else dict(resource_ids=[f"room-{n:03}" for n in range(count)])
    return {
        "availability": lambda: api.availability(pb.AvailabilityRequest(**named, **window), CONTEXT),
        "find_slots": lambda: api.find_slots(
            pb.FindSlotsRequest(**named, **window, duration={"seconds": HOUR_S}, limit=100), CONTEXT
        ),
    }


def run(counts=(1, 10, 100), timed_calls: int = 10) -> list:
    results = []
    with moto_table():
        api = default_api()
        _populate(api, max(counts))
        plans = [(count, days, False) for count in counts for days in (1, 7)] + [(max(counts), 1, True)]
        client = api.reservations.store.client
        recording = Recording(client)
        with Meter(client, images=moto_images()) as meter:
            for count, days, labelled in plans:
                for rpc, call in _calls(api, count, days, labelled).items():
                    call()  # warm-up
                    measured = measure(meter, call)
                    with recording.recording():
                        call()
                    answer = measured.result
                    returned = len(answer.resources) if rpc == "availability" else len(answer.slots)
                    results.append(
                        {
                            "rpc": rpc,
                            "resources": count,
                            "days": days,
                            "labelled": labelled,
                            "returned": returned,
                            "measured": measured,
                            "call": call,
                        }
                    )
        with recording.replaying():
            for result in results:
                result["handler_ms"] = (
                    median(time_calls(result.pop("call"), 200, budget_s=1.0, at_least=timed_calls)) * 1000
                )
                result["measured"].handler_ms = result["handler_ms"]
    rows = []
    for r in results:
        u, m = r["measured"].usage, r["measured"]
        named = "by label" if r["labelled"] else "by id"
        rows.append(
            [
                r["rpc"],
                f"{r['resources']} x {r['days']} day{'s' if r['days'] > 1 else ''} ({named})",
                r["returned"],
                u.calls,
                u.rounds,
                u.waves,
                u.max_in_flight,
                f"{r['resources'] * r['days'] * PER_DAY:,}",
                f"{u.items_read:,}",
                units(u.rru),
                f"{r['handler_ms']:.1f}",
                f"{u.modelled_ms:.0f}",
                f"{m.usd_per_million:.2f}",
            ]
        )
    table(
        [
            "rpc",
            "resources x window",
            "answered",
            "calls",
            "rounds",
            "waves",
            "in flight",
            "in window",
            "read",
            "RRU",
            "handler ms",
            "DynamoDB ms (modelled)",
            "$/M calls",
        ],
        rows,
    )
    print(
        f"each resource holds {PER_DAY} one-hour bookings a day, the window starts after {HISTORY_DAYS} days of them; "
        f"goal: <= {ROUNDS_GOAL} rounds for 100 resources x 1 day. 'answered': resources (availability) or slots (find_slots, 100 per page). Prices: {PRICES}"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    run(tuple(parser.parse_args().counts))


if __name__ == "__main__":
    main()
