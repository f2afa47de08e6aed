"""`listen` as a true stream on `make serve`: over native gRPC and over its Connect endpoint (chunked envelopes).

Delivery within a second of the change (measured: p50/p99 printed), a stream that stays open until the client
leaves, resuming from an event's cursor with no gap and no duplicate, cursors that are expired, tampered with or
of another scope, and holds removed by the local sweep showing up in the feed and on the EventBridge lines the
devserver prints on stderr. The server of this module runs the sweep every second and signs cursors with a key
known here (so that an expired cursor can be made)."""

import http.client
import json
import queue
import statistics
import struct
import tempfile
import threading
import time
import uuid

import grpc
import pytest
from connectrpc.errors import ConnectError
from google.protobuf.duration_pb2 import Duration

from chalicelib import feed, layout, paging
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import DAY_NS, DEFAULT_TENANT
from chalicelib.ports import Scope
from harness.local_server import LocalServer
from tests.gen.reservation_connect import ReservationServiceClientSync
from tests.gen.reservation_pb2_grpc import ReservationServiceStub
from tests.helpers import PATH, reservation, stamp

SECRET = "tests of listen: a key known to the test"
SWEEP_SECONDS = 1
DELIVERY_SECONDS = 1.0  # issue 17: "listen delivers an event to a connected client within 1 s of the change"
ENVELOPE = struct.Struct(">BI")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ServerWithStderr(LocalServer):
    """LocalServer whose stderr (the EventBridge lines, failures of background rounds) goes to a file."""

    def __init__(self, *arguments: str, environment: dict | None = None):
        self.stderr = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".stderr")
        super().__init__(*arguments, environment=environment, stderr=self.stderr)

    def stderr_lines(self) -> list:
        with open(self.stderr.name) as written:
            return written.read().splitlines()

    def stop(self) -> None:
        super().stop()
        self.stderr.close()


@pytest.fixture(scope="module")
def server():
    started = ServerWithStderr("--sweep-seconds", str(SWEEP_SECONDS), environment={"PAGE_TOKEN_SECRET": SECRET})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield ReservationServiceStub(channel)
    channel.close()


def metadata_of(tenant: str) -> tuple:
    return (("x-tenant-id", tenant),) if tenant else ()


# ---- two ways to listen: each collects (event, arrival time) on a thread of its own --------------------------


class GrpcListener:
    protocol = "grpc"

    def __init__(self, server, request: pb.ListenRequest, tenant: str = ""):
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.call = ReservationServiceStub(self.channel).listen(request, metadata=metadata_of(tenant))
        self.events, self.error, self.finished = queue.Queue(), None, threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for event in self.call:
                self.events.put((event, time.time()))
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.finished.set()

    @property
    def error_code(self) -> str:
        return self.error.code().name.lower() if self.error is not None else ""

    def close(self) -> None:
        self.call.cancel()
        self.finished.wait(5)
        self.channel.close()


class ConnectListener:
    """listen over make serve's Connect endpoint with plain http.client, reading envelopes as they arrive."""

    protocol = "connect"

    def __init__(self, server, request: pb.ListenRequest, tenant: str = "", codec: str = "proto"):
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        self.codec = codec
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        payload = (
            request.SerializeToString()
            if codec == "proto"
            else json.dumps(
                {"resourceId": request.resource_id, "userId": request.user_id, "after": request.after}
            ).encode()
        )
        headers = {"Content-Type": f"application/connect+{codec}", **dict(metadata_of(tenant))}
        self.connection.request("POST", PATH + "listen", body=ENVELOPE.pack(0, len(payload)) + payload, headers=headers)
        self.response = self.connection.getresponse()
        self.events, self.end, self.finished = queue.Queue(), None, threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                header = self.response.read(ENVELOPE.size)
                if len(header) < ENVELOPE.size:
                    return
                flags, length = ENVELOPE.unpack(header)
                payload = self.response.read(length)
                if flags & 0x02:
                    self.end = json.loads(payload)
                    return
                if self.codec == "proto":
                    event = pb.ChangeEvent.FromString(payload)
                else:
                    from google.protobuf import json_format

                    event = json_format.Parse(payload, pb.ChangeEvent())
                self.events.put((event, time.time()))
        except (OSError, http.client.HTTPException, ValueError):
            return
        finally:
            self.finished.set()

    @property
    def error_code(self) -> str:
        return (self.end or {}).get("error", {}).get("code", "")

    def close(self) -> None:
        try:
            self.connection.sock.shutdown(2)
        except OSError:
            pass
        self.finished.wait(5)
        self.connection.close()


