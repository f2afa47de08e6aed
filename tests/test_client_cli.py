"""The Python client library and the rsvp CLI, against `make serve`."""

import argparse
import datetime
import http.server
import json
import pathlib
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
import typing
import uuid
import zoneinfo

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb
from harness.moto import ROOT
from rsvp import cli
from rsvp.client import ReservationClient, ReservationError

UTC = datetime.UTC
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


def test_calls_share_one_kept_alive_connection(local_server):
    """A new TCP connection per call cost the client and the server (a thread per connection) a third of a call."""
    client = ReservationClient(local_server.url)
    resource = room()
    made = client.reserve(resource, "u", T0, T0 + HOUR)
    local_port = client._connections.connection.sock.getsockname()[1]
    assert client.get(made.id).id == made.id
    assert [r.id for r in client.query(resource_id=resource)] == [made.id]
    assert client._connections.connection.sock.getsockname()[1] == local_port


class ClosesAfterEachAnswer(http.server.BaseHTTPRequestHandler):
    """Answers GetResponse messages over HTTP/1.1 without saying it closes, then closes (an idle timeout)."""

    protocol_version = "HTTP/1.1"
    connections: typing.ClassVar[list] = []

    def setup(self):
        super().setup()
        self.connections.append(self.client_address)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = pb.GetResponse(reservation=pb.Reservation(id="kept")).SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/proto")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *arguments):
        pass


def test_a_kept_connection_the_server_closed_is_replaced_at_once():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClosesAfterEachAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ReservationClient(f"http://127.0.0.1:{server.server_port}", max_attempts=1)
        assert [client.get("a").id, client.get("b").id, client.get("c").id] == ["kept"] * 3
        assert len(ClosesAfterEachAnswer.connections) == 3
    finally:
        server.shutdown()
        server.server_close()


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
    code, out, _ = rsvp(
        local_server,
        capsys,
        "--tz",
        "Europe/Paris",
        "reserve",
        "--resource",
        resource,
        "--user",
        "alice",
        "--start",
        "2026-12-01T10:00",
        "--end",
        "2026-12-01T12:30",
        "--note",
        "planning",
    )
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
    code, out, _ = rsvp(
        local_server,
        capsys,
        "--json",
        "query",
        "--user",
        "alice",
        "--start",
        "2026-12-01T09:30Z",
        "--end",
        "2026-12-01T09:31Z",
    )
    assert reservation_id in [r["id"] for r in json.loads(out)]


def test_cli_errors(local_server, capsys):
    resource = room()
    arguments = [
        "reserve",
        "--resource",
        resource,
        "--user",
        "a",
        "--start",
        "2026-12-01T10:00Z",
        "--end",
        "2026-12-01T11:00Z",
    ]
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
    code, out, _ = rsvp(
        local_server,
        capsys,
        "reserve",
        "--resource",
        resource,
        "--user",
        "alice",
        "--start",
        "2026-12-01T10:00",
        "--end",
        "2026-12-01T11:00",
        "--tz",
        "Europe/Paris",
        "--json",
    )
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


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:18100",
        "localhost:8000",
        "http//127.0.0.1:8000",
        "http://",
        "ftp://127.0.0.1:8000",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:8000?x=1",
    ],
)
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
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    choices = {
        name: {action.dest: action.choices for action in commands[name]._actions}["status"]
        for name in ("reserve", "update", "query")
    }
    assert list(choices["query"]) == list(client.SETTABLE_STATUSES)  # a filter: EXPIRED finds expired holds
    # EXPIRED only ever comes from the service (the proto): it is no status to set
    assert (
        list(choices["update"])
        == list(choices["reserve"])
        == [name for name in client.SETTABLE_STATUSES if name != "EXPIRED"]
    )
    assert client.status_name(2) == "CONFIRMED" and client.status_name(99) == "99"  # a newer server's status
    assert client.SERVICE_NAME == pb.DESCRIPTOR.services_by_name["ReservationService"].full_name


def test_sign_without_botocore_is_a_clear_usage_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # as in `pip install .` without the client extra
    with pytest.raises(SystemExit) as raised:
        cli.main(["--sign", "get", str(uuid.uuid4())])
    assert raised.value.code == 2 and "pip install 'my-reservation-tools[client]'" in capsys.readouterr().err


# ---- v2: durations, resources, units, holds, move, occupancy, free/busy, slots, the change feed, tenants ----

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
DAY0 = datetime.datetime(2030, 6, 4, tzinfo=PARIS)  # a Tuesday, summer time (+02:00)


