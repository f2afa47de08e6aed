"""rsvp: look at and change reservations from a terminal.

    rsvp reserve --resource room-1 --user alice --start 2026-12-01T10:00+01:00 --end 2026-12-01T11:00+01:00
    rsvp query --resource room-1 --start 2026-12-01      # a day-by-day timeline of the room
    rsvp get ID | confirm ID | cancel ID | update ID --note "moved"

The service: --url, else $RSVP_URL, else http://127.0.0.1:$PORT (the port `make serve` uses), else
http://127.0.0.1:8000. Options go before or after the command (rsvp get ID --json). Times are
ISO-8601; without an offset they are read in --tz (default: this machine's zone), and shown in it.
--json prints machine-readable output. Exit status: 0 done, 1 the service refused or could not be
reached (the message says why), 2 bad usage (a bad URL, time, zone or limit).
"""
import argparse
import datetime
import json
import os
import sys
import zoneinfo

from google.protobuf import json_format

from rsvp.client import SETTABLE_STATUSES, ReservationClient, ReservationError, check_base_url, status_name

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_PAGE_SIZE = 1000


def service_url(given, environ=os.environ) -> tuple:
    """(url, where it came from): --url, else $RSVP_URL, else http://127.0.0.1:$PORT, else the default."""
    if given:
        return given, "--url"
    if environ.get("RSVP_URL"):
        return environ["RSVP_URL"], "$RSVP_URL"
    if environ.get("PORT"):
        return f"http://127.0.0.1:{environ['PORT']}", "$PORT"
    return DEFAULT_URL, "the default"


def _zone(name: str):
    if not name:
        return datetime.datetime.now().astimezone().tzinfo
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from None


def _time(text: str) -> datetime.datetime:
    """An ISO-8601 time; one without an offset is read in --tz once every option is known."""
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {text}" if kind is int
                                             else f"must be more than 0, got {text}")
        return value
    return parse


def _add_global_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """The options every command takes. After the command they only override what was given
    (SUPPRESS: an option not given there leaves the value from before the command alone)."""
    def default(value):
        return argparse.SUPPRESS if after_command else value
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument("--url", default=default(None),
                       help=f"base URL of the service (default: $RSVP_URL, else http://127.0.0.1:$PORT, "
                            f"else {DEFAULT_URL})")
    group.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of tables")
    group.add_argument("--tz", default=default(""), help="time zone to read and show times in (default: local)")
    group.add_argument("--timeout", type=_positive(float), default=default(10.0),
                       help="seconds per request (default 10)")
    group.add_argument("--sign", action="store_true", default=default(False),
                       help="SigV4-sign requests (the IAM-protected prod stage)")
    group.add_argument("--region", default=default(None), help="AWS region for --sign (default: botocore's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsvp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_global_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        _add_global_options(sub, after_command=True)
        return sub

    reserve = command("reserve", "reserve a resource for a time window")
    reserve.add_argument("--resource", required=True)
    reserve.add_argument("--user", required=True)
    reserve.add_argument("--start", required=True, type=_time)
    reserve.add_argument("--end", required=True, type=_time)
    reserve.add_argument("--status", choices=SETTABLE_STATUSES, help="default: the service's (PENDING)")
    reserve.add_argument("--note", default="")
    reserve.add_argument("--request-id", help="makes a retried reserve safe (default: a fresh one)")

    for name, text in (("confirm", "confirm a PENDING reservation"), ("cancel", "cancel a reservation"),
                       ("get", "show one reservation")):
        command(name, text).add_argument("id")

    update = command("update", "change status and/or note")
    update.add_argument("id")
    update.add_argument("--status", choices=SETTABLE_STATUSES)
    notes = update.add_mutually_exclusive_group()
    notes.add_argument("--note")
    notes.add_argument("--clear-note", action="store_true")

    query = command("query", "list reservations (a timeline with --resource)")
    query.add_argument("--resource", default="")
    query.add_argument("--user", default="")
    query.add_argument("--status", choices=SETTABLE_STATUSES)
    query.add_argument("--start", type=_time, help="only reservations overlapping [start, end)")
    query.add_argument("--end", type=_time)
    query.add_argument("--desc", action="store_true", help="newest first")
    query.add_argument("--limit", type=_positive(int), default=1000,
                       help="at most this many, at least 1 (default 1000)")
    return parser


def parse(parser: argparse.ArgumentParser, argv=None, environ=os.environ) -> argparse.Namespace:
    """The options, with the zone resolved, naive times put in it, and the URL chosen and checked."""
    options = parser.parse_args(argv)
    try:
        options.zone = _zone(options.tz)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    for bound in ("start", "end"):
        moment = getattr(options, bound, None)
        if moment is not None and moment.tzinfo is None:
            setattr(options, bound, moment.replace(tzinfo=options.zone))
    url, options.url_source = service_url(options.url, environ)
    try:
        options.url = check_base_url(url)
    except ValueError as error:
        parser.error(f"{error} (from {options.url_source})")
    return options


def _local(stamp, zone) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.timezone.utc).astimezone(zone)


