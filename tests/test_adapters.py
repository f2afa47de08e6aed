"""The same scenarios through both adapters of `make serve`: Connect over HTTP (the Chalice app) and native
gRPC (grpc_server.py), every RPC; tenants and acting users from headers or gRPC metadata; rich error details
on both; health, reflection and buf curl over gRPC."""

import base64
import json
import pathlib
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from connectrpc.client import ResponseMetadata
from connectrpc.errors import ConnectError
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chalicelib import connect
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.ports import OutcomeUnknown, StorageUnavailable
from chalicelib.runtime import build_api
from grpc_server import build_server
from harness.fake_store import FakeStore
from tests.gen.reservation_connect import ReservationServiceClientSync
from tests.gen.reservation_pb2_grpc import ReservationServiceStub
from tests.helpers import reservation, stamp

BUF = str(pathlib.Path(sys.executable).parent / "buf")
GRPC_METADATA_LIMIT = 16 * 1024  # what gRPC refuses past (issue 12: "RESOURCE_EXHAUSTED ... Stream removed")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Failed(Exception):
    def __init__(self, code: str, message: str, details: list, details_bytes: int = 0):
        super().__init__(message)
        self.code, self.message, self.details, self.details_bytes = code, message, details, details_bytes

    def detail(self, message_type):
        """The one detail of this type (unpacked), or None."""
        for packed in self.details:
            found = message_type()
            if packed.Unpack(found):
                return found
        return None


class ConnectCaller:
    protocol = "connect"

    def __init__(self, server, tenant: str = "", acting: str = ""):
        self.server = server
        self.client = ReservationServiceClientSync(server.url)
        self.headers = {name: value for name, value in (("x-tenant-id", tenant), ("x-acting-user", acting)) if value}

    def as_(self, tenant: str = "", acting: str = ""):
        return type(self)(self.server, tenant, acting)

    @staticmethod
    def _failed(error: ConnectError) -> Failed:
        return Failed(error.code.name.lower(), error.message, list(error.details))

    def __call__(self, method: str, request):
        try:
            return getattr(self.client, method)(request, headers=self.headers)
        except ConnectError as error:
            raise self._failed(error) from None

    def query(self, request):
        try:
            with ResponseMetadata() as metadata:
                messages = list(self.client.query(request, headers=self.headers))
            return messages, metadata.trailers().get("next-page-token", "")
        except ConnectError as error:
            raise self._failed(error) from None


class GrpcCaller:
    protocol = "grpc"

    def __init__(self, server, tenant: str = "", acting: str = ""):
        self.server = server
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.stub = ReservationServiceStub(self.channel)
        self.metadata = tuple(
            (name, value) for name, value in (("x-tenant-id", tenant), ("x-acting-user", acting)) if value
        )

    def as_(self, tenant: str = "", acting: str = ""):
        return type(self)(self.server, tenant, acting)

    @staticmethod
    def _failed(error: grpc.RpcError) -> Failed:
        details, size = [], 0
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                size = len(value)
                status = status_pb2.Status.FromString(value)
                assert (status.code, status.message) == (error.code().value[0], error.details())
                details = list(status.details)
        return Failed(error.code().name.lower().replace("cancelled", "canceled"), error.details(), details, size)

    def __call__(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, timeout=10, metadata=self.metadata)
        except grpc.RpcError as error:
            raise self._failed(error) from None

    def query(self, request):
        call = self.stub.Query(request, timeout=10, metadata=self.metadata)
        try:
            messages = list(call)
        except grpc.RpcError as error:
            raise self._failed(error) from None
        return messages, dict(call.trailing_metadata()).get("next-page-token", "")


@pytest.fixture(params=["connect", "grpc"])
def caller(request, local_server):
    return (ConnectCaller if request.param == "connect" else GrpcCaller)(local_server)


def failure(call, method: str, request) -> Failed:
    with pytest.raises(Failed) as raised:
        call(method, request)
    return raised.value


def minutes(value: float) -> Duration:
    return Duration(seconds=int(value * 60))


