"""The same scenarios through both adapters: Connect (Chalice app) and native gRPC (grpcio)."""
import uuid

import grpc
import pytest
from connectrpc.client import ResponseMetadata
from connectrpc.errors import ConnectError
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chalicelib.gen import reservation_pb2 as pb
from rsvp.gen.reservation_connect import ReservationServiceClientSync
from rsvp.gen.reservation_pb2_grpc import ReservationServiceStub
from tests.helpers import reservation


class Failed(Exception):
    def __init__(self, code: str, message: str, details: list):
        super().__init__(message)
        self.code, self.details = code, details


class ConnectCaller:
    def __init__(self, server):
        self.client = ReservationServiceClientSync(server.url)

    def __call__(self, method: str, request):
        try:
            return getattr(self.client, method)(request)
        except ConnectError as error:
            raise Failed(error.code.name.lower(), error.message, list(error.details)) from None

    def query(self, request):
        try:
            with ResponseMetadata() as metadata:
                messages = list(self.client.query(request))
            return messages, metadata.trailers().get("next-page-token", "")
        except ConnectError as error:
            raise Failed(error.code.name.lower(), error.message, list(error.details)) from None


class GrpcCaller:
    def __init__(self, server):
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.stub = ReservationServiceStub(self.channel)

    @staticmethod
    def _failed(error: grpc.RpcError) -> Failed:
        details = []
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                details = list(status_pb2.Status.FromString(value).details)
        return Failed(error.code().name.lower(), error.details(), details)

    def __call__(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, timeout=10)
        except grpc.RpcError as error:
            raise self._failed(error) from None

    def query(self, request):
        call = self.stub.Query(request, timeout=10)
        try:
            messages = list(call)
        except grpc.RpcError as error:
            raise self._failed(error) from None
        return messages, dict(call.trailing_metadata()).get("next-page-token", "")


@pytest.fixture(params=["connect", "grpc"])
def caller(request, local_server):
    return (ConnectCaller if request.param == "connect" else GrpcCaller)(local_server)


def test_reserve_conflict_confirm_update_cancel_get(caller):
    room = f"room-{uuid.uuid4().hex[:8]}"
    made = caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room))).reservation
    with pytest.raises(Failed) as raised:
        caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, user="bob", start=30, end=90)))
    assert raised.value.code == "failed_precondition" and made.id in str(raised.value)
    conflict = pb.ReservationConflict()
    assert raised.value.details[0].Unpack(conflict) and [c.id for c in conflict.conflicts] == [made.id]
    assert caller("confirm", pb.ConfirmRequest(id=made.id)).reservation.status == pb.CONFIRMED
    updated = caller("update", pb.UpdateRequest(id=made.id, note="moved")).reservation
    assert (updated.status, updated.note) == (pb.CONFIRMED, "moved")
    assert caller("get", pb.GetRequest(id=made.id)).reservation == updated
    assert caller("cancel", pb.CancelRequest(id=made.id)).reservation == updated
    for method, request in (("get", pb.GetRequest(id=made.id)), ("cancel", pb.CancelRequest(id=made.id))):
        with pytest.raises(Failed) as raised:
            caller(method, request)
        assert raised.value.code == "not_found"
    with pytest.raises(Failed) as raised:
        caller("get", pb.GetRequest(id="not-an-id"))
    assert raised.value.code == "invalid_argument"


def test_query_pages_with_the_token_in_the_trailers(caller):
    room = f"room-{uuid.uuid4().hex[:8]}"
    made = [caller("reserve", pb.ReserveRequest(reservation=reservation(resource=room, start=n * 10, end=n * 10 + 10)))
            .reservation.id for n in range(7)]
    seen, token, pages = [], "", 0
    while True:
        messages, token = caller.query(pb.QueryRequest(resource_id=room, page_size=3, page_token=token))
        seen += [m.id for m in messages]
        pages += 1
        if not token:
            break
    assert seen == made and pages == 3
    with pytest.raises(Failed) as raised:
        caller.query(pb.QueryRequest(resource_id=room, page_token="forged"))
    assert raised.value.code == "invalid_argument"


def test_grpc_health_and_reflection(local_server):
    channel = grpc.insecure_channel(local_server.grpc_target)
    health_stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "reservation.ReservationService"):
        answer = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection_stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection_stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    listed = {service.name for answer in answers for service in answer.list_services_response.service}
    assert {"reservation.ReservationService", "grpc.health.v1.Health"} <= listed


def test_buf_curl_over_grpc_with_reflection_only(local_server):
    """No proto files: buf curl learns the schema from server reflection."""
    import json
    import pathlib
    import subprocess
    import sys

    buf = str(pathlib.Path(sys.executable).parent / "buf")
    data = {"reservation": {"userId": "dana", "resourceId": f"room-{uuid.uuid4().hex[:8]}",
                            "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}}
    answer = subprocess.run([buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", json.dumps(data),
                             f"http://{local_server.grpc_target}/reservation.ReservationService/reserve"],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["reservation"]["userId"] == "dana"
