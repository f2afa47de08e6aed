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


def test_cli_takes_global_options_after_the_command(local_server, capsys):
    resource = room()
    code, out, _ = rsvp(local_server, capsys, "reserve", "--resource", resource, "--user", "alice", "--start",
                        "2026-12-01T10:00", "--end", "2026-12-01T11:00", "--tz", "Europe/Paris", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["start"] == "2026-12-01T09:00:00Z"  # read in Europe/Paris although --tz came after
    code, out, _ = rsvp(local_server, capsys, "get", made["id"], "--json")
    assert code == 0 and json.loads(out) == made
    code, out, _ = rsvp(local_server, capsys, "query", "--resource", resource, "--tz", "Europe/Paris")
    assert code == 0 and "Europe/Paris" in out and "2026-12-01 Tue |..........#............." in out
    # given on both sides, the one after the command wins; not given after, the one before stays
    code, out, _ = rsvp(local_server, capsys, "--tz", "UTC", "query", "--resource", resource, "--tz", "Asia/Tokyo")
    assert "2026-12-01 Tue |..................#.....|" in out
    code, out, _ = rsvp(local_server, capsys, "--json", "query", "--resource", resource)
    assert [r["id"] for r in json.loads(out)] == [made["id"]]


def test_cli_finds_the_server_by_url_then_rsvp_url_then_port():
    assert cli.service_url("http://a:1", {"RSVP_URL": "http://b:2", "PORT": "3"}) == ("http://a:1", "--url")
    assert cli.service_url(None, {"RSVP_URL": "http://b:2", "PORT": "3"}) == ("http://b:2", "$RSVP_URL")
    assert cli.service_url(None, {"RSVP_URL": "", "PORT": "9000"}) == ("http://127.0.0.1:9000", "$PORT")
    assert cli.service_url(None, {}) == ("http://127.0.0.1:8000", "the default")


def test_cli_uses_port_as_make_serve_does(local_server, capsys, monkeypatch):
    made = ReservationClient(local_server.url).reserve(room(), "alice", T0, T0 + HOUR)
    port = local_server.url.rsplit(":", 1)[1]
    monkeypatch.delenv("RSVP_URL", raising=False)
    monkeypatch.setenv("PORT", port)
    assert cli.main(["get", made.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == made.id
    monkeypatch.setenv("RSVP_URL", "http://127.0.0.1:9")  # RSVP_URL comes before PORT
    assert cli.main(["get", made.id, "--timeout", "1"]) == 1
    assert "URL from $RSVP_URL" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["127.0.0.1:18100", "localhost:8000", "http//127.0.0.1:8000", "http://",
                                 "ftp://127.0.0.1:8000", "http://127.0.0.1:99999", "http://127.0.0.1:8000?x=1"])
def test_cli_says_bad_url_for_a_bad_url(capsys, monkeypatch, url):
    with pytest.raises(SystemExit) as raised:
        cli.main(["--url", url, "get", str(uuid.uuid4())])
    err = capsys.readouterr().err
    assert raised.value.code == 2 and f"bad URL {url!r}" in err and "unavailable" not in err
    monkeypatch.setenv("RSVP_URL", url)
    with pytest.raises(SystemExit) as raised:
        cli.main(["get", str(uuid.uuid4())])
    assert raised.value.code == 2 and "bad URL" in capsys.readouterr().err
    with pytest.raises(ValueError, match="bad URL"):
        ReservationClient(url)


def test_cli_suggests_the_scheme(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--url", "127.0.0.1:18100", "get", "x"])
    assert "did you mean 'http://127.0.0.1:18100'?" in capsys.readouterr().err


def test_cli_query_limit_must_be_at_least_one(local_server, capsys):
    resource = room()
    made = ReservationClient(local_server.url).reserve(resource, "alice", T0, T0 + HOUR)
    for limit in ("0", "-3", "x"):
        with pytest.raises(SystemExit) as raised:
            cli.main(["--url", local_server.url, "query", "--resource", resource, "--limit", limit])
        assert raised.value.code == 2 and "--limit" in capsys.readouterr().err
    code, out, _ = rsvp(local_server, capsys, "query", "--resource", resource, "--limit", "1")
    assert code == 0 and made.id in out and "nothing reserved" not in out


def test_status_names_come_from_the_generated_descriptors():
    from chalicelib.gen import reservation_pb2 as pb
    from rsvp import client

    values = {value.name: value.number for value in pb.ReservationStatus.DESCRIPTOR.values}
    assert client.STATUS_NAMES == values
    assert set(client.SETTABLE_STATUSES) == {name for name, number in values.items() if number != 0}
    statuses = {action.dest: action.choices for action in cli.build_parser()._subparsers._group_actions[0]
                .choices["update"]._actions}["status"]
    assert list(statuses) == list(client.SETTABLE_STATUSES)
    assert client.status_name(2) == "CONFIRMED" and client.status_name(99) == "99"  # a newer server's status
    assert client.SERVICE_NAME == pb.DESCRIPTOR.services_by_name["ReservationService"].full_name


def test_sign_without_botocore_is_a_clear_usage_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # as in `pip install .` without the client extra
    with pytest.raises(SystemExit) as raised:
        cli.main(["--sign", "get", str(uuid.uuid4())])
    assert raised.value.code == 2 and "pip install 'my-reservation-tools[client]'" in capsys.readouterr().err