def changes_until(call, count: int, timeout: float = 5.0, **scope) -> pb.ChangesResponse:
    """The feed of a scope once it holds `count` events (make serve hands them out 200 ms after they commit)."""
    deadline = time.monotonic() + timeout
    while True:
        page = call("changes", pb.ChangesRequest(**scope))
        if len(page.events) >= count or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


# ---- the reservations of the first release -------------------------------------------------------------------


def test_reserve_conflict_confirm_update_cancel_get(caller):
    room = unique("room")
    made = caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room))).reservation
    raised = failure(
        caller, "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob", start=30, end=90))
    )
    assert raised.code == "failed_precondition" and made.id in raised.message
    conflict = raised.detail(pb.ReservationConflict)
    assert [c.id for c in conflict.conflicts] == [made.id] and conflict.total == 1
    assert (conflict.resource_id, conflict.requested.start, conflict.requested.end) == (room, stamp(30), stamp(90))
    assert caller("confirm", pb.ConfirmRequest(id=made.id)).reservation.status == pb.CONFIRMED
    updated = caller("update", pb.UpdateRequest(id=made.id, note="moved")).reservation
    assert (updated.status, updated.note) == (pb.CONFIRMED, "moved")
    assert caller("get", pb.GetRequest(id=made.id)).reservation == updated
    assert caller("cancel", pb.CancelRequest(id=made.id)).reservation == updated
    for method, request in (("get", pb.GetRequest(id=made.id)), ("cancel", pb.CancelRequest(id=made.id))):
        assert failure(caller, method, request).code == "not_found"
    assert failure(caller, "get", pb.GetRequest(id="not-an-id")).code == "invalid_argument"


def test_query_pages_with_the_token_in_the_trailers_and_filter_pages_in_the_answer(caller):
    room = unique("room")
    made = [
        caller(
            "reserve", pb.ReserveRequest(reservation=reservation(resource=room, start=n * 10, end=n * 10 + 10))
        ).reservation.id
        for n in range(7)
    ]
    seen, token, pages = [], "", 0
    while True:
        messages, token = caller.query(pb.QueryRequest(resource_id=room, page_size=3, page_token=token))
        seen += [m.id for m in messages]
        pages += 1
        if not token:
            break
    assert seen == made and pages == 3
    filtered, token = [], ""
    while True:
        page = caller(
            "filter",
            pb.FilterRequest(query=pb.QueryRequest(resource_id=room, page_size=4, desc=True, page_token=token)),
        )
        filtered += [r.id for r in page.reservations]
        token = page.next_page_token
        if not token:
            break
    assert filtered == made[::-1]
    with pytest.raises(Failed) as raised:
        caller.query(pb.QueryRequest(resource_id=room, page_token="forged"))
    assert raised.value.code == "invalid_argument"


# ---- resources, reschedule, availability, find_slots, changes, pools -----------------------------------------


