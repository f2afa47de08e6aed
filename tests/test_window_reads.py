"""availability and find_slots on DynamoDB read what the window holds, not the resource's history."""

import pytest

from chalicelib.api import CallContext
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from harness import bulk
from harness.meter import CallCounter
from harness.moto import TABLE, moto_table
from tests.helpers import BASE_TIME, stamp

HOUR_NS = 3600 * 10**9
HISTORY = 2000  # one-hour bookings, one every other hour


@pytest.fixture(scope="module")
def history():
    with moto_table() as dynamodb:
        start = int(BASE_TIME.timestamp()) * 10**9
        bookings = bulk.back_to_back("busy", 2 * HISTORY, start, HOUR_NS)[::2]
        bulk.load(dynamodb, TABLE, bulk.items_of(bookings))
        yield


@pytest.mark.parametrize(
    "first_hour,hours",
    [(2 * HISTORY - 40, 40), (2 * HISTORY - 24, 48), (1000, 24), (1000, 1000), (0, 10)],
    ids=["the latest 20", "the latest 12 and after", "a day of the past", "1,000 hours of the past", "the first 5"],
)
def test_availability_reads_about_what_the_window_holds(history, first_hour, hours):
    window = dict(start=stamp(first_hour * 60), end=stamp((first_hour + hours) * 60))
    held = [hour for hour in range(first_hour, first_hour + hours) if hour % 2 == 0 and hour < 2 * HISTORY]
    with CallCounter(default_api().reservations.store.client) as counter:
        answer = default_api().availability(pb.AvailabilityRequest(resource_ids=["busy"], **window), CallContext())
    (resource,) = answer.resources
    assert [(interval.start, interval.end) for interval in resource.busy] == [
        (stamp(hour * 60), stamp((hour + 1) * 60)) for hour in held
    ]
    assert counter.items_read <= 1.25 * len(held) + 8, (len(held), counter.items_read)
    # the definition, then one page when the window holds a day's dozen, at most two pages otherwise
    assert counter.round_trips <= (2 if len(held) <= 12 else 3), dict(counter.calls)


def test_find_slots_over_a_busy_past_reads_about_what_the_window_holds(history):
    window = dict(start=stamp((2 * HISTORY - 48) * 60), end=stamp(2 * HISTORY * 60))
    with CallCounter(default_api().reservations.store.client) as counter:
        answer = default_api().find_slots(
            pb.FindSlotsRequest(resource_ids=["busy"], duration={"seconds": 3600}, limit=1000, **window),
            CallContext(),
        )
    assert [slot.start for slot in answer.slots] == [
        stamp(hour * 60) for hour in range(2 * HISTORY - 47, 2 * HISTORY, 2)
    ]
    assert counter.items_read <= 1.25 * 24 + 8, counter.items_read
