"""ops/checker.py finds every kind of broken invariant it reports, and nothing after a real workload.

Corruptions are written by hand, item by item, through chalicelib.layout's encoders: each test breaks
one invariant the way a bug, a partial restore or a hand edit would.
"""

import dataclasses
import time

import pytest

from chalicelib import layout
from chalicelib.api import CallContext
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import DEFAULT_TENANT, HOUR_NS, Caller, Status
from chalicelib.runtime import default_api
from harness import bulk
from harness.moto import TABLE, scan_all
from ops import checker

TENANTS = (DEFAULT_TENANT, "team-b")
DAY = "2030-06-0{}T{:02d}:00:00Z"


def at(hour: int, day: int = 3):
    stamp = pb.Reservation().start
    stamp.FromJsonString(DAY.format(day, hour))
    return stamp


def draft(resource: str, start: int, end: int, user: str = "ann", **fields) -> pb.Reservation:
    return pb.Reservation(resource_id=resource, user_id=user, start=at(start), end=at(end), **fields)


def workload(api, tenant: str) -> dict:
    """Every RPC, the way clients use them, in one tenant: exclusive resources with buffers and without a
    definition, pools and their capacity changes, holds live, confirmed, displaced and expired, moves in
    place, across resources and between pools, replays, cancels, reads of every kind. Returns what it made."""
    context = CallContext(Caller(tenant))
    hour = {"seconds": 3600}

    def reserve(request_id="", hold_for=None, **fields):
        request = pb.ReserveRequest(reservation=draft(**fields), request_id=request_id, hold_for=hold_for)
        return api.reserve(request, context).reservation

    def define(**fields):
        return api.define_resource(pb.DefineResourceRequest(resource=pb.Resource(**fields)), context).resource

    define(id="room", labels={"kind": "room"}, max_duration={"seconds": 4 * 3600}, buffer_after={"seconds": 600})
    define(id="lot", labels={"kind": "lot"}, capacity=3, step=hour)
    define(id="lot2", labels={"kind": "lot"}, capacity=2, step=hour)
    define(id="spare")
    made = {
        "first": reserve(resource="room", start=8, end=9, request_id="req-1", note="n"),
        "second": reserve(resource="room", start=10, end=11, user="bob", status=pb.CONFIRMED),
        "undefined": reserve(resource="desk", start=0, end=23, user="cyd"),
        "hold": reserve(resource="room", start=12, end=13, hold_for={"seconds": 3600}),
        "parked": reserve(resource="lot", start=8, end=10, units=2),
        "small": reserve(resource="lot", start=9, end=11, user="bob"),
    }
    assert reserve(resource="room", start=8, end=9, request_id="req-1", note="n") == made["first"]  # a replay
    brief = {"nanos": 1_000_000}
    displaced = [
        reserve(resource="room", start=14, end=15, hold_for=brief),
        reserve(resource="lot", start=11, end=12, units=2, hold_for=brief),
    ]
    made["expiring"] = reserve(resource="room", start=16, end=17, hold_for=brief, user="dee")
    time.sleep(0.01)
    made["displacer"] = reserve(resource="room", start=14, end=15, user="bob")
    made["full"] = reserve(resource="lot", start=11, end=12, units=3)
    api.confirm(pb.ConfirmRequest(id=made["hold"].id), context)
    api.update(pb.UpdateRequest(id=made["second"].id, note="moved soon"), context)
    api.update(pb.UpdateRequest(id=made["first"].id, status=pb.BLOCKED), context)
    moves = {
        "first": pb.RescheduleRequest(id=made["first"].id, start=at(18), end=at(19)),
        "second": pb.RescheduleRequest(id=made["second"].id, start=at(1, 4), end=at(3, 4), resource_id="desk"),
        "small": pb.RescheduleRequest(id=made["small"].id, start=at(9), end=at(10), resource_id="lot2"),
        "parked": pb.RescheduleRequest(id=made["parked"].id, start=at(13), end=at(16)),
    }
    for name, move in moves.items():
        made[name] = api.reschedule(move, context).reservation
    define(id="lot", labels={"kind": "lot"}, capacity=4, step=hour)
    define(id="lot", labels={"kind": "lot"}, capacity=3, step=hour)
    made["cancelled"] = api.cancel(pb.CancelRequest(id=made.pop("undefined").id), context).reservation
    for reservation in made.values():
        if reservation.id != made["cancelled"].id:
            assert api.get(pb.GetRequest(id=reservation.id), context).reservation.id == reservation.id
    for query in (
        pb.QueryRequest(resource_id="room"),
        pb.QueryRequest(user_id="bob"),
        pb.QueryRequest(),
        pb.QueryRequest(resource_id="lot", start=at(12), end=at(14), status=pb.PENDING),
    ):
        api.filter(pb.FilterRequest(query=query), context)
        list(api.query(query, context))
    api.list_resources(pb.ListResourcesRequest(labels={"kind": "lot"}), context)
    api.availability(pb.AvailabilityRequest(resource_ids=["room", "lot", "desk"], start=at(0), end=at(23)), context)
    api.availability(pb.AvailabilityRequest(labels={"kind": "lot"}, start=at(0), end=at(23), units=2), context)
    api.find_slots(pb.FindSlotsRequest(labels={"kind": "room"}, start=at(0), end=at(23), duration=hour), context)
    for scope in (pb.ChangesRequest(), pb.ChangesRequest(resource_id="lot"), pb.ChangesRequest(user_id="bob")):
        api.changes(scope, context)
    api.delete_resource(pb.DeleteResourceRequest(id="spare"), context)
    made["displaced"] = displaced
    return made