def test_define_get_list_delete_resource(caller):
    label = uuid.uuid4().hex[:8]
    defined = {}
    for n in range(3):
        wanted = pb.Resource(
            id=unique(f"res{n}"),
            name=f"Room {n}",
            labels={"run": label, "floor": str(n % 2)},
            capacity=1,
            min_duration=minutes(15),
            max_duration=minutes(120),
            step=minutes(15),
            buffer_after=minutes(5),
            time_zone="Europe/Paris",
        )
        answer = caller("define_resource", pb.DefineResourceRequest(resource=wanted)).resource
        assert answer == wanted
        defined[wanted.id] = answer
        assert caller("get_resource", pb.GetResourceRequest(id=wanted.id)).resource == wanted
    listed, token = [], ""
    while True:
        page = caller("list_resources", pb.ListResourcesRequest(labels={"run": label}, page_size=2, page_token=token))
        listed += list(page.resources)
        token = page.next_page_token
        if not token:
            break
    assert listed == [defined[rid] for rid in sorted(defined)]
    first, second, third = sorted(defined)
    assert [
        r.id for r in caller("list_resources", pb.ListResourcesRequest(labels={"run": label, "floor": "0"})).resources
    ] == [first, third]
    assert caller("delete_resource", pb.DeleteResourceRequest(id=second)).resource == defined[second]
    assert failure(caller, "get_resource", pb.GetResourceRequest(id=second)).code == "not_found"
    assert failure(caller, "delete_resource", pb.DeleteResourceRequest(id=second)).code == "not_found"
    assert [r.id for r in caller("list_resources", pb.ListResourcesRequest(labels={"run": label})).resources] == [
        first,
        third,
    ]
    # the rules hold on both protocols: a reservation off the grid, or too short, is refused
    refused = failure(caller, "reserve", pb.ReserveRequest(reservation=reservation(resource=first, start=0, end=10)))
    assert refused.code == "invalid_argument", refused.message
    bad = failure(caller, "define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=unique("p"), capacity=3)))
    assert bad.code == "invalid_argument"  # a pool needs a step


def test_reschedule_in_place_elsewhere_and_its_conflict_detail(caller):
    room, other_room = unique("room"), unique("room")
    made = caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, note="keep"))).reservation
    other = caller(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob", start=120, end=180))
    ).reservation
    moved = caller("reschedule", pb.RescheduleRequest(id=made.id, start=stamp(60), end=stamp(120))).reservation
    assert (moved.id, moved.note, moved.start, moved.end, moved.resource_id) == (
        made.id,
        "keep",
        stamp(60),
        stamp(120),
        room,
    )
    caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="carol", start=0, end=60)))
    refused = failure(caller, "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150), end=stamp(170)))
    assert refused.code == "failed_precondition" and other.id in refused.message
    conflict = refused.detail(pb.ReservationConflict)
    assert ([c.id for c in conflict.conflicts], conflict.total) == ([other.id], 1)
    assert (conflict.requested.start, conflict.requested.end) == (stamp(150), stamp(170))
    assert caller("get", pb.GetRequest(id=made.id)).reservation == moved  # a refused move changes nothing
    elsewhere = caller(
        "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150), end=stamp(170), resource_id=other_room)
    ).reservation
    assert (elsewhere.id, elsewhere.resource_id) == (made.id, other_room)
    assert caller("get", pb.GetRequest(id=made.id)).reservation == elsewhere
    assert failure(caller, "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150))).message.startswith("end")


def test_availability_and_find_slots(caller):
    room, busy_room = unique("room"), unique("room")
    for rid in (room, busy_room):
        caller("define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=rid, step=minutes(30))))
    caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, start=60, end=120)))
    caller("reserve", pb.ReserveRequest(reservation=reservation(resource=busy_room, start=0, end=180)))
    answer = caller(
        "availability", pb.AvailabilityRequest(resource_ids=[room, busy_room], start=stamp(0), end=stamp(180))
    )
    free_busy = {entry.resource_id: entry for entry in answer.resources}
    entry = free_busy[room]
    assert entry.capacity == 1
    assert [(i.start, i.end) for i in entry.busy] == [(stamp(60), stamp(120))]
    assert [(i.start, i.end) for i in entry.free] == [(stamp(0), stamp(60)), (stamp(120), stamp(180))]
    assert [(i.start, i.end, i.free) for i in entry.free_units] == [
        (stamp(0), stamp(60), 1),
        (stamp(60), stamp(120), 0),
        (stamp(120), stamp(180), 1),
    ]
    assert [(i.start, i.end) for i in free_busy[busy_room].busy] == [(stamp(0), stamp(180))]
    assert not free_busy[busy_room].free
    slots, token, pages = [], "", 0
    while True:
        page = caller(
            "find_slots",
            pb.FindSlotsRequest(
                resource_ids=[room, busy_room],
                start=stamp(0),
                end=stamp(180),
                duration=minutes(60),
                limit=1,
                page_token=token,
            ),
        )
        slots += [(s.resource_id, s.start, s.end) for s in page.slots]
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    assert slots == [(room, stamp(0), stamp(60)), (room, stamp(120), stamp(180))] and pages >= 2
    both = failure(
        caller,
        "availability",
        pb.AvailabilityRequest(resource_ids=[room], labels={"a": "b"}, start=stamp(0), end=stamp(60)),
    )
    assert both.code == "invalid_argument"
    assert failure(
        caller, "find_slots", pb.FindSlotsRequest(resource_ids=[room], start=stamp(0), end=stamp(60))
    ).message.startswith("duration")


