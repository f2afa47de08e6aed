"""The Python client library and the rsvp CLI, against `make serve`."""
import datetime
import json
import pathlib
import subprocess
import sys
import uuid

import pytest

from rsvp import cli
from rsvp.client import ReservationClient, ReservationError

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("use_json", [False, True])
def test_client_round_trip(local_server, use_json):
    client = ReservationClient(local_server.url, use_json=use_json)
    resource = room()
    made = client.reserve(resource, "alice", T0, T0 + HOUR, note="kick-off")
    assert client.get(made.id) == made
    with pytest.raises(ReservationError) as raised:
        client.reserve(resource, "bob", T0 + HOUR / 2, T0 + 2 * HOUR)
    assert raised.value.code == "failed_precondition" and [c.id for c in raised.value.conflicts] == [made.id]
    assert client.confirm(made.id).status == 2
    assert client.update(made.id, note="").note == ""
    assert client.update(made.id, status="blocked").status == 3
    assert client.cancel(made.id).id == made.id
    with pytest.raises(ReservationError) as raised:
        client.get(made.id)
    assert raised.value.code == "not_found"


def test_query_iterates_every_page(local_server):
    client = ReservationClient(local_server.url)
    resource = room()
    made = [client.reserve(resource, "u", T0 + n * HOUR, T0 + (n + 1) * HOUR).id for n in range(11)]
    assert [r.id for r in client.query(resource_id=resource, page_size=3)] == made
    assert [r.id for r in client.query(resource_id=resource, start=T0 + 9 * HOUR)] == made[9:]


class LosesFirstAnswer(ReservationClient):
    """The first request reaches the server, but its answer is lost on the way back."""

    sent = 0

    def _once(self, method, request, response_type):
        self.sent += 1
        answer = super()._once(method, request, response_type)
        if self.sent == 1:
            raise ReservationError("unavailable", "connection reset")
        return answer


def test_a_retried_reserve_books_exactly_once(local_server):
    client = LosesFirstAnswer(local_server.url)
    resource = room()
    made = client.reserve(resource, "alice", T0, T0 + HOUR)
    assert client.sent == 2
    assert [r.id for r in ReservationClient(local_server.url).query(resource_id=resource)] == [made.id]


def test_only_retryable_codes_are_retried(local_server):
    client = LosesFirstAnswer(local_server.url)
    client.sent = 1  # no lost answer: count the attempts of a refused call
    with pytest.raises(ReservationError):
        client.get(str(uuid.uuid4()))
    assert client.sent == 2  # one attempt: not_found is final
    unreachable = ReservationClient("http://127.0.0.1:9", max_attempts=2, timeout=1)
    with pytest.raises(ReservationError) as raised:
        unreachable.get(str(uuid.uuid4()))
    assert raised.value.code == "unavailable"


def test_sigv4_signing(local_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = ReservationClient(local_server.url, sign=True, region="eu-west-1")
    headers = client._signed(local_server.url + "/x", b"body", {"Content-Type": "application/proto"})
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"] and "X-Amz-Date" in headers
    assert client.reserve(room(), "alice", T0, T0 + HOUR).id  # the local server ignores the signature


def rsvp(local_server, capsys, *arguments) -> tuple:
    code = cli.main(["--url", local_server.url, *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_reserve_query_timeline_and_json(local_server, capsys):
    resource = room()
    code, out, _ = rsvp(local_server, capsys, "--tz", "Europe/Paris", "reserve", "--resource", resource,
                        "--user", "alice", "--start", "2026-12-01T10:00", "--end", "2026-12-01T12:30",
                        "--note", "planning")
    assert code == 0 and "2026-12-01T10:00+01:00" in out and "planning" in out
    reservation_id = out.splitlines()[1].split()[0]
    code, out, _ = rsvp(local_server, capsys, "--tz", "Europe/Paris", "query", "--resource", resource)
    assert code == 0
    assert "2026-12-01 Tue |..........###...........|" in out and reservation_id in out
    code, out, _ = rsvp(local_server, capsys, "--json", "get", reservation_id)
    document = json.loads(out)
    assert (document["id"], document["start"]) == (reservation_id, "2026-12-01T09:00:00Z")
    code, out, _ = rsvp(local_server, capsys, "update", reservation_id, "--clear-note", "--status", "CONFIRMED")
    assert code == 0 and "CONFIRMED" in out and "planning" not in out
    code, out, _ = rsvp(local_server, capsys, "--json", "query", "--user", "alice", "--start",
                        "2026-12-01T09:30Z", "--end", "2026-12-01T09:31Z")
    assert reservation_id in [r["id"] for r in json.loads(out)]


def test_cli_errors(local_server, capsys):
    resource = room()
    arguments = ["reserve", "--resource", resource, "--user", "a", "--start", "2026-12-01T10:00Z",
                 "--end", "2026-12-01T11:00Z"]
    assert rsvp(local_server, capsys, *arguments)[0] == 0
    code, out, err = rsvp(local_server, capsys, *arguments)
    assert code == 1 and out == ""
    assert err.startswith("rsvp: failed_precondition: resource") and "conflicts with" in err
    code, _, err = rsvp(local_server, capsys, "get", "nope")
    assert code == 1 and "invalid_argument" in err
    with pytest.raises(SystemExit) as raised:
        cli.main(["reserve", "--resource", "r", "--user", "u", "--start", "tomorrow", "--end", "x"])
    assert raised.value.code == 2
    assert "not an ISO-8601 time" in capsys.readouterr().err
    code, _, err = rsvp(local_server, capsys, "--url", "http://127.0.0.1:9", "get", str(uuid.uuid4()))
    assert code == 1 and "unavailable" in err


def test_rsvp_is_installed_as_a_command():
    command = pathlib.Path(sys.executable).parent / "rsvp"
    answer = subprocess.run([str(command), "query", "--help"], capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0 and "--resource" in answer.stdout