LISTENERS = {"grpc": GrpcListener, "connect": ConnectListener}


def next_event(listener, timeout: float = 5.0):
    """(event, arrival time) of the next event, or fails after `timeout`."""
    try:
        return listener.events.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(
            f"no event within {timeout} s over {listener.protocol} "
            f"(finished: {listener.finished.is_set()}, error: {listener.error_code!r})"
        ) from None


def quiet(listener, seconds: float) -> list:
    """Every event that arrives within `seconds` (expected: none)."""
    time.sleep(seconds)
    extra = []
    while not listener.events.empty():
        extra.append(listener.events.get_nowait()[0])
    return extra


def cursor_now(stub, tenant: str = "", **scope) -> str:
    """A cursor at the present end of a scope's feed: a stream from it misses nothing made afterwards."""
    return stub.changes(pb.ChangesRequest(**scope), metadata=metadata_of(tenant), timeout=10).cursor


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# ---- delivery ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_a_listener_gets_each_change_within_a_second(server, stub, protocol):
    room = unique("room")
    listener = LISTENERS[protocol](server, pb.ListenRequest(resource_id=room, after=cursor_now(stub, resource_id=room)))
    try:
        since_sent, since_answered = [], []
        for n in range(20):
            sent = time.time()
            made = stub.reserve(
                pb.ReserveRequest(reservation=reservation(resource=room, start=n * 10, end=n * 10 + 10)), timeout=10
            ).reservation
            answered = time.time()
            event, arrived = next_event(listener)
            assert (event.kind, event.reservation.id) == (pb.RESERVATION_CREATED, made.id)
            since_sent.append(arrived - sent)
            since_answered.append(arrived - answered)
        p50, p99 = percentile(since_sent, 0.5), percentile(since_sent, 0.99)
        print(
            f"\nlisten over {protocol}: from the change's call to the event, p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {max(since_sent) * 1000:.0f} ms (from its answer: p50 "
            f"{statistics.median(since_answered) * 1000:.0f} ms) over {len(since_sent)} events"
        )
        assert max(since_sent) < DELIVERY_SECONDS, since_sent
        assert not listener.finished.is_set()
    finally:
        listener.close()


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_without_a_cursor_a_listener_gets_what_happens_after_it_connects(server, stub, protocol):
    room = unique("room")
    listener = LISTENERS[protocol](server, pb.ListenRequest(resource_id=room))
    try:
        # the server starts reading the feed when the call reaches it: retry until a change made now shows up
        for attempt in range(10):
            stub.define_resource(
                pb.DefineResourceRequest(resource=pb.Resource(id=room, name=f"try {attempt}")), timeout=10
            )
            try:
                event, _ = listener.events.get(timeout=1)
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("no event from a stream without a cursor")
        assert event.kind == pb.RESOURCE_DEFINED
        quiet(listener, 0.5)
        made = stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10).reservation
        event, _ = next_event(listener)
        assert (event.kind, event.reservation.id) == (pb.RESERVATION_CREATED, made.id)
    finally:
        listener.close()


def test_grpc_listen_stays_open_until_the_client_cancels(server, stub):
    room = unique("room")
    listener = GrpcListener(server, pb.ListenRequest(resource_id=room, after=cursor_now(stub, resource_id=room)))
    stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10)
    next_event(listener)
    assert quiet(listener, 3) == []
    assert listener.call.is_active() and not listener.finished.is_set()  # 3 s without events: still open
    listener.close()
    assert listener.finished.is_set() and listener.error_code == "cancelled"