def test_the_change_feed_pages_with_its_cursor(caller):
    room, user = unique("room"), unique("user")
    caller("define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=room, name="feed")))
    made = caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, user=user))).reservation
    caller("confirm", pb.ConfirmRequest(id=made.id))
    caller("update", pb.UpdateRequest(id=made.id, note="n"))
    caller("reschedule", pb.RescheduleRequest(id=made.id, start=stamp(60), end=stamp(120)))
    cancelled = caller("cancel", pb.CancelRequest(id=made.id)).reservation
    page = changes_until(caller, 6, resource_id=room)
    kinds = [pb.ChangeKind.Name(e.kind) for e in page.events]
    assert kinds == [
        "RESOURCE_DEFINED",
        "RESERVATION_CREATED",
        "RESERVATION_CONFIRMED",
        "RESERVATION_UPDATED",
        "RESERVATION_RESCHEDULED",
        "RESERVATION_CANCELLED",
    ]
    defined, created, _, _, rescheduled, cancel = page.events
    assert defined.resource.name == "feed" and created.reservation.id == made.id
    assert (rescheduled.before.start, rescheduled.reservation.start) == (stamp(0), stamp(60))
    assert cancel.reservation == cancelled
    assert [e.at.ToNanoseconds() for e in page.events] == sorted(e.at.ToNanoseconds() for e in page.events)
    # resuming from any event's cursor gives exactly what follows it, in pages
    rest, after = [], page.events[2].cursor
    while True:
        more = caller("changes", pb.ChangesRequest(resource_id=room, after=after, page_size=2))
        rest += list(more.events)
        after = more.cursor
        if not more.events:
            break
    assert rest == list(page.events[3:])
    assert caller("changes", pb.ChangesRequest(resource_id=room, after=page.cursor)).events == []
    by_user = changes_until(caller, 5, user_id=user)
    assert [e.kind for e in by_user.events] == [e.kind for e in page.events[1:]]  # not the resource's definition
    foreign = failure(caller, "changes", pb.ChangesRequest(resource_id=unique("room"), after=page.cursor))
    assert foreign.code == "invalid_argument"  # a cursor of another scope
    assert failure(caller, "changes", pb.ChangesRequest(resource_id=room, user_id="alice")).code == "invalid_argument"


def test_a_pool_counts_units_and_its_conflict_names_the_full_window(caller):
    pool = unique("pool")
    caller("define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=pool, capacity=3, step=minutes(15))))
    first = caller(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=pool, start=0, end=60, units=2))
    ).reservation
    one = caller(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=pool, user="bob", start=30, end=45))
    ).reservation
    assert (first.units, one.units) == (2, 1)
    full = failure(
        caller, "reserve", pb.ReserveRequest(reservation=reservation(resource=pool, user="carol", start=15, end=45))
    )
    assert full.code == "failed_precondition", full.message
    detail = full.detail(pb.ReservationConflict)
    assert (detail.full_window.start, detail.full_window.end, detail.units_free) == (stamp(30), stamp(45), 0)
    assert sorted((c.id, c.units) for c in detail.conflicts) == sorted([(first.id, 2), (one.id, 1)])
    assert detail.requested.units == 1 and detail.resource_id == pool
    caller("reserve", pb.ReserveRequest(reservation=reservation(resource=pool, user="carol", start=0, end=30)))
    free = caller("availability", pb.AvailabilityRequest(resource_ids=[pool], start=stamp(0), end=stamp(60)))
    assert [(u.start, u.end, u.free) for u in free.resources[0].free_units] == [
        (stamp(0), stamp(45), 0),
        (stamp(45), stamp(60), 1),
    ]
    assert (
        failure(
            caller, "reserve", pb.ReserveRequest(reservation=reservation(resource=pool, start=0, end=60, units=4))
        ).code
        == "invalid_argument"
    )


