"""`make serve` as a process: a busy port is one clear line and a non-zero exit; a stopped server is gone fast.
And what it runs beside the API (devserver/background.py): the hold sweep and the change-feed push."""

import concurrent.futures
import datetime
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import grpc
import pytest
from connectrpc.errors import ConnectError
from google.protobuf.duration_pb2 import Duration

from chalicelib.api import CallContext
from chalicelib.errors import ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Caller
from chalicelib.runtime import default_api
from devserver import background
from grpc_server import SERVER_OPTIONS, build_server
from harness.local_server import LocalServer
from harness.moto import ROOT, TABLE
from ops.checker import check
from rsvp.client import ReservationClient
from tests.gen.reservation_connect import ReservationServiceClientSync
from tests.helpers import reservation, stamp


def _serve(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devserver.serve", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_busy_http_port_ends_serve_with_one_line(local_server):
    busy = local_server.url.rsplit(":", 1)[1]
    began = time.monotonic()
    second = _serve("--port", busy, "--grpc-port", "0")
    assert second.returncode != 0 and second.stdout == ""
    assert second.stderr.splitlines() == [f"my-reservation: port {busy} is already in use (set PORT=... or --port)"]
    assert time.monotonic() - began < 10  # refused before the embedded DynamoDB starts


def test_a_busy_grpc_port_ends_serve_with_one_line(local_server):
    busy = local_server.grpc_target.rsplit(":", 1)[1]
    second = _serve("--port", "0", "--grpc-port", busy)
    assert second.returncode != 0 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"my-reservation: gRPC port {busy} is already in use (set GRPC_PORT=... or --grpc-port)"
    ]


def test_grpc_servers_do_not_share_a_port():
    """grpcio sets SO_REUSEPORT unless told not to: two servers would then split the clients between them."""
    first, port = build_server(None, "127.0.0.1", 0)
    try:
        second = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1), options=SERVER_OPTIONS)
        with pytest.raises(RuntimeError):
            second.add_insecure_port(f"127.0.0.1:{port}")
    finally:
        first.stop(None)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_server_exits_within_5_seconds(stop_signal):
    """Also with `listen` streams open on both endpoints: they end with the server, they do not hold it up."""
    from tests.test_listen import ConnectListener, GrpcListener

    server = LocalServer()
    listeners = []
    try:
        start = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
        ReservationClient(server.url).reserve("room", "alice", start, start + datetime.timedelta(hours=1))
        listeners += [GrpcListener(server, pb.ListenRequest()), ConnectListener(server, pb.ListenRequest())]
        time.sleep(0.5)
        assert not any(listener.finished.is_set() for listener in listeners)
        server.process.send_signal(stop_signal)
        began = time.monotonic()
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
        assert all(listener.finished.wait(5) for listener in listeners)
    finally:
        for listener in listeners:
            listener.close()
        server.stop()


def _threads_of(process) -> int:
    return len(os.listdir(f"/proc/{process.pid}/task"))


def _settled_threads_of(process) -> int:
    """The server's threads once those of connections that clients dropped have ended: rsvp clients of
    earlier tests keep their connection (and its server thread) until they are collected."""
    gc.collect()
    count = _threads_of(process)
    for _ in range(50):
        time.sleep(0.2)
        count, previous = _threads_of(process), count
        if count == previous:
            break
    return count


def test_connect_listeners_that_leave_give_their_thread_back(local_server):
    """make serve's Connect endpoint serves each connection on a thread of its own: a `listen` whose client
    went away must notice (at its next poll) and end, or every listener ever opened would keep polling."""
    from tests.test_listen import ConnectListener

    before = _settled_threads_of(local_server.process)
    listeners = [ConnectListener(local_server, pb.ListenRequest(resource_id=f"room-{n}")) for n in range(10)]
    try:
        time.sleep(0.5)
        assert _threads_of(local_server.process) >= before + 10
    finally:
        for listener in listeners:
            listener.close()
    deadline = time.monotonic() + 5
    while _threads_of(local_server.process) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _threads_of(local_server.process) <= before


# ---- what runs beside the API (devserver/background.py): the hold sweep and the change-feed push ----------------


@pytest.fixture
def scheduled(monkeypatch):
    """What start_sweep / start_pump schedule, as (seconds, work, name), instead of starting a thread."""
    rounds = []
    monkeypatch.setattr(background, "every", lambda seconds, work, name: rounds.append((seconds, work, name)))
    return rounds


