"""Shared helpers of the unit layer: a controllable clock, instants, a small facade over the rule modules.

Everything runs against harness.fake_store.FakeStore, in memory.
"""

import contextlib
import dataclasses
import datetime
import re

import pytest

from chalicelib.errors import Code, ServiceError
from chalicelib.model import (
    DAY_NS,
    HOUR_NS,
    MINUTE_NS,
    NANOS_PER_SECOND,
    Caller,
    Reservation,
    Resource,
    Status,
)
from chalicelib.ports import Scope, WritePlan
from chalicelib.query import QuerySpec, run_query

S = NANOS_PER_SECOND
M = MINUTE_NS
H = HOUR_NS
D = DAY_NS
# what a random workload's calls may be refused with: anything else (aborted, unavailable, internal) is a bug
RANDOM_WORK_REFUSALS = (Code.FAILED_PRECONDITION, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.INVALID_ARGUMENT)
TICK_NS = 1000  # every clock reading moves time on by 1 µs, so that change events get distinct times


def utc(year, month, day, hour=0, minute=0, second=0) -> int:
    """An instant (ns since the epoch) of a UTC wall time."""
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    return int(moment.timestamp()) * S


NOW = utc(2026, 12, 1)  # where the clock starts
DAY = utc(2026, 12, 2)  # the day most tests book on: a plain UTC day, after NOW


def at(hours=0.0, minutes=0.0) -> int:
    """An instant on DAY: at(10) is 2026-12-02T10:00Z, at(10, 30) 10:30."""
    return DAY + int(hours * H) + int(minutes * M)


class FakeClock:
    """Integer nanoseconds; each reading returns `now`, then moves it on by `tick`."""

    def __init__(self, start: int, tick: int = TICK_NS):
        self.now = start
        self.tick = tick

    def __call__(self) -> int:
        value = self.now
        self.now += self.tick
        return value

    def set(self, instant: int) -> None:
        """The next reading returns exactly `instant`."""
        self.now = instant

    def advance(self, duration: int) -> None:
        self.now += duration


@contextlib.contextmanager
def raises_code(code: Code, *patterns: str):
    """Expect a ServiceError with `code` whose message matches every regex in `patterns`."""
    with pytest.raises(ServiceError) as info:
        yield info
    error = info.value
    assert error.code is code, f"expected {code}, got {error.code}: {error.message}"
    for pattern in patterns:
        assert re.search(pattern, error.message), f"{pattern!r} not in {error.message!r}"


class World:
    """The service over one fake store and one fake clock, with short names for what tests do often."""

    def __init__(self, api, store, clock):
        self.api = api
        self.store = store
        self.clock = clock
        self.service = api.reservations
        self.resources = api.resources
        self.feed = api.feed
        self.availability = api.availability_service

    # ---- reservations --------------------------------------------------------------------------

    def reserve(
        self,
        resource="room-1",
        start=None,
        end=None,
        user="alice",
        status=Status.CONFIRMED,
        note="",
        units=0,
        request_id="",
        hold_for=None,
        caller=None,
        tenant=None,
    ) -> Reservation:
        start = at(10) if start is None else start
        end = start + H if end is None else end
        caller = caller or Caller(tenant or "default")
        draft = Reservation("", user, resource, status, start, end, note, units)
        return self.service.reserve(caller, draft, request_id, hold_for)

    def hold(self, resource="room-1", start=None, end=None, hold_for=5 * M, **kwargs) -> Reservation:
        return self.reserve(resource, start, end, status=Status.PENDING, hold_for=hold_for, **kwargs)

    def get(self, reservation_id, tenant="default", caller=None) -> Reservation:
        return self.service.get(caller or Caller(tenant), reservation_id)

    def confirm(self, reservation_id, tenant="default", caller=None) -> Reservation:
        return self.service.confirm(caller or Caller(tenant), reservation_id)

    def update(self, reservation_id, status=Status.UNKNOWN, note=None, tenant="default", caller=None):
        return self.service.update(caller or Caller(tenant), reservation_id, status, note)

    def cancel(self, reservation_id, tenant="default", caller=None) -> Reservation:
        return self.service.cancel(caller or Caller(tenant), reservation_id)

    def reschedule(self, reservation_id, start, end, resource_id="", tenant="default", caller=None):
        return self.service.reschedule(caller or Caller(tenant), reservation_id, start, end, resource_id)

    def stored(self, resource="room-1", tenant="default") -> list:
        """The reservations the store holds for a resource, in start order (as stored, not as seen)."""
        return [b.reservation for b in self.store.bookings_of_resource(tenant, resource)]

    def exists(self, reservation_id, tenant="default") -> bool:
        return self.store.get(tenant, reservation_id) is not None

    # ---- resources -----------------------------------------------------------------------------

    def define(self, resource_id, tenant="default", **rules) -> Resource:
        return self.resources.define(tenant, Resource(resource_id, **rules))

    # ---- reads ---------------------------------------------------------------------------------

    def query(self, tenant="default", **spec):
        return run_query(self.store, QuerySpec(tenant, **spec), self.clock(), self.service.pool_lookback)

    def query_all(self, tenant="default", **spec) -> list:
        """Every match, walking all pages."""
        found, token = [], ""
        while True:
            page = self.query(tenant, page_token=token, **spec)
            found += page.reservations
            token = page.next_page_token
            if not token:
                return found

    def changes(self, scope=None, after="", page_size=1000):
        return self.feed.changes(scope or Scope("default"), after, page_size)

    def events(self, scope=None) -> list:
        """Every retained event of a scope, walking all pages."""
        found, cursor = [], ""
        while True:
            page = self.changes(scope, cursor, 1000)
            found += [event for event, _ in page.events]
            if not page.events:
                return found
            cursor = page.cursor

    def kinds(self, scope=None) -> list:
        return [event.kind.name for event in self.events(scope)]


def seed(store, tenant: str, bookings: list) -> None:
    """Store bookings directly (fixture data for read paths), in transactions of the allowed size."""
    for first in range(0, len(bookings), 40):
        store.commit(WritePlan(tenant, create=list(bookings[first : first + 40])))


def replace(reservation, **changes):
    return dataclasses.replace(reservation, **changes)