def test_a_hold_expires_and_reads_expired(caller):
    room = unique("desk")
    held = caller(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=room), hold_for=Duration(nanos=50_000_000))
    ).reservation
    assert held.status == pb.PENDING and held.HasField("expires_at")
    time.sleep(0.1)
    assert caller("get", pb.GetRequest(id=held.id)).reservation.status == pb.EXPIRED
    assert failure(caller, "confirm", pb.ConfirmRequest(id=held.id)).code == "failed_precondition"
    taken = caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob"))).reservation
    assert taken.id != held.id  # an expired hold blocks nothing


def test_a_retried_reserve_with_its_request_id_books_once(caller):
    room = unique("room")
    request = pb.ReserveRequest(reservation=reservation(resource=room), request_id=unique("req"))
    made = caller("reserve", request).reservation
    assert caller("reserve", request).reservation == made
    request.reservation.note = "other"
    assert failure(caller, "reserve", request).code == "already_exists"


# ---- who calls: tenants and acting users, as headers or gRPC metadata ----------------------------------------


def test_tenants_from_metadata_see_nothing_of_each_other(caller):
    victim, attacker = caller.as_(unique("team")), caller.as_(unique("team"))
    room, secret = unique("room"), "board meeting: the merger"
    victim("define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=room, labels={"floor": "3"})))
    request_id = unique("req")
    hidden = victim(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=room, note=secret), request_id=request_id)
    ).reservation
    # the same resource, window and request id are the attacker's own
    own = attacker(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="mallory"), request_id=request_id)
    ).reservation
    assert own.id != hidden.id
    clash = failure(attacker, "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="mallory")))
    assert clash.code == "failed_precondition" and hidden.id not in clash.message
    assert [c.id for c in clash.detail(pb.ReservationConflict).conflicts] == [own.id]
    seen = [clash.message, str(clash.detail(pb.ReservationConflict))]
    for method, request in (
        ("get", pb.GetRequest(id=hidden.id)),
        ("update", pb.UpdateRequest(id=hidden.id, status=pb.BLOCKED, note="x")),
        ("confirm", pb.ConfirmRequest(id=hidden.id)),
        ("cancel", pb.CancelRequest(id=hidden.id)),
        ("reschedule", pb.RescheduleRequest(id=hidden.id, start=stamp(600), end=stamp(660))),
    ):
        refused = failure(attacker, method, request)
        assert (refused.code, refused.message) == ("not_found", f"reservation {hidden.id} not found"), method
    for query in (pb.QueryRequest(), pb.QueryRequest(user_id="alice"), pb.QueryRequest(resource_id=room)):
        listed = attacker("filter", pb.FilterRequest(query=query)).reservations
        assert [r.id for r in listed] in ([], [own.id])
        seen.append(str(listed))
    assert [r.id for r in attacker.query(pb.QueryRequest())[0]] == [own.id]
    assert attacker("list_resources", pb.ListResourcesRequest(labels={"floor": "3"})).resources == []
    assert failure(attacker, "get_resource", pb.GetResourceRequest(id=room)).code == "not_found"
    free = attacker("availability", pb.AvailabilityRequest(resource_ids=[room], start=stamp(60), end=stamp(120)))
    assert not free.resources[0].busy
    feed = changes_until(attacker, 1)
    assert {e.reservation.id for e in feed.events} == {own.id}
    seen.append(str(feed))
    assert secret not in "".join(seen) and hidden.id not in "".join(seen)
    assert victim("get", pb.GetRequest(id=hidden.id)).reservation == hidden
    assert [r.id for r in victim("filter", pb.FilterRequest(query=pb.QueryRequest())).reservations] == [hidden.id]
    # the default tenant (no metadata) sees neither
    assert failure(caller, "get", pb.GetRequest(id=own.id)).code == "not_found"
    bad = failure(caller.as_("Team-A"), "get", pb.GetRequest(id=own.id))
    assert bad.code == "invalid_argument" and bad.message.startswith("x-tenant-id")


def test_an_acting_user_changes_only_its_own_reservations(caller):
    tenant = unique("team")
    anyone, alice = caller.as_(tenant), caller.as_(tenant, acting="alice")
    room = unique("room")
    bobs = anyone("reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob"))).reservation
    assert (
        failure(
            alice, "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob", start=120, end=180))
        ).code
        == "permission_denied"
    )
    for method, request in (
        ("update", pb.UpdateRequest(id=bobs.id, note="mine")),
        ("confirm", pb.ConfirmRequest(id=bobs.id)),
        ("cancel", pb.CancelRequest(id=bobs.id)),
        ("reschedule", pb.RescheduleRequest(id=bobs.id, start=stamp(300), end=stamp(360))),
    ):
        assert failure(alice, method, request).code == "permission_denied", method
    assert alice("get", pb.GetRequest(id=bobs.id)).reservation == bobs  # reading is not acting
    own = alice(
        "reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="alice", start=120, end=180))
    ).reservation
    alice("confirm", pb.ConfirmRequest(id=own.id))
    alice("update", pb.UpdateRequest(id=own.id, note="ok"))
    alice("reschedule", pb.RescheduleRequest(id=own.id, start=stamp(300), end=stamp(360)))
    alice("cancel", pb.CancelRequest(id=own.id))
    malformed = failure(caller.as_(tenant, acting="a" * 129), "get", pb.GetRequest(id=bobs.id))
    assert malformed.code == "invalid_argument" and malformed.message.startswith("x-acting-user")