def at(hours: float, day: datetime.datetime = DAY0) -> datetime.datetime:
    return day + datetime.timedelta(hours=hours)


def stamp(moment: datetime.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment.astimezone(UTC))
    return value


def booking(start, end, units=1, status="CONFIRMED", user="u", **fields) -> pb.Reservation:
    return pb.Reservation(
        id=str(uuid.uuid4()),
        user_id=user,
        resource_id="lot",
        start=stamp(start),
        end=stamp(end),
        units=units,
        status=pb.ReservationStatus.Value(status),
        **fields,
    )


@pytest.mark.parametrize(
    "text, minutes",
    [("90s", 1.5), ("5m", 5), ("1h30m", 90), ("2d", 2880), ("1w", 10080), ("1d12h", 2160), ("0", 0), ("1.5s", 0.025)],
)
def test_durations_are_read_as_people_write_them(text, minutes):
    length = cli.parse_duration(text)
    assert length == datetime.timedelta(minutes=minutes)
    assert cli.parse_duration(cli.duration_text(length)) == length
    assert cli.duration_text(datetime.timedelta(minutes=90)) == "1h30m"


@pytest.mark.parametrize("text", ["5x", "30", "", "h", "1m30h", "-5m", "5 m", "1h 30m"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        cli.parse_duration(text)


RESERVE = ["reserve", "--resource", "r", "--user", "u", "--start", "2030-06-04T10:00Z", "--end", "2030-06-04T11:00Z"]


@pytest.mark.parametrize(
    "arguments, said",
    [
        ([*RESERVE, "--hold", "5x"], "argument --hold: not a duration: '5x'"),
        ([*RESERVE, "--hold", "0"], "must be longer than 0"),
        ([*RESERVE, "--hold", "5m", "--status", "CONFIRMED"], "--hold makes a PENDING hold"),
        ([*RESERVE, "--units", "0"], "must be at least 1"),
        ([*RESERVE, "--status", "EXPIRED"], "invalid choice: 'EXPIRED'"),
        (
            ["--tz", "Europe/Paris", *RESERVE[:5], "--start", "2030-03-31T02:30", "--end", "2030-03-31T04:00"],
            "2030-03-31T02:30:00 does not exist in Europe/Paris",
        ),
        (["move", "x", "--start", "soon"], "not an ISO-8601 time: 'soon'"),
        (["resource", "define", "r", "--step", "15"], "(say 15m or 15s)"),
        (["resource", "define", "r", "--label", "site"], "not a label: 'site'"),
        (["resource", "list", "--label", "=x"], "not a label"),
        (["slots", "--resource", "r", "--duration", "0"], "must be longer than 0"),
        (["slots", "--resource", "r"], "the following arguments are required: --duration"),
        (["free", "--resource", "a", "--label", "k=v"], "needs --resource (one or more) or --label, not both"),
        (["free"], "needs --resource"),
        (
            ["free", "--resource", "a", "--start", "2030-06-04T10:00", "--end", "2030-06-04T09:00"],
            "--end must be after --start",
        ),
        (
            ["free", "--resource", "a", "--start", "2030-06-04", "--end", "2030-06-05", "--cell", "1m"],
            "more than 400 columns",
        ),
        (["watch", "--resource", "a", "--user", "b"], "not allowed with argument"),
        (["update", "x", "--status", "EXPIRED"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_saying_why(capsys, arguments, said):
    with pytest.raises(SystemExit) as raised:
        cli.main(["--url", "http://127.0.0.1:9", *arguments])
    assert raised.value.code == 2 and said in capsys.readouterr().err


def test_the_help_examples_are_real_commands():
    """Every example line of `rsvp --help` parses (alternatives separated by ' | ')."""
    parser = cli.build_parser()
    examples = [line.split("#")[0].strip() for line in cli.__doc__.splitlines() if line.strip().startswith("rsvp ")]
    assert len(examples) >= 10
    for example in examples:
        for alternative in example.removeprefix("rsvp ").split(" | "):
            options = cli.parse(parser, shlex.split(alternative.replace("ID", str(uuid.uuid4()))), environ={})
            assert options.command
    names = {"reserve", "confirm", "cancel", "get", "update", "move", "query", "resource", "free", "slots", "watch"}
    assert set(parser._subparsers._group_actions[0].choices) == names
    assert all(name in cli.__doc__ for name in names)


def test_local_zone_keeps_daylight_saving(tmp_path):
    july = datetime.datetime(2030, 7, 1, 12)
    assert cli.local_zone({"TZ": "America/New_York"}).utcoffset(july) == datetime.timedelta(hours=-4)
    assert cli.local_zone({"TZ": ":Europe/Paris"}).utcoffset(july) == datetime.timedelta(hours=2)
    tokyo = pathlib.Path("/usr/share/zoneinfo/Asia/Tokyo")
    if tokyo.exists():
        (tmp_path / "localtime").symlink_to(tokyo)
        assert str(cli.local_zone({}, str(tmp_path / "localtime"))) == "Asia/Tokyo"
        (tmp_path / "copy").write_bytes(tokyo.read_bytes())
        assert cli.local_zone({"TZ": "Nowhere/Atlantis"}, str(tmp_path / "copy")).utcoffset(july) == datetime.timedelta(
            hours=9
        )
    assert cli.local_zone({}, str(tmp_path / "missing")).utcoffset(july) is not None  # today's offset at least


def availability(*entries) -> pb.AvailabilityResponse:
    """entries: (resource id, capacity, [(start hour, end hour, free units), ...]) on DAY0."""
    answer = pb.AvailabilityResponse()
    for resource_id, capacity, pieces in entries:
        entry = answer.resources.add(resource_id=resource_id, capacity=capacity)
        for start, end, free in pieces:
            entry.free_units.add(start=stamp(at(start)), end=stamp(at(end)), free=free)
        for start, end, free in pieces:
            target = entry.free if free >= 1 else entry.busy
            if target and target[-1].end == stamp(at(start)):
                target[-1].end.CopyFrom(stamp(at(end)))
            else:
                target.add(start=stamp(at(start)), end=stamp(at(end)))
    return answer


def test_format_free_grid_of_two_rooms_and_a_pool():
    answer = availability(
        ("room-a", 1, [(8, 9, 1), (9, 10, 0), (10, 12, 1)]),
        ("room-b", 1, [(8, 8 + 1 / 3, 0), (8 + 1 / 3, 11, 1), (11, 12, 0)]),
        ("lot", 3, [(8, 9, 3), (9, 10, 1), (10, 11, 0), (11, 12, 2)]),
    )
    text = cli.format_free(answer, at(8), at(12), datetime.timedelta(minutes=30), 0, PARIS)
    assert text.splitlines() == [
        "free/busy 2030-06-04 Tue 08:00-12:00 (Europe/Paris), one column = 30m",
        ". free  # busy  : partly free  pools: digits = free units",
        "          08  10",
        "room-a   |..##....|",
        "room-b   |:.....##|",
        "lot (3)  |..11##22|",
        "",
        "room-a: free 08:00-09:00, 10:00-12:00",
        "room-b: free 08:20-11:00",
        "lot: free for 1 unit (pool of 3) 08:00-10:00, 11:00-12:00",
    ]
    two = cli.format_free(answer, at(8), at(12), datetime.timedelta(hours=1), 2, PARIS).splitlines()
    assert two[0].endswith("(Europe/Paris), 2 units, one column = 1h")
    assert two[3:6] == ["room-a   |####|", "room-b   |####|", "lot (3)  |.##2|"]


def test_format_free_grid_of_a_week_and_of_a_big_pool():
    answer = availability(("lot", 40, [(0, 24, 40), (24, 30, 10), (30, 48, 40), (48, 24 * 7, 40)]))
    text = cli.format_free(answer, DAY0, at(24 * 7), cli.grid_cell(datetime.timedelta(days=7)), 1, PARIS)
    lines = text.splitlines()
    assert lines[0] == "free/busy 2030-06-04 00:00 to 2030-06-11 00:00 (Europe/Paris), one column = 4h"
    assert lines[2].split() == ["06-04", "06-05", "06-06", "06-07", "06-08", "06-09", "06-10"]
    assert lines[3] == "lot (40) |" + "." * 6 + "▓▓" + "." * 34 + "|"  # 06-05 00:00-06:00: 10 of 40 free
    assert lines[-1] == "lot: free for 1 unit (pool of 40) Tue 06-04 00:00 - Tue 06-11 00:00"


def test_grid_cells_fit_the_window():
    assert cli.grid_cell(datetime.timedelta(days=1)) == datetime.timedelta(minutes=30)
    assert cli.grid_cell(datetime.timedelta(hours=4)) == datetime.timedelta(minutes=5)
    assert cli.grid_cell(datetime.timedelta(days=92)) == datetime.timedelta(days=2)


def test_format_occupancy_of_a_pool():
    reservations = [
        booking(at(8), at(10), 2),
        booking(at(9), at(9.25), 1),
        booking(at(10), at(11), 3, status="EXPIRED", expires_at=stamp(at(-30))),
    ]  # frees its units
    lines = cli.format_occupancy("lot", reservations, 3, datetime.timedelta(minutes=15), PARIS).splitlines()
    assert lines[0] == (
        "lot  capacity 3, one character per 30m: the most units in use then (. none, "
        "digits: units in use, # full; Europe/Paris)"
    )
    assert lines[1] == " " * 16 + "00  02  04  06  08  10  12  14  16  18  20  22"
    assert lines[2] == "2030-06-04 Tue |" + "." * 16 + "22#2" + "." * 28 + "| peak 3/3"
    assert lines[3].split()[5:10] == ["u", "CONFIRMED", reservations[0].id, "2", "units"]
    assert "hold expired 06-02 18:00:00" in lines[5]  # 30 h before DAY0


def test_format_occupancy_of_a_big_pool_on_a_dst_day_and_of_nights():
    spring = datetime.datetime(2030, 3, 31, tzinfo=PARIS)  # 23 hours long
    lines = cli.format_occupancy(
        "lot",
        [booking(at(0, spring), at(1, spring), 10), booking(at(4, spring), at(5, spring), 40)],
        40,
        datetime.timedelta(minutes=15),
        PARIS,
    ).splitlines()
    bar = lines[2].split("|")[1]
    assert len(bar) == 46 and bar.startswith("▂▂....#") and lines[2].endswith("peak 40/40")  # 04:00 is 03:00 UTC
    nights = [booking(at(-24), at(24), 1), booking(at(0), at(48), 1)]
    lines = cli.format_occupancy("hotel", nights, 2, datetime.timedelta(days=1), PARIS).splitlines()
    assert lines[1] == " " * 9 + "1   5    10   15   20   25   30"
    assert lines[2] == "2030-06 |..1#1" + "." * 25 + "| peak 2/2"


def test_format_event_lines():
    before = booking(at(10), at(11), user="alice", status="PENDING")
    after = pb.Reservation()
    after.CopyFrom(before)
    after.resource_id, after.start.CopyFrom(stamp(at(14))), after.end.CopyFrom(stamp(at(15)))
    event = pb.ChangeEvent(kind=pb.RESERVATION_RESCHEDULED, at=stamp(at(-1)), reservation=after, before=before)
    assert cli.format_event(event, PARIS) == (
        f"2030-06-03 23:00:00  rescheduled  {after.id}  lot  alice  2030-06-04 14:00-15:00  "
        f"(PENDING, was lot 2030-06-04 10:00-11:00)"
    )
    event = pb.ChangeEvent(
        kind=pb.RESOURCE_DEFINED,
        at=stamp(at(0)),
        resource=pb.Resource(id="lot", capacity=3, step=Duration(seconds=900), labels={"site": "paris"}),
    )
    assert cli.format_event(event, PARIS) == (
        "2030-06-04 00:00:00  resource defined    lot  (capacity 3, step 15m, site=paris)"
    )


def test_slot_starts_are_compressed_into_runs():
    starts = [at(9), at(9.25), at(9.5), at(9.75), at(11), at(12)]
    assert cli._starts_text(starts) == "09:00-09:45 every 15m, 11:00, 12:00"


def test_cli_resources_define_show_set_list_delete(local_server, capsys):
    site, lot, hall = uuid.uuid4().hex[:8], room(), room()
    code, out, _ = rsvp(
        local_server,
        capsys,
        "resource",
        "define",
        hall,
        "--name",
        "Main hall",
        "--label",
        f"site={site}",
        "--label",
        "floor=2",
        "--max-duration",
        "2h",
        "--buffer-after",
        "10m",
        "--step",
        "15m",
        "--time-zone",
        "Europe/Paris",
    )
    assert code == 0 and out.splitlines() == [
        f"{hall}  Main hall",
        "  capacity      1 (exclusive)",
        f"  labels        floor=2 site={site}",
        "  max duration  2h",
        "  step          15m (grid from local midnight, Europe/Paris)",
        "  buffer after  10m",
    ]
    code, out, _ = rsvp(
        local_server, capsys, "resource", "set", hall, "--min-notice", "1h", "--label", "floor=", "--json"
    )
    shown = json.loads(out)
    assert code == 0 and shown["labels"] == {"site": site} and shown["maxDuration"] == "7200s"
    assert shown["minNotice"] == "3600s" and shown["name"] == "Main hall"
    code, _, err = rsvp(local_server, capsys, "resource", "define", lot, "--capacity", "40", "--label", f"site={site}")
    assert code == 1 and "step" in err  # a pool needs its grid: the service says so
    code, out, _ = rsvp(
        local_server,
        capsys,
        "resource",
        "define",
        lot,
        "--capacity",
        "40",
        "--step",
        "15m",
        "--label",
        f"site={site}",
        "--hold-for",
        "10m",
    )
    assert code == 0 and "40 (a pool)" in out and "hold for      10m" in out
    code, out, _ = rsvp(local_server, capsys, "resource", "list", "--label", f"site={site}")
    assert [line.split()[0] for line in out.splitlines()] == ["ID", *sorted([hall, lot])]
    code, out, _ = rsvp(
        local_server, capsys, "resource", "list", "--label", f"site={site}", "--label", "floor=2", "--json"
    )
    assert json.loads(out) == []
    code, out, _ = rsvp(local_server, capsys, "resource", "show", lot, "--json")
    assert json.loads(out)["capacity"] == 40 and json.loads(out)["step"] == "900s"
    code, out, _ = rsvp(local_server, capsys, "resource", "delete", hall)
    assert code == 0 and out.startswith(f"deleted {hall}")
    code, _, err = rsvp(local_server, capsys, "resource", "show", hall)
    assert code == 1 and "not_found" in err
    code, _, err = rsvp(local_server, capsys, "resource", "set", room(), "--capacity", "2")
    assert code == 1 and "resource define creates one" in err


def test_cli_units_holds_and_move(local_server, capsys):
    pool, hall, other = room(), room(), room()
    assert rsvp(local_server, capsys, "resource", "define", pool, "--capacity", "3", "--step", "15m")[0] == 0
    code, out, _ = rsvp(
        local_server,
        capsys,
        "reserve",
        "--resource",
        pool,
        "--user",
        "alice",
        "--start",
        "2030-06-04T08:00Z",
        "--end",
        "2030-06-04T10:00Z",
        "--units",
        "2",
        "--hold",
        "5m",
    )
    assert code == 0 and out.split()[:8] == ["ID", "STATUS", "RESOURCE", "USER", "START", "END", "UNITS", "EXPIRES"]
    hold = out.splitlines()[1].split()[0]
    code, out, _ = rsvp(local_server, capsys, "get", hold, "--json")
    made = json.loads(out)
    expires = datetime.datetime.fromisoformat(made["expiresAt"].replace("Z", "+00:00"))
    assert made["units"] == 2 and made["status"] == "PENDING"
    assert datetime.timedelta(minutes=4) < expires - datetime.datetime.now(UTC) <= datetime.timedelta(minutes=5)
    code, out, err = rsvp(
        local_server,
        capsys,
        "--tz",
        "UTC",
        "reserve",
        "--resource",
        pool,
        "--user",
        "bob",
        "--start",
        "2030-06-04T08:30Z",
        "--end",
        "2030-06-04T09:00Z",
        "--units",
        "2",
    )
    assert code == 1 and out == "" and err.startswith("rsvp: failed_precondition:")
    assert f"conflicts with {hold} [2030-06-04T08:00:00+00:00, 2030-06-04T10:00:00+00:00), 2 units" in err
    assert "units free in [2030-06-04T08:30:00+00:00, 2030-06-04T08:45:00+00:00): 1, asked 2" in err
    code, _, err = rsvp(
        local_server,
        capsys,
        "reserve",
        "--resource",
        pool,
        "--user",
        "bob",
        "--start",
        "2030-06-04T08:05Z",
        "--end",
        "2030-06-04T09:00Z",
    )
    assert code == 1 and "invalid_argument" in err and "15m grid (step)" in err
    code, out, _ = rsvp(local_server, capsys, "confirm", hold)
    assert code == 0 and "CONFIRMED" in out and "EXPIRES" not in out  # confirm clears the expiry

    assert rsvp(local_server, capsys, "resource", "define", hall, "--buffer-after", "10m")[0] == 0
    first = ReservationClient(local_server.url).reserve(hall, "alice", at(10), at(11)).id
    second = ReservationClient(local_server.url).reserve(hall, "bob", at(15), at(16)).id
    code, out, _ = rsvp(local_server, capsys, "move", first, "--start", "2030-06-04T12:00+02:00", "--json")
    assert code == 0 and (json.loads(out)["start"], json.loads(out)["end"]) == (
        "2030-06-04T10:00:00Z",
        "2030-06-04T11:00:00Z",
    )
    code, out, err = rsvp(local_server, capsys, "move", first, "--start", "2030-06-04T16:05+02:00")
    assert code == 1 and f"conflicts with {second}" in err  # its buffer: 16:00-16:10
    assert f"not overlapping the asked window: {hall} keeps buffer time" in err
    code, out, _ = rsvp(
        local_server,
        capsys,
        "--tz",
        "Europe/Paris",
        "move",
        first,
        "--resource",
        other,
        "--start",
        "2030-06-04T15:00",
        "--end",
        "2030-06-04T15:30",
    )
    assert code == 0 and out.splitlines()[1].split()[:6] == [
        first,
        "PENDING",
        other,
        "alice",
        "2030-06-04T15:00+02:00",
        "2030-06-04T15:30+02:00",
    ]
    code, _, err = rsvp(local_server, capsys, "move", str(uuid.uuid4()), "--start", "2030-06-04T15:00Z")
    assert code == 1 and "not_found" in err


def test_cli_query_shows_a_pools_occupancy(local_server, capsys):
    pool, client = room(), ReservationClient(local_server.url)
    client.define_resource(pool, capacity=3, step=datetime.timedelta(minutes=15), time_zone="Europe/Paris")
    made = [client.reserve(pool, "alice", at(8), at(10), units=2), client.reserve(pool, "bob", at(9), at(9.25))]
    code, out, _ = rsvp(local_server, capsys, "--tz", "Europe/Paris", "query", "--resource", pool)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"{pool}  capacity 3, one character per 30m")
    assert lines[2] == "2030-06-04 Tue |" + "." * 16 + "22#2" + "." * 28 + "| peak 3/3"
    assert [line.split()[7] for line in lines[3:]] == [r.id for r in made]
    code, out, _ = rsvp(local_server, capsys, "query", "--resource", pool, "--json")
    assert [r["units"] for r in json.loads(out)] == [2, 1]
    code, out, _ = rsvp(local_server, capsys, "query", "--resource", room())
    assert code == 0 and out.strip().endswith("nothing reserved")
    code, out, _ = rsvp(local_server, capsys, "query", "--user", f"nobody-{uuid.uuid4().hex}")
    assert code == 0 and out.strip() == "no reservations"


def test_cli_free_grid_for_two_rooms_and_a_pool(local_server, capsys):
    site, client = uuid.uuid4().hex[:8], ReservationClient(local_server.url)
    room_a, room_b, lot = f"a-{site}", f"b-{site}", f"c-{site}"
    for resource in (room_a, room_b):
        client.define_resource(resource, labels={"site": site})
    client.define_resource(lot, labels={"site": site}, capacity=3, step=datetime.timedelta(minutes=15))
    client.reserve(room_a, "u", at(9), at(10))
    client.reserve(room_b, "u", at(8), at(8 + 1 / 3))
    client.reserve(room_b, "u", at(11), at(12))
    for start, end, units in ((9, 10, 2), (10, 11, 3), (11, 12, 1)):
        client.reserve(lot, "u", at(start), at(end), units=units)
    window = ["--start", "2030-06-04T08:00", "--end", "2030-06-04T12:00", "--tz", "Europe/Paris"]
    code, out, _ = rsvp(
        local_server,
        capsys,
        "free",
        "--resource",
        room_a,
        "--resource",
        room_b,
        "--resource",
        lot,
        "--cell",
        "30m",
        *window,
    )
    width = len(lot) + 4  # the longest name: "c-... (3)"
    assert code == 0 and out.splitlines()[3:] == [
        f"{room_a:<{width}} |..##....|",
        f"{room_b:<{width}} |:.....##|",
        f"{lot} (3) |..11##22|",
        "",
        f"{room_a}: free 08:00-09:00, 10:00-12:00",
        f"{room_b}: free 08:20-11:00",
        f"{lot}: free for 1 unit (pool of 3) 08:00-10:00, 11:00-12:00",
    ]
    code, out, _ = rsvp(local_server, capsys, "free", "--label", f"site={site}", "--units", "2", *window)
    lines = out.splitlines()
    assert "2 units, one column = 5m" in lines[0]
    assert lines[3:6] == [
        f"{room_a:<{width}} |" + "#" * 48 + "|",
        f"{room_b:<{width}} |" + "#" * 48 + "|",
        f"{lot} (3) |" + "." * 12 + "#" * 24 + "2" * 12 + "|",
    ]
    code, out, _ = rsvp(local_server, capsys, "free", "--label", f"site={site}", "--json", *window)
    assert [entry["resourceId"] for entry in json.loads(out)] == [room_a, room_b, lot]
    code, out, _ = rsvp(
        local_server, capsys, "free", "--resource", room_a, "--start", "2030-06-04", "--tz", "Europe/Paris"
    )
    assert "2030-06-04 Tue 00:00-24:00 (Europe/Paris), one column = 30m" in out
    assert f"{room_a:<10} |" + "." * 18 + "##" + "." * 28 + "|" in out


def test_cli_slots_lists_bookable_starts(local_server, capsys):
    hall, client = room(), ReservationClient(local_server.url)
    client.define_resource(hall, step=datetime.timedelta(minutes=30))
    client.reserve(hall, "u", at(9), at(10))
    window = ["--start", "2030-06-04T08:00", "--end", "2030-06-04T12:00", "--tz", "Europe/Paris"]
    code, out, _ = rsvp(local_server, capsys, "slots", "--resource", hall, "--duration", "1h", *window)
    assert code == 0 and out.splitlines() == [
        "bookable starts for 1h, 2030-06-04 08:00 to 2030-06-04 12:00 (Europe/Paris)",
        f"{hall}  Tue 2030-06-04  08:00, 10:00-11:00 every 30m",
    ]
    code, out, _ = rsvp(local_server, capsys, "slots", "--resource", hall, "--duration", "1h", "--json", *window)
    assert [slot["start"] for slot in json.loads(out)] == [
        "2030-06-04T06:00:00Z",
        "2030-06-04T08:00:00Z",
        "2030-06-04T08:30:00Z",
        "2030-06-04T09:00:00Z",
    ]
    code, out, _ = rsvp(local_server, capsys, "slots", "--resource", hall, "--duration", "1h", "--limit", "2", *window)
    assert out.splitlines()[1:] == [f"{hall}  Tue 2030-06-04  08:00, 10:00", "(the first 2; --limit shows more)"]
    code, out, _ = rsvp(local_server, capsys, "slots", "--resource", hall, "--duration", "5h", *window)
    assert code == 0 and out.splitlines()[1] == "none"


def test_cli_tenants_and_acting_users_stay_apart(local_server, capsys, monkeypatch):
    mine, theirs, resource = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}", room()
    window = ["--resource", resource, "--start", "2030-06-04T10:00Z", "--end", "2030-06-04T11:00Z"]
    code, out, _ = rsvp(local_server, capsys, "--tenant", mine, "reserve", "--user", "alice", *window, "--json")
    made = json.loads(out)["id"]
    code, _, err = rsvp(local_server, capsys, "--tenant", theirs, "get", made)
    assert code == 1 and "not_found" in err
    code, _, err = rsvp(local_server, capsys, "get", made, "--tenant", theirs)  # after the command too
    assert code == 1 and "not_found" in err
    code, out, _ = rsvp(local_server, capsys, "--tenant", theirs, "query", "--resource", resource)
    assert out.strip() == f"{resource}: nothing reserved"
    code, out, err = rsvp(local_server, capsys, "--tenant", theirs, "reserve", "--user", "bob", *window)
    assert code == 0, err  # their resource of the same name is another resource
    monkeypatch.setenv("RSVP_TENANT", mine)
    assert rsvp(local_server, capsys, "get", made)[0] == 0
    assert rsvp(local_server, capsys, "get", made, "--tenant", theirs)[0] == 1  # --tenant wins over $RSVP_TENANT
    code, _, err = rsvp(local_server, capsys, "--as", "bob", "cancel", made)
    assert code == 1 and "permission_denied" in err
    code, _, err = rsvp(
        local_server,
        capsys,
        "reserve",
        "--user",
        "carol",
        *window[:2],
        "--start",
        "2030-06-04T12:00Z",
        "--end",
        "2030-06-04T13:00Z",
        "--as",
        "bob",
    )
    assert code == 1 and "permission_denied" in err
    assert rsvp(local_server, capsys, "--as", "alice", "cancel", made)[0] == 0
    code, _, err = rsvp(local_server, capsys, "--tenant", "Not A Tenant", "get", made)
    assert code == 1 and "invalid_argument: x-tenant-id" in err


def _reader(stream) -> queue.Queue:
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def start_watch(local_server, *arguments) -> tuple:
    process = subprocess.Popen(
        [sys.executable, "-m", "rsvp.cli", "--url", local_server.url, "--tz", "UTC", "watch", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, _reader(process.stdout), _reader(process.stderr)


def stop(process, signal_number) -> int:
    process.send_signal(signal_number)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()


def test_cli_watch_tails_the_feed_stops_cleanly_and_resumes(local_server):
    tenant, resource = f"w{uuid.uuid4().hex[:8]}", room()
    client = ReservationClient(local_server.url, tenant=tenant)
    process, out, err = start_watch(local_server, "--tenant", tenant, "--resource", resource)
    try:
        assert err.get(timeout=20).startswith(f"rsvp: watching resource {resource} from now")
        made = client.reserve(resource, "alice", T0, T0 + HOUR, note="kick-off")
        line = out.get(timeout=10)
        assert line.split()[2:8] == ["created", made.id, resource, "alice", "2026-12-01", "09:00-10:00"]
        assert line.rstrip().endswith("(PENDING, note 'kick-off')")
    finally:
        code = stop(process, signal.SIGINT)  # Ctrl-C
    assert code == 0
    last = err.get(timeout=5)
    assert last.startswith(f"rsvp: stopped; resume with: rsvp watch --resource {resource} --after ")
    cursor = last.split("--after ")[1].strip()

    ReservationClient(local_server.url, tenant=f"x{tenant}").reserve(resource, "mallory", T0, T0 + HOUR)
    client.cancel(made.id)
    process, out, err = start_watch(
        local_server, "--tenant", tenant, "--resource", resource, "--after", cursor, "--json"
    )
    try:
        event = json.loads(out.get(timeout=20))  # the cancel: not the creation again, nothing of the other tenant
        assert (event["kind"], event["reservation"]["id"]) == ("RESERVATION_CANCELLED", made.id)
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0 and out.empty()


def test_cli_watch_with_a_bad_cursor_fails(local_server, capsys):
    code, out, err = rsvp(local_server, capsys, "watch", "--after", "garbage")
    assert code == 1 and out == "" and "rsvp: invalid_argument: after" in err and "resume with" not in err


def test_client_listen_streams_and_closes_with_a_cursor(local_server):
    client, resource = ReservationClient(local_server.url), room()
    listener = client.listen(resource_id=resource)
    watchdog = threading.Timer(20, listener.close)  # from another thread: ends the iteration instead of a hang
    watchdog.start()
    threading.Timer(0.5, lambda: client.reserve(resource, "alice", T0, T0 + HOUR)).start()
    try:
        first = next(listener)  # arrives while the stream stays open (make serve never ends it)
    finally:
        watchdog.cancel()
    assert first.kind == pb.RESERVATION_CREATED and first.reservation.resource_id == resource
    second = client.reserve(resource, "bob", T0 + HOUR, T0 + 2 * HOUR)
    time.sleep(0.6)  # settled (FEED_SETTLE_MS is 200 locally) and sent
    delivered, cursor = listener.close(), listener.cursor  # the server ends the stream with its cursor
    if not delivered:  # not sent yet when closed: then the cursor stands before it
        again = client.listen(after=cursor, resource_id=resource)
        delivered = [next(again)]
        again.close()
        cursor = delivered[-1].cursor
    assert [event.reservation.id for event in delivered] == [second.id]
    third = client.reserve(resource, "carol", T0 + 2 * HOUR, T0 + 3 * HOUR)
    resumed = client.listen(after=cursor, resource_id=resource)
    assert next(resumed).reservation.id == third.id  # nothing twice, nothing missed
    resumed.close()


def test_python_dash_m_rsvp_is_the_rsvp_command():
    helped = subprocess.run([sys.executable, "-m", "rsvp", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: rsvp")
    failed = subprocess.run(
        [sys.executable, "-m", "rsvp", "--url", "http://127.0.0.1:1", "get", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and "cannot reach http://127.0.0.1:1" in failed.stderr