def test_open_grpc_listeners_do_not_hold_up_other_calls(server, stub):
    """make serve's gRPC server serves calls on 8 worker threads, and a listener keeps its thread as long as it
    is open: 8 listeners used to leave no thread for anything else (every other call waited for a listener
    to leave)."""
    room = unique("room")
    start = cursor_now(stub, resource_id=room)
    listeners = []
    try:
        listeners += [GrpcListener(server, pb.ListenRequest(resource_id=room, after=start)) for _ in range(12)]
        time.sleep(0.5)
        began = time.monotonic()
        made = stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=5).reservation
        assert stub.get(pb.GetRequest(id=made.id), timeout=5).reservation == made
        assert time.monotonic() - began < 2
        for listener in listeners:
            assert next_event(listener, timeout=10)[0].reservation.id == made.id
    finally:
        for listener in listeners:
            listener.close()


def test_past_its_limit_of_listeners_grpc_refuses_one_more_at_once(monkeypatch):
    """A native server of 2 workers and 2 listener places, over the in-memory store: a third listener is
    refused (RESOURCE_EXHAUSTED) instead of waiting; other calls go on; a cancelled listener frees its place."""
    import types

    from chalicelib.runtime import build_api
    from grpc_server import build_server
    from harness.fake_store import FakeStore

    monkeypatch.setenv("FEED_SETTLE_MS", "0")
    monkeypatch.setenv("PAGE_TOKEN_SECRET", SECRET)
    native, port = build_server(build_api(FakeStore()), "127.0.0.1", 0, workers=2, listeners=2)
    server = types.SimpleNamespace(grpc_target=f"127.0.0.1:{port}")
    channel = grpc.insecure_channel(server.grpc_target)
    stub = ReservationServiceStub(channel)
    listeners = []
    try:
        start = cursor_now(stub, resource_id="room")
        listeners += [GrpcListener(server, pb.ListenRequest(resource_id="room", after=start)) for _ in range(2)]
        made = stub.reserve(pb.ReserveRequest(reservation=reservation(resource="room")), timeout=5).reservation
        for listener in listeners:
            assert next_event(listener)[0].reservation.id == made.id
        extra = GrpcListener(server, pb.ListenRequest(resource_id="room", after=start))
        listeners.append(extra)
        assert extra.finished.wait(5) and extra.error_code == "resource_exhausted"
        assert extra.error.details() == "too many open listen streams (2); retry later"
        for _ in range(4):  # more calls than workers, one after the other: none waits for a listener
            assert stub.get(pb.GetRequest(id=made.id), timeout=5).reservation == made
        listeners.pop(0).close()
        time.sleep(0.5)  # a listener notices its client left at its next poll (100 ms)
        again = GrpcListener(server, pb.ListenRequest(resource_id="room", after=start))
        listeners.append(again)
        assert next_event(again)[0].reservation.id == made.id
    finally:
        for listener in listeners:
            listener.close()
        channel.close()
        native.stop(None)


def test_connect_listen_is_a_chunked_stream_that_stays_open(server, stub):
    room = unique("room")
    listener = ConnectListener(server, pb.ListenRequest(resource_id=room, after=cursor_now(stub, resource_id=room)))
    try:
        assert listener.response.status == 200
        assert listener.response.getheader("Content-Type") == "application/connect+proto"
        assert listener.response.getheader("Transfer-Encoding") == "chunked"
        made = [
            stub.reserve(
                pb.ReserveRequest(reservation=reservation(resource=room, start=n * 60, end=n * 60 + 30)), timeout=10
            ).reservation
            for n in range(3)
        ]
        assert [next_event(listener)[0].reservation.id for _ in made] == [r.id for r in made]
        assert quiet(listener, 3) == [] and not listener.finished.is_set() and listener.end is None
        stub.cancel(pb.CancelRequest(id=made[0].id), timeout=10)
        event, _ = next_event(listener)
        assert (event.kind, event.before.id) == (pb.RESERVATION_CANCELLED, made[0].id)
    finally:
        listener.close()