# ---- errors that must not break ------------------------------------------------------------------------------


def test_a_conflict_over_60_reservations_lists_10_and_counts_all(caller):
    room = unique("room")
    made = [
        caller(
            "reserve",
            pb.ReserveRequest(
                reservation=reservation(resource=room, user=f"user{n % 7}", start=n, end=n + 1, note="n" * 500)
            ),
        ).reservation
        for n in range(60)
    ]
    refused = failure(caller, "reserve", pb.ReserveRequest(reservation=reservation(resource=room, start=-5, end=65)))
    assert refused.code == "failed_precondition", refused.message  # never resource_exhausted / "Stream removed"
    conflict = refused.detail(pb.ReservationConflict)
    assert (len(conflict.conflicts), conflict.total) == (10, 60)
    assert [c.id for c in conflict.conflicts] == [r.id for r in made[:10]]
    assert refused.message.endswith("and 50 more") and refused.message.count("[") == 10
    assert refused.details_bytes < GRPC_METADATA_LIMIT // 4
    moved = failure(caller, "reschedule", pb.RescheduleRequest(id=made[0].id, start=stamp(0), end=stamp(60)))
    assert moved.code == "failed_precondition"
    assert (len(moved.detail(pb.ReservationConflict).conflicts), moved.detail(pb.ReservationConflict).total) == (10, 59)


class LostAnswers:
    """A store whose commits are applied and their answers lost; from then on every call fails."""

    def __init__(self, store):
        self.store, self.broken = store, False

    def commit(self, plan):
        self.store.commit(plan)
        self.broken = True
        raise OutcomeUnknown("the answer was lost")

    def __getattr__(self, name):
        attribute = getattr(self.store, name)
        if not callable(attribute):
            return attribute

        def call(*arguments, **keywords):
            if self.broken:
                raise StorageUnavailable("storage is down")
            return attribute(*arguments, **keywords)

        return call


@pytest.fixture
def lossy():
    """(api over a store that loses answers, a gRPC stub of a native server serving it)."""
    store = LostAnswers(FakeStore())
    api = build_api(store)
    server, port = build_server(api, "127.0.0.1", 0, workers=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield store, api, ReservationServiceStub(channel)
    finally:
        channel.close()
        server.stop(None)


def test_a_reserve_whose_outcome_is_unknown_answers_unknown_with_the_id_on_both_protocols(lossy):
    store, api, stub = lossy
    request = pb.ReserveRequest(reservation=reservation(resource="room-lost"), request_id="req-lost")
    with pytest.raises(grpc.RpcError) as raised:
        stub.reserve(request, timeout=30)
    lost = GrpcCaller._failed(raised.value)
    assert lost.code == "unknown", lost.message
    over_grpc = lost.detail(pb.OutcomeUnknown)
    assert over_grpc.request_id == "req-lost" and over_grpc.reservation_id in lost.message

    store.broken = False
    request.reservation.resource_id = "room-lost-2"
    request.request_id = "req-lost-2"
    answer = connect.handle(
        api, "reserve", "POST", {"content-type": "application/proto"}, request.SerializeToString(), None
    )
    error = json.loads(answer.body)
    assert (answer.status, error["code"]) == (500, "unknown")
    (detail,) = error["details"]
    assert detail["type"] == "reservation.OutcomeUnknown"
    over_connect = pb.OutcomeUnknown.FromString(base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4)))
    assert over_connect.request_id == "req-lost-2" and over_connect.reservation_id in error["message"]

    store.broken = False  # storage is back: both reservations were made, and a retry returns them
    for detail, room, _request_id in (
        (over_grpc, "room-lost", "req-lost"),
        (over_connect, "room-lost-2", "req-lost-2"),
    ):
        assert stub.get(pb.GetRequest(id=detail.reservation_id), timeout=10).reservation.resource_id == room
    assert (
        stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource="room-lost"), request_id="req-lost"), timeout=10
        ).reservation.id
        == over_grpc.reservation_id
    )