def run_workload(client) -> dict:
    """The workload in two tenants, then the sweep of expired holds: a healthy table."""
    api = default_api()
    made = {tenant: workload(api, tenant) for tenant in TENANTS}
    assert api.reservations.sweep_expired() == len(TENANTS)  # the "expiring" hold of each tenant
    return {"client": client, "made": made}


@pytest.fixture
def fresh(dynamodb):
    return run_workload(dynamodb)


_HEALTHY = {}  # the items and answers of one run of the workload, reloaded into each test's table


@pytest.fixture
def table(dynamodb):
    """A healthy table to corrupt (nothing in it expires within a test run)."""
    if not _HEALTHY:
        _HEALTHY.update(run_workload(dynamodb), items=scan_all(dynamodb))
    else:
        bulk.load(dynamodb, TABLE, _HEALTHY["items"])
    return {"client": dynamodb, "made": _HEALTHY["made"]}


def test_a_real_workload_of_every_rpc_in_two_tenants_leaves_a_consistent_table(fresh):
    table = fresh
    assert checker.check(table["client"], TABLE) == []
    assert checker.main(["--table", TABLE]) == 0
    kinds = {layout.kind_of(item) for item in scan_all(table["client"])}
    assert kinds == {"reservation", "booking", "guard", "bucket", "definition", "request", "user", "tenant", "event"}
    assert {layout.tenant_of(item["pk"]["S"]) for item in scan_all(table["client"])} == set(TENANTS)


# ---- helpers: read and write single items through the layout ---------------------------------------------


def stored(table, name: str, tenant: str = "team-b"):
    """The Booking of a reservation the workload made, as stored."""
    reservation = table["made"][tenant][name]
    item = table["client"].get_item(TableName=TABLE, Key=layout.reservation_key(tenant, reservation.id))["Item"]
    return layout.booking_from(item)


def put(table, *items) -> None:
    for item in items:
        table["client"].put_item(TableName=TABLE, Item=item)


def delete(table, *keys) -> None:
    for key in keys:
        table["client"].delete_item(TableName=TABLE, Key=key)


def problems(table) -> list:
    return checker.check(table["client"], TABLE)


def unguarded(found: list) -> list:
    """The problems besides what guards say (a booking put by hand is in no guard's list)."""
    return [problem for problem in found if not problem.startswith("guard:")]


def only(kind: str, found: list) -> list:
    assert found, "the checker found nothing"
    assert all(problem.startswith(kind) for problem in found), found
    return found


# ---- one test per kind of violation ----------------------------------------------------------------------


def test_an_unreadable_item_is_reported(table):
    booking = stored(table, "second")
    item = layout.reservation_item("team-b", booking)
    del item["user_id"]
    put(table, item)
    found = problems(table)
    assert any(p.startswith("unreadable item T#team-b#RSV#" + booking.reservation.id) for p in found), found
    assert checker.main(["--table", TABLE]) == 1