def _reserve(api, tenant: str, resource: str, hold_for=None, **fields) -> pb.Reservation:
    request = pb.ReserveRequest(reservation=reservation(resource=resource, **fields))
    if hold_for is not None:
        request.hold_for.CopyFrom(hold_for)
    return api.reserve(request, CallContext(Caller(tenant))).reservation


def _feed(api, tenant: str, **scope) -> list:
    return list(api.changes(pb.ChangesRequest(**scope), CallContext(Caller(tenant))).events)


def test_every_runs_its_work_again_after_a_failing_round(capsys):
    rounds, third = [], threading.Event()

    def work():
        rounds.append(time.monotonic())
        if len(rounds) == 1:
            raise RuntimeError("the table is gone")
        if len(rounds) == 3:
            third.set()
            threading.Event().wait()  # park this daemon thread for good: the test is over

    began = time.monotonic()
    thread = background.every(0.05, work, "test round")
    assert third.wait(10) and thread.daemon and thread.name == "test round"
    assert rounds[0] - began >= 0.05  # the first round waits its period too
    assert capsys.readouterr().err == "my-reservation: test round failed: RuntimeError('the table is gone')\n"


def test_the_sweep_removes_expired_holds_of_every_tenant_with_their_events(dynamodb, scheduled):
    api = default_api()
    background.start_sweep(0.5)
    ((seconds, sweep, name),) = scheduled
    assert (seconds, name) == (0.5, "hold sweep")
    brief = Duration(nanos=1_000_000)
    expiring = {
        (tenant, _reserve(api, tenant, resource, hold_for=brief).id)
        for tenant, resource in (("team-a", "desk-1"), ("team-a", "desk-2"), ("team-b", "desk-1"))
    }
    staying = [
        _reserve(api, "team-a", "desk-3", hold_for=Duration(seconds=3600)),
        _reserve(api, "team-a", "desk-4"),
    ]  # a hold of an hour, and a PENDING that is no hold
    time.sleep(0.01)
    assert sweep() == 3
    for tenant, rid in expiring:
        with pytest.raises(ServiceError) as raised:
            api.get(pb.GetRequest(id=rid), CallContext(Caller(tenant)))
        assert raised.value.code.value == "not_found"
    for kept in staying:
        assert api.get(pb.GetRequest(id=kept.id), CallContext(Caller("team-a"))).reservation == kept
    expired = {
        (tenant, event.reservation.id)
        for tenant in ("team-a", "team-b")
        for event in _feed(api, tenant)
        if event.kind == pb.RESERVATION_EXPIRED
    }
    assert expired == expiring
    assert sweep() == 0  # nothing left to do, nothing done twice
    assert check(dynamodb, TABLE) == []


def test_the_sweep_gives_a_pools_units_back(dynamodb, scheduled):
    # Regression (fixed in 570341e): two expired holds of one pool in one bucket made the sweep's transaction
    # update that bucket twice; DynamoDB refused it ("multiple operations on one item") and the whole sweep
    # failed, every round, for every tenant (see tests/test_listen.py).
    api = default_api()
    background.start_sweep(1)
    ((_, sweep, _),) = scheduled
    api.define_resource(
        pb.DefineResourceRequest(resource=pb.Resource(id="pool", capacity=3, step=Duration(seconds=900))),
        CallContext(Caller("team-a")),
    )
    kept = _reserve(api, "team-a", "pool", start=0, end=60)
    holds = [
        _reserve(api, "team-a", "pool", user=f"u{n}", start=0, end=30, hold_for=Duration(nanos=1_000_000))
        for n in range(2)
    ]
    time.sleep(0.01)
    assert sweep() == 2
    assert [
        r.id
        for r in api.filter(
            pb.FilterRequest(query=pb.QueryRequest(resource_id="pool")), CallContext(Caller("team-a"))
        ).reservations
    ] == [kept.id]
    assert check(dynamodb, TABLE) == []  # the buckets count the one reservation left
    assert {e.reservation.id for e in _feed(api, "team-a") if e.kind == pb.RESERVATION_EXPIRED} == {h.id for h in holds}