# ---- gRPC as operators and tools meet it ---------------------------------------------------------------------


def test_grpc_health_and_reflection(local_server):
    channel = grpc.insecure_channel(local_server.grpc_target)
    health_stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "reservation.ReservationService"):
        answer = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection_stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection_stub.ServerReflectionInfo(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="reservation.ReservationService"),
            ]
        )
    )
    listed, files = set(), []
    for answer in answers:
        listed |= {service.name for service in answer.list_services_response.service}
        files += answer.file_descriptor_response.file_descriptor_proto
    assert {"reservation.ReservationService", "grpc.health.v1.Health"} <= listed
    from google.protobuf import descriptor_pb2

    described = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    methods = {m.name for f in described for s in f.service if s.name == "ReservationService" for m in s.method}
    assert {"listen", "changes", "find_slots", "availability", "reschedule", "define_resource"} <= methods
    channel.close()


def buf_curl_grpc(server, method: str, data: dict, *extra: str) -> subprocess.CompletedProcess:
    """buf curl over gRPC with no proto files: it learns the schema from server reflection."""
    return subprocess.run(
        [
            BUF,
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "--data",
            json.dumps(data),
            *extra,
            f"http://{server.grpc_target}/reservation.ReservationService/{method}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_buf_curl_over_grpc_with_reflection_only(local_server):
    room, tenant = unique("room"), unique("team")
    data = {
        "reservation": {
            "userId": "dana",
            "resourceId": room,
            "start": "2026-12-01T10:00:00Z",
            "end": "2026-12-01T11:00:00Z",
        }
    }
    answer = buf_curl_grpc(local_server, "reserve", data, "-H", f"x-tenant-id: {tenant}")
    assert answer.returncode == 0, answer.stderr
    made = json.loads(answer.stdout)["reservation"]
    assert made["userId"] == "dana"
    clash = buf_curl_grpc(local_server, "reserve", data, "-H", f"x-tenant-id: {tenant}")
    assert clash.returncode != 0 and "failed_precondition" in clash.stderr.lower() and made["id"] in clash.stderr
    # the new RPCs, and the tenant from the header: another tenant sees nothing
    found = buf_curl_grpc(
        local_server,
        "find_slots",
        {"resourceIds": [room], "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T12:00:00Z", "duration": "3600s"},
        "-H",
        f"x-tenant-id: {tenant}",
    )
    assert found.returncode == 0, found.stderr
    assert [slot["start"] for slot in json.loads(found.stdout)["slots"]] == ["2026-12-01T11:00:00Z"]
    deadline = time.monotonic() + 5
    while True:
        feed = buf_curl_grpc(local_server, "changes", {"resourceId": room}, "-H", f"x-tenant-id: {tenant}")
        assert feed.returncode == 0, feed.stderr
        events = json.loads(feed.stdout).get("events", [])
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(e["kind"], e["reservation"]["id"]) for e in events] == [("RESERVATION_CREATED", made["id"])]
    other = buf_curl_grpc(local_server, "get", {"id": made["id"]}, "-H", f"x-tenant-id: {unique('team')}")
    assert other.returncode != 0 and "not_found" in other.stderr.lower()