def test_a_reservation_without_its_booking_is_reported(table):
    booking = stored(table, "second")
    delete(table, layout.booking_key("team-b", booking.reservation))
    assert only("twin:", problems(table)) == [
        f"twin: reservation {booking.reservation.id} (tenant team-b) has no booking"
    ]


def test_a_booking_without_its_reservation_item_is_reported(table):
    booking = stored(table, "hold", DEFAULT_TENANT)
    delete(table, layout.reservation_key(DEFAULT_TENANT, booking.reservation.id))
    assert only("twin:", problems(table)) == [
        f"twin: booking {booking.reservation.id} (tenant default) has no reservation item"
    ]


def test_twins_that_differ_are_reported(table):
    booking = stored(table, "hold")
    put(
        table,
        layout.reservation_item(
            "team-b",
            dataclasses.replace(booking, reservation=dataclasses.replace(booking.reservation, note="edited by hand")),
        ),
    )
    assert only("twin:", problems(table)) == [
        f"twin: reservation {booking.reservation.id} (tenant team-b) differs from its booking"
    ]


def test_a_booking_in_another_resources_partition_is_reported(table):
    booking = stored(table, "displacer")
    item = layout.booking_item("team-b", booking)
    delete(table, layout.booking_key("team-b", booking.reservation))
    put(table, {**item, **layout.key(layout.resource_pk("team-b", "elsewhere"), item["sk"]["S"])})
    assert only("tenant:", problems(table)) == [
        f"tenant: booking {booking.reservation.id} is filed under another resource"
    ]


def test_an_event_indexed_for_another_tenant_is_reported(table):
    client = table["client"]
    item = next(
        i
        for i in scan_all(client)
        if layout.kind_of(i) == "event" and "etk" in i and layout.tenant_of(i["pk"]["S"]) == "team-b"
    )
    put(table, {**item, "etk": {"S": DEFAULT_TENANT}})
    assert only("tenant:", problems(table))


def test_a_booking_filed_at_another_start_or_with_wrong_index_keys_is_reported(table):
    booking = stored(table, "displacer")
    reservation = booking.reservation
    item = layout.booking_item("team-b", booking)
    put(
        table,
        {
            **item,
            "start_key": {"S": layout.start_key(reservation.start_ns + 1, reservation.id)},
            "uk": {"S": layout.user_index_key(DEFAULT_TENANT, reservation.user_id)},
        },
    )
    found = only("index:", problems(table))
    assert len(found) == 2 and all(reservation.id in p for p in found)
    delete(table, layout.booking_key("team-b", reservation))
    moved = dataclasses.replace(reservation, start_ns=reservation.start_ns - HOUR_NS)
    put(table, {**item, **layout.booking_key("team-b", moved)})  # its sort key says another start
    assert only("index:", problems(table)) == [f"index: booking {reservation.id} is filed at another start"]


def test_hold_index_keys_that_disagree_with_the_status_are_reported(table):
    confirmed = stored(table, "hold")  # a confirmed hold: no hold index keys
    put(
        table,
        {
            **layout.booking_item("team-b", confirmed),
            "hk": {"S": layout.hold_shard(confirmed.reservation.id)},
            "hexp": {"N": "1"},
        },
    )
    assert only("index:", problems(table)) == [f"index: booking {confirmed.reservation.id} has hold index keys"]
    pending = dataclasses.replace(
        confirmed,
        last_event_ns=0,
        reservation=dataclasses.replace(
            confirmed.reservation, status=Status.PENDING, expires_at_ns=time.time_ns() + HOUR_NS
        ),
    )
    unindexed = layout.booking_item("team-b", pending)
    del unindexed["hk"], unindexed["hexp"]  # the sweep would never find it
    put(table, layout.reservation_item("team-b", pending), unindexed)
    # (the guards still list it as confirmed: a hand-made change, not one the service makes)
    assert only("index:", unguarded(problems(table))) == [
        f"index: booking {confirmed.reservation.id} lacks hold index keys"
    ]


def test_a_booking_the_tenant_index_does_not_return_is_reported(table):
    booking = stored(table, "displacer")
    item = layout.booking_item("team-b", booking)
    del item["tk"]
    put(table, item)
    found = only("index:", problems(table))
    assert f"index: {layout.BY_TENANT} does not return reservation {booking.reservation.id}" in found