def _row(reservation, zone) -> list:
    return [reservation.id, status_name(reservation.status), reservation.resource_id,
            reservation.user_id, _local(reservation.start, zone).isoformat(timespec="minutes"),
            _local(reservation.end, zone).isoformat(timespec="minutes"), reservation.note]


def format_table(reservations, zone) -> str:
    rows = [["ID", "STATUS", "RESOURCE", "USER", "START", "END", "NOTE"]] + [_row(r, zone) for r in reservations]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def format_timeline(resource: str, reservations, zone) -> str:
    """One line per day with a 24-hour bar (one character per hour), then that day's reservations."""
    if not reservations:
        return f"{resource}: nothing reserved"
    days = {}
    for reservation in reservations:
        start, end = _local(reservation.start, zone), _local(reservation.end, zone)
        day = start.date()
        while day <= (end - datetime.timedelta(microseconds=1)).date():
            days.setdefault(day, []).append((start, end, reservation))
            day += datetime.timedelta(days=1)
    lines = [f"{resource}  (one character per hour, {zone})"]
    for day in sorted(days):
        midnight = datetime.datetime.combine(day, datetime.time(), tzinfo=zone)
        bar = ["."] * 24
        for start, end, _ in days[day]:
            for hour in range(24):
                slot_start = midnight + datetime.timedelta(hours=hour)
                if start < slot_start + datetime.timedelta(hours=1) and end > slot_start:
                    bar[hour] = "#"
        lines.append(f"{day.isoformat()} {day.strftime('%a')} |{''.join(bar)}|")
        for start, end, reservation in days[day]:
            lines.append(f"    {start:%m-%d %H:%M} - {end:%m-%d %H:%M}  {reservation.user_id:<12} "
                         f"{status_name(reservation.status):<9} {reservation.id}  {reservation.note}")
    return "\n".join(lines)


def run(options, client: ReservationClient) -> str:
    zone = options.zone
    if options.command == "reserve":
        shown = [client.reserve(options.resource, options.user, options.start, options.end, options.status,
                                options.note, options.request_id)]
    elif options.command in ("confirm", "cancel", "get"):
        shown = [getattr(client, options.command)(options.id)]
    elif options.command == "update":
        note = "" if options.clear_note else options.note
        shown = [client.update(options.id, options.status, note)]
    else:
        shown = []
        for reservation in client.query(resource_id=options.resource, user_id=options.user, status=options.status,
                                        start=options.start, end=options.end, desc=options.desc,
                                        page_size=min(options.limit, MAX_PAGE_SIZE)):
            if len(shown) == options.limit:
                break
            shown.append(reservation)
        if not options.json and options.resource:
            return format_timeline(options.resource, shown, zone)
    if options.json:
        documents = [json_format.MessageToDict(r) for r in shown]
        return json.dumps(documents if options.command == "query" else documents[0], indent=2)
    return format_table(shown, zone)


def main(argv=None) -> int:
    parser = build_parser()
    options = parse(parser, argv)
    try:
        client = ReservationClient(options.url, timeout=options.timeout, sign=options.sign, region=options.region)
    except ImportError as error:  # --sign without botocore
        parser.error(str(error))
    try:
        print(run(options, client))
    except ReservationError as error:
        print(f"rsvp: {error.code}: {error.message}", file=sys.stderr)
        if error.code == "unavailable" and error.message.startswith("cannot reach"):
            print(f"rsvp:   (URL from {options.url_source}; --url or $RSVP_URL name another)", file=sys.stderr)
        for conflict in error.conflicts:
            print(f"rsvp:   conflicts with {conflict.id} [{_local(conflict.start, options.zone).isoformat()}, "
                  f"{_local(conflict.end, options.zone).isoformat()})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
