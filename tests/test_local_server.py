"""`make serve` as users meet it: real HTTP clients, buf curl, concurrent callers."""
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import threading
import urllib.request
import uuid

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from chalicelib.gen import reservation_pb2 as pb
from rsvp import checker
from rsvp.gen.reservation_connect import ReservationServiceClientSync
from harness.moto import ROOT, scan_all
from tests.helpers import reservation

BUF = str(pathlib.Path(sys.executable).parent / "buf")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("proto_json", [False, True])
def test_connect_python_client_binary_and_json(local_server, proto_json):
    resource = unique("room")
    with ReservationServiceClientSync(local_server.url, proto_json=proto_json) as client:
        made = client.reserve(pb.ReserveRequest(reservation=reservation(resource=resource, note="n" * 2000)))
        assert made.reservation.note == "n" * 2000  # long enough for gzip both ways
        assert client.get(pb.GetRequest(id=made.reservation.id)).reservation == made.reservation
        with pytest.raises(ConnectError) as raised:
            client.reserve(pb.ReserveRequest(reservation=reservation(resource=resource, start=30, end=90)))
        assert raised.value.code == Code.FAILED_PRECONDITION
        conflict = pb.ReservationConflict()
        assert raised.value.details[0].Unpack(conflict)
        assert [c.id for c in conflict.conflicts] == [made.reservation.id]
        confirmed = client.confirm(pb.ConfirmRequest(id=made.reservation.id)).reservation
        assert confirmed.status == pb.CONFIRMED
        updated = client.update(pb.UpdateRequest(id=made.reservation.id, note="")).reservation
        assert (updated.status, updated.note) == (pb.CONFIRMED, "")
        assert client.cancel(pb.CancelRequest(id=made.reservation.id)).reservation == updated
        with pytest.raises(ConnectError) as raised:
            client.get(pb.GetRequest(id=made.reservation.id))
        assert raised.value.code == Code.NOT_FOUND


def buf_curl(url: str, method: str, data: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BUF, "curl", "--schema", str(ROOT / "protos"), "--data", json.dumps(data), *extra,
         f"{url}/reservation.ReservationService/{method}"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_buf_curl(local_server):
    """buf curl sends binary protobuf with no Accept header (it reads the schema from protos/)."""
    resource = unique("desk")
    wanted = {"reservation": {"userId": "carol", "resourceId": resource, "start": "2026-12-01T09:00:00Z",
                              "end": "2026-12-01T09:30:00.25Z"}}
    made = buf_curl(local_server.url, "reserve", wanted, "--protocol", "connect")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)["reservation"]
    assert (answer["resourceId"], answer["end"]) == (resource, "2026-12-01T09:30:00.250Z")
    clash = buf_curl(local_server.url, "reserve", wanted)
    assert clash.returncode != 0
    assert "failed_precondition" in clash.stderr and answer["id"] in clash.stderr


def test_plain_curl_style_json_without_accept(local_server):
    body = json.dumps({"reservation": {"userId": "u", "resourceId": unique("r"),
                                       "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}}).encode()
    request = urllib.request.Request(local_server.url + "/reservation.ReservationService/reserve", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        assert json.loads(answer.read())["reservation"]["status"] == "PENDING"


def test_chunked_request_bodies(local_server):
    import http.client

    host, port = local_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = pb.ReserveRequest(reservation=reservation(resource=unique("c"))).SerializeToString()
    connection.request("POST", "/reservation.ReservationService/reserve", body=iter([body[:7], body[7:]]),
                       headers={"Content-Type": "application/proto"}, encode_chunked=True)
    answer = connection.getresponse()
    assert answer.status == 200
    assert pb.ReserveResponse.FromString(answer.read()).reservation.id


def test_eight_threads_racing_for_one_window_one_wins(local_server):
    threads = 8
    for _ in range(5):
        resource = unique("hot")
        barrier = threading.Barrier(threads)

        def attempt(user: int):
            with ReservationServiceClientSync(local_server.url) as client:
                barrier.wait()
                try:
                    client.reserve(pb.ReserveRequest(reservation=reservation(
                        resource=resource, user=f"u{user}", start=user, end=60 + user)))
                    return "won"
                except ConnectError as error:
                    return error.code

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(attempt, range(threads)))
        assert results.count("won") == 1, results
        assert results.count(Code.FAILED_PRECONDITION) == threads - 1, results
    assert checker.check(local_server.dynamodb(), local_server.table) == []


def test_eight_threads_with_disjoint_windows_all_win(local_server):
    threads, per_thread = 8, 5
    resource = unique("busy")
    barrier = threading.Barrier(threads)

    def book(user: int):
        made = []
        with ReservationServiceClientSync(local_server.url) as client:
            barrier.wait()
            for n in range(per_thread):
                start = (user * per_thread + n) * 10
                made.append(client.reserve(pb.ReserveRequest(reservation=reservation(
                    resource=resource, user=f"u{user}", start=start, end=start + 10))).reservation)
        return made

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        made = [r for batch in pool.map(book, range(threads)) for r in batch]
    assert len({r.id for r in made}) == threads * per_thread
    items = scan_all(local_server.dynamodb(), local_server.table)
    claims = {}
    for item in items:
        if item["pk"]["S"] == f"RES#{resource}":
            claims.update(item["claims"]["M"])
    assert set(claims) == {r.id for r in made}
    stored = [i for i in items if i["sk"]["S"] == "RSV" and i["resource_id"]["S"] == resource]
    assert len(stored) == threads * per_thread
    assert checker.check(local_server.dynamodb(), local_server.table) == []