def test_connect_listen_in_json_and_with_the_connect_python_client(server, stub):
    room = unique("room")
    start = cursor_now(stub, resource_id=room)
    listener = ConnectListener(server, pb.ListenRequest(resource_id=room, after=start), codec="json")
    got = queue.Queue()

    def with_client():
        with ReservationServiceClientSync(server.url, proto_json=True) as client:
            try:
                for event in client.listen(pb.ListenRequest(resource_id=room, after=start), timeout_ms=30_000):
                    got.put(event)
                    if got.qsize() == 2:
                        return
            except ConnectError as error:
                got.put(error)

    reader = threading.Thread(target=with_client, daemon=True)
    reader.start()
    try:
        assert listener.response.getheader("Content-Type") == "application/connect+json"
        made = stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10).reservation
        assert next_event(listener)[0].reservation.id == made.id
        first = got.get(timeout=5)
        assert isinstance(first, pb.ChangeEvent) and first.reservation.id == made.id  # before the stream ends
        stub.confirm(pb.ConfirmRequest(id=made.id), timeout=10)
        assert next_event(listener)[0].kind == pb.RESERVATION_CONFIRMED
        assert got.get(timeout=5).kind == pb.RESERVATION_CONFIRMED
        reader.join(5)
    finally:
        listener.close()


def test_listen_keeps_tenants_apart(server, stub):
    mine, theirs = unique("team"), unique("team")
    room = unique("room")
    listener = GrpcListener(server, pb.ListenRequest(after=cursor_now(stub, tenant=mine)), tenant=mine)
    try:
        stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource=room, note="secret")),
            timeout=10,
            metadata=metadata_of(theirs),
        )
        stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room, start=120, end=180)), timeout=10)
        own = stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10, metadata=metadata_of(mine)
        ).reservation
        event, _ = next_event(listener)
        assert event.reservation.id == own.id
        assert quiet(listener, 1) == []
    finally:
        listener.close()


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_a_move_to_another_resource_reaches_every_scope_once(server, stub, protocol):
    tenant, user, old, new = unique("team"), unique("user"), unique("room"), unique("room")
    scopes = {"user": {"user_id": user}, "tenant": {}, "old": {"resource_id": old}, "new": {"resource_id": new}}
    listeners = {}
    try:
        for name, scope in scopes.items():
            listeners[name] = LISTENERS[protocol](
                server, pb.ListenRequest(after=cursor_now(stub, tenant=tenant, **scope), **scope), tenant=tenant
            )
        made = stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource=old, user=user)),
            timeout=10,
            metadata=metadata_of(tenant),
        ).reservation
        stub.reschedule(
            pb.RescheduleRequest(id=made.id, start=stamp(0), end=stamp(60), resource_id=new),
            timeout=10,
            metadata=metadata_of(tenant),
        )
        expected = {
            "user": [pb.RESERVATION_CREATED, pb.RESERVATION_RESCHEDULED],
            "tenant": [pb.RESERVATION_CREATED, pb.RESERVATION_RESCHEDULED],
            "old": [pb.RESERVATION_CREATED, pb.RESERVATION_RESCHEDULED],
            "new": [pb.RESERVATION_RESCHEDULED],
        }
        for name, kinds in expected.items():
            got = [next_event(listeners[name])[0] for _ in kinds]
            assert [e.kind for e in got] == kinds, name
            assert (got[-1].before.resource_id, got[-1].reservation.resource_id) == (old, new)
        assert {name: quiet(listener, 0) for name, listener in listeners.items()} == {name: [] for name in scopes}
        time.sleep(1)
        assert {name: quiet(listener, 0) for name, listener in listeners.items()} == {name: [] for name in scopes}
    finally:
        for listener in listeners.values():
            listener.close()


