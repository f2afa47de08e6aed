"""Consistency checker: reads the whole table and reports every broken invariant.

    python -m ops.checker --table my-reservation-prod [--endpoint-url URL]

Exit status 0 when the table is consistent, 1 with one line per violation.
Every item is decoded through chalicelib.layout. What it checks:

* twin: every reservation item has its booking in its resource's partition
  with the same fields and revision, and every booking its reservation item;
* tenant: an item's keys, index keys and fields all name the same tenant and
  resource (nothing of one tenant is reachable from another);
* overlap: two bookings of an exclusive resource whose padded windows
  overlap (expired holds included: whoever takes their time removes them);
* guard: a booking of an exclusive resource that a guard of its slots does
  not list or lists with another window (unless that guard is dense: its list
  is no longer kept), or a guard listing a live reservation that does not exist;
* capacity: a pool cell whose bookings take more units than its bucket's
  capacity, or whose counter differs from the units of its bookings;
* index: a booking whose index keys (uk, tk, start_key, hold keys) disagree
  with its fields, or that an index does not return (on AWS the indexes lag
  writes by a moment: run it twice before acting);
* short lookback: a reservation longer than its user's or tenant's recorded
  longest one (and than an hour, how far queries look back anyway), or a
  pool booking longer than its resource's (queries would look back too little);
* bad request record: a remembered request id whose reservation is live with
  other fields;
* event: a booking whose last change (within the feed's retention) has no
  event, or an event that says otherwise.
"""

import argparse
import collections
import sys
import time

from chalicelib import layout
from chalicelib.model import NANOS_PER_SECOND, lookback_ns


def scan_items(client, table: str, **arguments):
    """Every item of the table, or of an index (indexes only read eventually consistent)."""
    start = {}
    consistent = {} if "IndexName" in arguments else {"ConsistentRead": True}
    while True:
        page = client.scan(TableName=table, **consistent, **arguments, **start)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


class Table:
    """Every item of a table, sorted by kind and decoded."""

    def __init__(self, items):
        self.reservations, self.bookings, self.definitions = {}, {}, {}
        self.buckets, self.longest, self.events, self.requests, self.guards = {}, {}, {}, [], {}
        self.problems = []
        for item in items:
            try:
                self._add(item)
            except (KeyError, ValueError, IndexError) as error:
                self.problems.append(
                    f"unreadable item {item.get('pk', {}).get('S')} / {item.get('sk', {}).get('S')}: {error!r}"
                )

    def _add(self, item: dict) -> None:
        kind = layout.kind_of(item)
        pk = item["pk"]["S"]
        tenant = layout.tenant_of(pk)
        if kind == "reservation":
            booking = layout.booking_from(item)
            if pk != layout.reservation_key(tenant, booking.reservation.id)["pk"]["S"]:
                self.problems.append(f"twin: the reservation item {pk} holds reservation {booking.reservation.id}")
                return
            self.reservations[(tenant, booking.reservation.id)] = (booking, item)
        elif kind == "booking":
            booking = layout.booking_from(item)
            self.bookings[(tenant, booking.reservation.id)] = (booking, item)
        elif kind == "definition":
            self.definitions[(tenant, layout.resource_of(pk))] = layout.definition_from(item)
            if item.get("dk", {}).get("S", tenant) != tenant:
                self.problems.append(f"tenant: definition {pk} is listed for tenant {item['dk']['S']}")
        elif kind == "guard":
            self.guards[(tenant, layout.resource_of(pk), layout.guard_index_of(item["sk"]["S"]))] = item
        elif kind == "bucket":
            self.buckets[(tenant, layout.resource_of(pk), layout.bucket_index_of(item["sk"]["S"]))] = item
        elif kind in ("user", "tenant"):
            user = pk[len(layout.prefix(tenant)) :].removeprefix("USR#") if kind == "user" else ""
            self.longest[(tenant, user)] = layout.longest_of(item)
        elif kind == "event":
            event = layout.event_from(item)
            self.events[(tenant, item["ek"]["S"])] = (event, item)
        elif kind == "request":
            self.requests.append((tenant, item))