def test_overlapping_bookings_of_an_exclusive_resource_are_reported(table):
    first = stored(table, "displacer")  # room, 14:00-15:00 (+10 min buffer after)
    twin = dataclasses.replace(
        first,
        last_event_ns=0,
        reservation=dataclasses.replace(
            first.reservation,
            id="00000000-0000-4000-8000-000000000001",
            start_ns=first.reservation.end_ns + 5 * 60 * 10**9,
            end_ns=first.reservation.end_ns + 35 * 60 * 10**9,
        ),
    )
    put(table, layout.reservation_item("team-b", twin), layout.booking_item("team-b", twin))
    # (no guard lists the hand-made twin either: reported as such)
    assert only("overlap:", unguarded(problems(table))) == [
        f"overlap: {first.reservation.id} and {twin.reservation.id} of resource room (tenant team-b)"
    ]


def test_pool_counters_that_differ_from_the_bookings_are_reported(table):
    client = table["client"]
    definition = layout.definition_from(
        client.get_item(TableName=TABLE, Key=layout.definition_key("team-b", "lot"))["Item"]
    )
    full = stored(table, "full")  # 3 units, 11:00-12:00
    index = definition.shape.bucket_of(full.reservation.start_ns)
    start, _ = definition.shape.bucket_span(index)
    client.update_item(
        TableName=TABLE,
        Key=layout.bucket_key("team-b", "lot", index),
        UpdateExpression="SET #c = :one",
        ExpressionAttributeNames={"#c": layout.cell_attribute(start, full.reservation.start_ns)},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    assert only("capacity:", problems(table)) == [
        f"capacity: resource lot (tenant team-b) counts 1 units at {full.reservation.start_ns // 10**9} s, its "
        f"bookings take 3"
    ]


def test_a_pool_cell_over_capacity_is_reported(table):
    client = table["client"]
    full = stored(table, "full")
    definition = layout.definition_from(
        client.get_item(TableName=TABLE, Key=layout.definition_key("team-b", "lot"))["Item"]
    )
    extra = layout.Booking(
        dataclasses.replace(full.reservation, id="00000000-0000-4000-8000-000000000002", units=1), pooled=True
    )
    index = definition.shape.bucket_of(full.reservation.start_ns)
    start, _ = definition.shape.bucket_span(index)
    client.update_item(
        TableName=TABLE,
        Key=layout.bucket_key("team-b", "lot", index),
        UpdateExpression="ADD #c :one",
        ExpressionAttributeNames={"#c": layout.cell_attribute(start, full.reservation.start_ns)},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    put(table, layout.reservation_item("team-b", extra), layout.booking_item("team-b", extra))
    assert only("capacity:", problems(table)) == [
        f"capacity: resource lot (tenant team-b) has 4 units booked at {full.reservation.start_ns // 10**9} s, "
        f"over its capacity 3"
    ]


def test_a_booking_of_the_other_shape_is_reported(table):
    booking = stored(table, "displacer")  # an exclusive resource's booking, marked as counted in a pool
    pooled = dataclasses.replace(booking, pooled=True)
    put(table, layout.reservation_item("team-b", pooled), layout.booking_item("team-b", pooled))
    found = problems(table)
    assert "capacity: resource room (tenant team-b) has bookings of another shape" in found
    assert {p.split(":")[0] for p in found} == {"capacity", "short lookback"}  # no pool's longest covers it


@pytest.mark.parametrize("whose", ["user", "tenant", "pool"])
def test_a_recorded_longest_reservation_that_is_too_short_is_reported(table, whose):
    if whose == "pool":
        item = table["client"].get_item(TableName=TABLE, Key=layout.definition_key("team-b", "lot"))["Item"]
        put(table, layout.definition_item("team-b", dataclasses.replace(layout.definition_from(item), longest_ns=1)))
        expected = "its pool's recorded longest"
    else:
        put(table, {**layout.longest_key("team-b", "bob" if whose == "user" else ""), "longest": {"N": "1"}})
        expected = "user bob's recorded longest" if whose == "user" else "the tenant's recorded longest"
    found = only("short lookback:", problems(table))
    assert found and all(expected in p for p in found)


def test_a_request_record_that_names_another_reservation_is_reported(table):
    first = stored(table, "first")
    item = table["client"].get_item(TableName=TABLE, Key=layout.request_key("team-b", "req-1"))["Item"]
    remembered = layout.remembered_from(item, 0)
    put(
        table,
        layout.request_item(
            "team-b",
            "req-1",
            remembered.fingerprint,
            dataclasses.replace(first.reservation, user_id="mallory"),
            int(item["expires_at"]["N"]),
        ),
    )
    assert only("bad request record", problems(table)) == [
        f"bad request record T#team-b#REQ#req-1: reservation {first.reservation.id} differs"
    ]


def _last_events(table, booking, tenant="team-b") -> list:
    return [
        item
        for item in scan_all(table["client"])
        if layout.kind_of(item) == "event"
        and layout.tenant_of(item["pk"]["S"]) == tenant
        and layout.event_time_of(item["ek"]["S"]) == booking.last_event_ns
    ]


def test_a_change_without_its_event_is_reported(table):
    booking = stored(table, "first")  # moved from 08:00 to 18:00 last
    events = _last_events(table, booking)
    assert events
    delete(table, *[layout.key(*layout.pair(event)) for event in events])
    assert only("event:", problems(table)) == [
        f"event: reservation {booking.reservation.id} (tenant team-b) has no event for its last change"
    ]


def test_an_event_that_tells_another_state_is_reported(table):
    booking = stored(table, "second")
    for item in _last_events(table, booking):
        event = layout.event_from(item)
        told = dataclasses.replace(event, reservation=dataclasses.replace(event.reservation, note="not this"))
        put(table, layout.event_item("team-b", told, layout.resource_of(item["pk"]["S"])))
    assert only("event:", problems(table)) == [
        f"event: the last event of reservation {booking.reservation.id} shows another state"
    ]


def test_units_still_counted_in_a_pool_without_bookings_are_reported(table):
    """When the last booking of a pool disappears without giving its units back (docs/storage.md: "for a pool a
    TTL deletion leaves the hold's units counted ... until an operator repairs it"), the counters that stay are
    reported (the checker once compared counters only for resources that still had a booking)."""
    small = stored(table, "small")  # the only booking of lot2, 1 unit at 09:00-10:00
    delete(
        table, layout.reservation_key("team-b", small.reservation.id), layout.booking_key("team-b", small.reservation)
    )
    assert only("capacity:", problems(table)) == [
        f"capacity: resource lot2 (tenant team-b) counts 1 units at {small.reservation.start_ns // 10**9} s, its "
        f"bookings take 0"
    ]


def test_a_pool_counter_without_bookings_is_reported_where_the_pool_has_others(table):
    """The same leak on a pool that still has other bookings is found (the control of the test above)."""
    full = stored(table, "full")  # lot, 11:00-12:00, one of several bookings of lot
    delete(table, layout.reservation_key("team-b", full.reservation.id), layout.booking_key("team-b", full.reservation))
    assert only("capacity:", problems(table)) == [
        f"capacity: resource lot (tenant team-b) counts 3 units at {full.reservation.start_ns // 10**9} s, its "
        f"bookings take 0"
    ]


def test_index_keys_of_definitions_and_events_that_name_another_tenant_are_reported(table):
    """A definition whose dk names another tenant is listed by that tenant's list_resources and availability by
    labels; an event whose euk names a user of another tenant is in that user's change feed (the tenant check
    once looked at bookings' uk and tk and events' etk only)."""
    client = table["client"]
    definition = client.get_item(TableName=TABLE, Key=layout.definition_key("team-b", "room"))["Item"]
    put(table, {**definition, "dk": {"S": DEFAULT_TENANT}})
    found = problems(table)
    put(table, definition)
    event = next(
        i
        for i in scan_all(client)
        if layout.kind_of(i) == "event" and "euk" in i and layout.tenant_of(i["pk"]["S"]) == "team-b"
    )
    put(table, {**event, "euk": {"S": layout.user_index_key(DEFAULT_TENANT, "ann")}})
    found += problems(table)
    assert len(found) == 2 and all(p.startswith("tenant:") for p in found), found


def test_a_reservation_item_under_another_id_is_reported(table):
    """A copy of a reservation item under another reservation's key (get of that id answers someone else's
    reservation) is reported (items were once matched to their bookings by the id they carry only)."""
    booking = stored(table, "hold")
    put(
        table,
        {
            **layout.reservation_item("team-b", booking),
            **layout.reservation_key("team-b", "00000000-0000-4000-8000-000000000003"),
        },
    )
    assert only("", problems(table))