# ---- resuming ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_a_listener_resumes_from_an_events_cursor_with_no_gap_and_no_duplicate(server, stub, protocol):
    room = unique("room")
    start = cursor_now(stub, resource_id=room)
    first = LISTENERS[protocol](server, pb.ListenRequest(resource_id=room, after=start))
    made = stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10).reservation
    stub.confirm(pb.ConfirmRequest(id=made.id), timeout=10)
    stub.update(pb.UpdateRequest(id=made.id, note="a"), timeout=10)
    try:
        seen = [next_event(first)[0] for _ in range(3)]
    finally:
        first.close()
    assert [e.kind for e in seen] == [pb.RESERVATION_CREATED, pb.RESERVATION_CONFIRMED, pb.RESERVATION_UPDATED]
    # while nobody listens
    stub.reschedule(pb.RescheduleRequest(id=made.id, start=stamp(60), end=stamp(120)), timeout=10)
    other = stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room, user="bob")), timeout=10).reservation
    stub.cancel(pb.CancelRequest(id=made.id), timeout=10)
    again = LISTENERS[protocol](server, pb.ListenRequest(resource_id=room, after=seen[1].cursor))
    try:
        resumed = [next_event(again)[0] for _ in range(4)]
        assert quiet(again, 1) == []
        stub.update(pb.UpdateRequest(id=other.id, note="after"), timeout=10)
        resumed.append(next_event(again)[0])
    finally:
        again.close()
    assert resumed[0] == seen[2]  # the event after the cursor: the same one, cursor included
    assert [(e.kind, e.reservation.id) for e in resumed] == [
        (pb.RESERVATION_UPDATED, made.id),
        (pb.RESERVATION_RESCHEDULED, made.id),
        (pb.RESERVATION_CREATED, other.id),
        (pb.RESERVATION_CANCELLED, made.id),
        (pb.RESERVATION_UPDATED, other.id),
    ]
    assert len({e.cursor for e in seen[:2] + resumed}) == 7
    paged = stub.changes(pb.ChangesRequest(resource_id=room, after=seen[1].cursor), timeout=10).events
    assert list(paged) == resumed  # the stream and the pull API agree, cursors included


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_expired_tampered_and_foreign_cursors(server, stub, protocol, monkeypatch):
    room = unique("room")
    monkeypatch.setenv("PAGE_TOKEN_SECRET", SECRET)
    digest = feed._digest(Scope(DEFAULT_TENANT, room, ""))

    def made(age_ns: int) -> str:
        return paging.encode(layout.event_key_bound(time.time_ns() - age_ns), digest)

    def refused(after: str, tenant: str = "", resource: str = room) -> tuple:
        listener = LISTENERS[protocol](server, pb.ListenRequest(resource_id=resource, after=after), tenant=tenant)
        try:
            assert listener.finished.wait(10), "the stream should have ended at once"
        finally:
            listener.close()
        message = listener.error.details() if protocol == "grpc" else listener.end["error"]["message"]
        return listener.error_code, message

    control = LISTENERS[protocol](server, pb.ListenRequest(resource_id=room, after=made(DAY_NS)))
    try:  # a cursor of a day ago, made here with the server's key: accepted (the test's cursors are genuine)
        stub.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), timeout=10)
        assert next_event(control)[0].kind == pb.RESERVATION_CREATED
    finally:
        control.close()
    code, message = refused(made(8 * DAY_NS))
    assert code == "out_of_range" and "7 days" in message and "Query" in message
    genuine = cursor_now(stub, resource_id=room)
    middle = len(genuine) // 2
    tampered = genuine[:middle] + ("A" if genuine[middle] != "A" else "B") + genuine[middle + 1 :]
    assert refused(tampered) == ("invalid_argument", "after: not a token this service issued")
    assert refused("not a cursor")[0] == "invalid_argument"
    assert refused(genuine, resource=unique("room")) == ("invalid_argument", "after: belongs to a different query")
    assert refused(genuine, tenant=unique("team")) == ("invalid_argument", "after: belongs to a different query")


# ---- holds swept by the local sweep --------------------------------------------------------------------------