def check(client, table: str, now_ns: int | None = None) -> list:
    """Every violation found, as human-readable lines (empty: consistent)."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    seen = Table(scan_items(client, table))
    seen.now_ns = now_ns
    problems = list(seen.problems)
    problems += _twins(seen)
    problems += _keys(seen)
    problems += _overlaps_and_capacity(seen)
    problems += _guards(seen, now_ns)
    problems += _lookback(seen)
    problems += _requests(seen)
    problems += _events(seen, now_ns)
    problems += _indexes(client, table, seen)
    return problems


def _twins(seen: Table) -> list:
    problems = []
    for key, (booking, _) in seen.reservations.items():
        twin = seen.bookings.get(key)
        if twin is None:
            problems.append(f"twin: reservation {key[1]} (tenant {key[0]}) has no booking")
        elif twin[0] != booking:
            problems.append(f"twin: reservation {key[1]} (tenant {key[0]}) differs from its booking")
    for key in seen.bookings.keys() - seen.reservations.keys():
        problems.append(f"twin: booking {key[1]} (tenant {key[0]}) has no reservation item")
    return problems


def _keys(seen: Table) -> list:
    problems = []
    for (tenant, reservation_id), (booking, item) in seen.bookings.items():
        reservation = booking.reservation
        if layout.resource_of(item["pk"]["S"]) != reservation.resource_id:
            problems.append(f"tenant: booking {reservation_id} is filed under another resource")
        expected = {
            "uk": layout.user_index_key(tenant, reservation.user_id),
            "tk": tenant,
            "start_key": layout.start_key(reservation.start_ns, reservation.id),
        }
        if item["sk"]["S"] != layout.BOOKING_PREFIX + expected["start_key"]:
            problems.append(f"index: booking {reservation_id} is filed at another start")
        for attribute, value in expected.items():
            if item.get(attribute, {}).get("S") != value:
                problems.append(
                    f"index: booking {reservation_id} has {attribute} "
                    f"{item.get(attribute, {}).get('S')!r}, expected {value!r}"
                )
        is_hold = reservation.expires_at_ns and reservation.status.name == "PENDING"
        if bool(is_hold) != ("hk" in item):
            problems.append(f"index: booking {reservation_id} {'lacks' if is_hold else 'has'} hold index keys")
    for (tenant, _), (event, item) in seen.events.items():
        if item.get("etk", {}).get("S", tenant) != tenant or not item.get("euk", {}).get("S", tenant + "#").startswith(
            tenant + "#"
        ):
            problems.append(f"tenant: event {event.event_id} is filed under tenant {tenant} but indexed for another")
    return problems


def _overlaps_and_capacity(seen: Table) -> list:
    problems = []
    by_resource = collections.defaultdict(list)
    for (tenant, _), (booking, _) in seen.bookings.items():
        by_resource[(tenant, booking.reservation.resource_id)].append(booking)
    for tenant, resource_id, _ in seen.buckets:  # a pool's counters are checked even with no booking left
        by_resource[(tenant, resource_id)]
    for (tenant, resource_id), listed in by_resource.items():
        definition = seen.definitions.get((tenant, resource_id))
        shape = definition.shape if definition is not None else layout.Shape()
        if any(booking.pooled != shape.pool for booking in listed):
            problems.append(f"capacity: resource {resource_id} (tenant {tenant}) has bookings of another shape")
        if shape.pool:
            problems += _pool_counters(seen, tenant, resource_id, shape, listed)
            continue
        listed.sort(key=lambda b: (b.padded_start_ns, b.reservation.id))
        latest = None
        for booking in listed:
            if latest is not None and booking.padded_start_ns < latest.padded_end_ns:
                problems.append(
                    f"overlap: {latest.reservation.id} and {booking.reservation.id} of resource "
                    f"{resource_id} (tenant {tenant})"
                )
            if latest is None or booking.padded_end_ns > latest.padded_end_ns:
                latest = booking
    return problems


def _guards(seen: Table, now_ns: int) -> list:
    problems = []
    for (tenant, reservation_id), (booking, _) in seen.bookings.items():
        if booking.pooled:
            continue
        resource_id = booking.reservation.resource_id
        for index in layout.slots_of(booking):
            item = seen.guards.get((tenant, resource_id, index))
            if item is None:
                problems.append(
                    f"guard: reservation {reservation_id} of {resource_id} (tenant {tenant}) has no "
                    f"guard for its slot {index}"
                )
                continue
            guard = layout.guard_from(resource_id, index, item)
            listed = {entry.reservation.id: entry for entry in guard.entries}
            if not guard.dense and reservation_id not in listed:
                problems.append(
                    f"guard: slot {index} of {resource_id} (tenant {tenant}) does not list reservation {reservation_id}"
                )
            elif (
                not guard.dense  # a dense guard's list is no longer kept: readers query the bookings
                and reservation_id in listed
                and item["busy"]["M"][reservation_id] != layout.guard_entry(booking)
            ):
                problems.append(
                    f"guard: slot {index} of {resource_id} (tenant {tenant}) lists reservation "
                    f"{reservation_id} with another window"
                )
    for (tenant, resource_id, index), item in seen.guards.items():
        for entry in layout.guard_from(resource_id, index, item).entries:
            gone = (tenant, entry.reservation.id) not in seen.bookings.keys() | seen.reservations.keys()
            if gone and not entry.reservation.expired(now_ns):
                problems.append(
                    f"guard: slot {index} of {resource_id} (tenant {tenant}) lists reservation "
                    f"{entry.reservation.id}, which does not exist"
                )
    return problems


def _pool_counters(seen: Table, tenant: str, resource_id: str, shape, listed: list) -> list:
    problems = []
    definition = seen.definitions.get((tenant, resource_id))
    if definition is not None and definition.live:
        for (owner, rid, index), item in seen.buckets.items():
            bucket = layout.bucket_from(shape, index, item)
            if (
                (owner, rid) == (tenant, resource_id)
                and shape.bucket_span(index)[1] > seen.now_ns
                and bucket.cap != definition.resource.capacity
            ):
                problems.append(
                    f"capacity: resource {resource_id} (tenant {tenant}) has capacity "
                    f"{definition.resource.capacity} but its bucket {index} counts against {bucket.cap} "
                    "(a capacity change under way: define the resource again to finish it)"
                )
    counted = collections.Counter()
    for booking in listed:
        for cell, _ in shape.cells(booking.padded_start_ns, booking.padded_end_ns):
            counted[cell] += booking.reservation.units
    stored = {}
    for (owner, rid, index), item in seen.buckets.items():
        if (owner, rid) != (tenant, resource_id):
            continue
        bucket = layout.bucket_from(shape, index, item)
        for cell, used in bucket.used:
            stored[cell] = (used, bucket.cap)
    for cell in sorted(set(counted) | set(stored)):
        used, cap = stored.get(cell, (0, None))
        if used != counted[cell]:
            problems.append(
                f"capacity: resource {resource_id} (tenant {tenant}) counts {used} units at "
                f"{cell // NANOS_PER_SECOND} s, its bookings take {counted[cell]}"
            )
        if cap is not None and counted[cell] > cap:
            problems.append(
                f"capacity: resource {resource_id} (tenant {tenant}) has {counted[cell]} units booked "
                f"at {cell // NANOS_PER_SECOND} s, over its capacity {cap}"
            )
    return problems


def _lookback(seen: Table) -> list:
    problems = []
    for (tenant, reservation_id), (booking, _) in seen.bookings.items():
        reservation = booking.reservation
        duration = reservation.end_ns - reservation.start_ns
        for user, whose in ((reservation.user_id, f"user {reservation.user_id}'s"), ("", "the tenant's")):
            if duration > lookback_ns(seen.longest.get((tenant, user), 0)):
                problems.append(f"short lookback: reservation {reservation_id} is longer than {whose} recorded longest")
        definition = seen.definitions.get((tenant, reservation.resource_id))
        if (
            booking.pooled
            and definition is not None
            and booking.padded_end_ns - booking.padded_start_ns > definition.longest_ns
        ):
            problems.append(f"short lookback: reservation {reservation_id} is longer than its pool's recorded longest")
    return problems


def _requests(seen: Table) -> list:
    problems = []
    for tenant, item in seen.requests:
        remembered = layout.reservation_from(item["reservation"]["M"])
        live = seen.reservations.get((tenant, remembered.id))
        if live is not None:
            current = live[0].reservation
            if (current.user_id, current.units) != (remembered.user_id, remembered.units):
                problems.append(f"bad request record {item['pk']['S']}: reservation {remembered.id} differs")
    return problems


def _events(seen: Table, now_ns: int) -> list:
    problems = []
    by_change = {
        (owner, event.reservation.id, event.at_ns): event
        for (owner, _), (event, _) in seen.events.items()
        if event.reservation is not None
    }
    for (tenant, reservation_id), (booking, _) in seen.bookings.items():
        if not booking.last_event_ns or booking.last_event_ns < now_ns - layout.EVENT_RETENTION_NS:
            continue
        latest = [by_change[key]] if (key := (tenant, reservation_id, booking.last_event_ns)) in by_change else []
        if not latest:
            problems.append(f"event: reservation {reservation_id} (tenant {tenant}) has no event for its last change")
        elif latest[0].reservation != booking.reservation:
            problems.append(f"event: the last event of reservation {reservation_id} shows another state")
    return problems


def _indexes(client, table: str, seen: Table) -> list:
    problems = []
    listed = {
        (item["tk"]["S"], item["start_key"]["S"]) for item in scan_items(client, table, IndexName=layout.BY_TENANT)
    }
    for (tenant, reservation_id), (_booking, item) in seen.bookings.items():
        if (tenant, item["start_key"]["S"]) not in listed:
            problems.append(f"index: {layout.BY_TENANT} does not return reservation {reservation_id}")
    return problems


def main(argv=None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="the reservation table")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (e.g. the embedded one of make serve)")
    options = parser.parse_args(argv)
    problems = check(boto3.client("dynamodb", endpoint_url=options.endpoint_url), options.table)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {options.table}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