def _pump_of(local_server) -> tuple:
    """A StreamPump of the local server's embedded table (from now on) and the entries it publishes."""
    published = []
    pump = background.StreamPump(local_server.dynamodb_url, local_server.table, publish=published.extend)
    pump.pump()
    published.clear()
    return pump, published


def _mine(published: list, tenant: str) -> list:
    return [
        (entry["DetailType"], json.loads(entry["Detail"]))
        for entry in published
        if json.loads(entry["Detail"])["tenant"] == tenant
    ]


def test_the_stream_pump_publishes_each_change_event_once(local_server):
    pump, published = _pump_of(local_server)
    tenant, room = f"team-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    headers = {"x-tenant-id": tenant}
    with ReservationServiceClientSync(local_server.url) as client:
        client.define_resource(pb.DefineResourceRequest(resource=pb.Resource(id=room, name="R")), headers=headers)
        made = client.reserve(
            pb.ReserveRequest(reservation=reservation(resource=room, note="n")), headers=headers
        ).reservation
        with pytest.raises(ConnectError):  # a refused change writes no event: nothing to publish
            client.reserve(pb.ReserveRequest(reservation=reservation(resource=room)), headers=headers)
        client.confirm(pb.ConfirmRequest(id=made.id), headers=headers)
        client.update(pb.UpdateRequest(id=made.id, note="m"), headers=headers)
        client.reschedule(pb.RescheduleRequest(id=made.id, start=stamp(60), end=stamp(120)), headers=headers)
        client.cancel(pb.CancelRequest(id=made.id), headers=headers)
        client.delete_resource(pb.DeleteResourceRequest(id=room), headers=headers)
    pump.pump()
    mine = _mine(published, tenant)
    assert [kind for kind, _ in mine] == [
        "resource.defined",
        "reservation.created",
        "reservation.confirmed",
        "reservation.updated",
        "reservation.rescheduled",
        "reservation.cancelled",
        "resource.deleted",
    ]
    assert all(
        entry["Source"] == "my-reservation" and entry["EventBusName"] == background.LOCAL_BUS for entry in published
    )
    _, created = mine[1]
    assert created["kind"] == "RESERVATION_CREATED" and "cursor" not in created
    assert (created["reservation"]["id"], created["reservation"]["note"]) == (made.id, "n")
    assert mine[0][1]["resource"]["id"] == room and mine[4][1]["before"]["start"] == "2026-12-01T00:00:00Z"
    assert len(published) == len(mine)  # nothing else was written meanwhile, and bookings, guards... are no events
    pump.pump()
    assert len(published) == len(mine)  # published once


def test_a_move_to_another_resource_is_published_once(local_server):
    # Regression (fixed in 570341e): a reschedule to another resource writes its event in both resources'
    # feeds, and every inserted event item used to become an EventBridge event: subscribers got the same
    # reservation.rescheduled twice.
    pump, published = _pump_of(local_server)
    tenant = f"team-{uuid.uuid4().hex[:8]}"
    headers = {"x-tenant-id": tenant}
    with ReservationServiceClientSync(local_server.url) as client:
        made = client.reserve(pb.ReserveRequest(reservation=reservation(resource="from")), headers=headers)
        client.reschedule(
            pb.RescheduleRequest(id=made.reservation.id, start=stamp(0), end=stamp(60), resource_id="to"),
            headers=headers,
        )
    pump.pump()
    assert [kind for kind, _ in _mine(published, tenant)] == ["reservation.created", "reservation.rescheduled"]


def test_start_pump_prints_each_event_it_would_publish_on_stderr(local_server, scheduled, capsys):
    background.start_pump(local_server.dynamodb_url, local_server.table, 0.2)
    ((seconds, pump, name),) = scheduled
    assert (seconds, name) == (0.2, "change-feed push")
    tenant = f"team-{uuid.uuid4().hex[:8]}"
    with ReservationServiceClientSync(local_server.url) as client:
        made = client.reserve(
            pb.ReserveRequest(reservation=reservation(resource="room")), headers={"x-tenant-id": tenant}
        ).reservation
    pump()
    lines = capsys.readouterr().err.splitlines()
    (line,) = [line for line in lines if made.id in line]
    prefix = "my-reservation: EventBridge reservation.created "
    assert line.startswith(prefix)
    detail = json.loads(line[len(prefix) :])
    assert (detail["tenant"], detail["reservation"]["id"], detail["kind"]) == (tenant, made.id, "RESERVATION_CREATED")