def test_a_hold_swept_locally_is_in_the_feed_and_on_the_eventbridge_lines(server, stub):
    tenant, room = unique("team"), unique("desk")
    listener = GrpcListener(
        server,
        pb.ListenRequest(resource_id=room, after=cursor_now(stub, tenant=tenant, resource_id=room)),
        tenant=tenant,
    )
    try:
        held = stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource=room), hold_for=Duration(seconds=1)),
            timeout=10,
            metadata=metadata_of(tenant),
        ).reservation
        assert held.status == pb.PENDING and held.HasField("expires_at")
        created, _ = next_event(listener)
        assert (created.kind, created.reservation.id) == (pb.RESERVATION_CREATED, held.id)
        expired, arrived = next_event(listener, timeout=3 + 3 * SWEEP_SECONDS)
        assert (expired.kind, expired.reservation.id) == (pb.RESERVATION_EXPIRED, held.id)
        assert expired.reservation.status == pb.EXPIRED and expired.before.status == pb.PENDING
        expires_at = held.expires_at.ToNanoseconds() / 1e9
        assert expires_at <= expired.at.ToNanoseconds() / 1e9 <= expires_at + SWEEP_SECONDS + 1
        assert arrived - expires_at < SWEEP_SECONDS + DELIVERY_SECONDS + 0.5
    finally:
        listener.close()
    with pytest.raises(grpc.RpcError) as raised:  # the sweep removed it, not a reserve that needed its time
        stub.get(pb.GetRequest(id=held.id), timeout=10, metadata=metadata_of(tenant))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    published = {}
    deadline = time.monotonic() + 5
    while set(published) != {"reservation.created", "reservation.expired"} and time.monotonic() < deadline:
        for line in server.stderr_lines():
            prefix = "my-reservation: EventBridge "
            if line.startswith(prefix) and held.id in line:
                detail_type, detail = line[len(prefix) :].split(" ", 1)
                assert detail_type not in published, f"published twice: {line}"
                published[detail_type] = json.loads(detail)
        time.sleep(0.2)
    assert set(published) == {"reservation.created", "reservation.expired"}, server.stderr_lines()[-20:]
    detail = published["reservation.expired"]
    assert detail["kind"] == "RESERVATION_EXPIRED" and detail["tenant"] == tenant
    assert (detail["reservation"]["id"], detail["reservation"]["status"]) == (held.id, "EXPIRED")
    assert not [line for line in server.stderr_lines() if "failed" in line]


def test_many_holds_are_swept_together_and_pools_get_their_units_back(server, stub):
    # Regression (fixed in 570341e): the sweep never removed two expired holds of one pool that share a
    # bucket: its transaction updated the bucket item once per hold, DynamoDB refused it ("multiple operations
    # on one item") and the whole sweep round failed, every round, for every hold of every tenant.
    pool = unique("pool")
    stub.define_resource(
        pb.DefineResourceRequest(resource=pb.Resource(id=pool, capacity=30, step=Duration(seconds=900))), timeout=10
    )
    start = cursor_now(stub, resource_id=pool)
    held = [
        stub.reserve(
            pb.ReserveRequest(reservation=reservation(resource=pool, user=f"u{n}"), hold_for=Duration(seconds=1)),
            timeout=10,
        ).reservation.id
        for n in range(25)
    ]  # more than one sweep write (20 holds) takes
    listener = GrpcListener(server, pb.ListenRequest(resource_id=pool, after=start))
    try:
        kinds = {}
        deadline = time.monotonic() + 4 + 3 * SWEEP_SECONDS
        while len([k for k in kinds.values() if k == pb.RESERVATION_EXPIRED]) < 25 and time.monotonic() < deadline:
            try:
                event, _ = listener.events.get(timeout=1)
            except queue.Empty:
                continue
            if not event.HasField("reservation"):
                continue  # the definition
            if event.kind == pb.RESERVATION_EXPIRED:
                assert kinds.get(event.reservation.id) == pb.RESERVATION_CREATED, "expired twice, or before made"
            kinds[event.reservation.id] = event.kind
        assert kinds == {rid: pb.RESERVATION_EXPIRED for rid in held}, [
            line for line in server.stderr_lines() if "failed" in line
        ][-3:]
        window = pb.AvailabilityRequest(resource_ids=[pool], start=stamp(0), end=stamp(60))
        assert stub.availability(window, timeout=10).resources[0].free_units[0].free == 30
        assert stub.filter(pb.FilterRequest(query=pb.QueryRequest(resource_id=pool)), timeout=10).reservations == []
        from ops import checker

        assert checker.check(server.dynamodb(), server.table) == []  # the buckets' counters are back to 0
    finally:
        listener.close()
        for rid in held:  # whatever the sweep left: the next tests need a sweep that works
            try:
                stub.cancel(pb.CancelRequest(id=rid), timeout=10)
            except grpc.RpcError:
                pass


def test_the_change_feed_push_never_failed(server):
    """Everything above ran with the push every 200 ms beside it (and the sweep every second)."""
    assert not [line for line in server.stderr_lines() if "change-feed push failed" in line or "Traceback" in line], (
        server.stderr_lines()[-20:]
    )
