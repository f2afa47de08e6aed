"""rsvp: look at and change reservations from a terminal.

    rsvp reserve --resource room-1 --user alice --start 2026-12-01T10:00+01:00 --end 2026-12-01T11:00+01:00
    rsvp query --resource room-1 --start 2026-12-01      # a day-by-day timeline of the room
    rsvp get ID | confirm ID | cancel ID | update ID --note "moved"

Talks Connect to --url (default $RSVP_URL or http://127.0.0.1:8000, what `make serve` runs).
Times are ISO-8601; without an offset they are read in --tz (default: this machine's zone), and
shown in it. --json prints machine-readable output. Exit status: 0 done, 1 the service refused or
could not be reached (the message says why), 2 bad usage.
"""
import argparse
import datetime
import json
import os
import sys
import zoneinfo

from google.protobuf import json_format

from rsvp.client import ReservationClient, ReservationError

STATUSES = ("PENDING", "CONFIRMED", "BLOCKED")
STATUS_BY_NUMBER = {1: "PENDING", 2: "CONFIRMED", 3: "BLOCKED"}


def _zone(name: str):
    if not name:
        return datetime.datetime.now().astimezone().tzinfo
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from None


def _time_parser(options_holder: dict):
    def parse(text: str) -> datetime.datetime:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=options_holder["zone"])
    return parse


def build_parser(holder: dict) -> argparse.ArgumentParser:
    when = _time_parser(holder)
    parser = argparse.ArgumentParser(prog="rsvp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("RSVP_URL", "http://127.0.0.1:8000"),
                        help="base URL of the service (default $RSVP_URL or http://127.0.0.1:8000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--tz", default="", help="time zone to read and show times in (default: local)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--sign", action="store_true", help="SigV4-sign requests (the IAM-protected prod stage)")
    parser.add_argument("--region", help="AWS region for --sign (default: botocore's)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reserve = commands.add_parser("reserve", help="reserve a resource for a time window")
    reserve.add_argument("--resource", required=True)
    reserve.add_argument("--user", required=True)
    reserve.add_argument("--start", required=True, type=when)
    reserve.add_argument("--end", required=True, type=when)
    reserve.add_argument("--status", choices=STATUSES, default="PENDING")
    reserve.add_argument("--note", default="")
    reserve.add_argument("--request-id", help="makes a retried reserve safe (default: a fresh one)")

    for name, text in (("confirm", "confirm a PENDING reservation"), ("cancel", "cancel a reservation"),
                       ("get", "show one reservation")):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")

    update = commands.add_parser("update", help="change status and/or note")
    update.add_argument("id")
    update.add_argument("--status", choices=STATUSES)
    notes = update.add_mutually_exclusive_group()
    notes.add_argument("--note")
    notes.add_argument("--clear-note", action="store_true")

    query = commands.add_parser("query", help="list reservations (a timeline with --resource)")
    query.add_argument("--resource", default="")
    query.add_argument("--user", default="")
    query.add_argument("--status", choices=STATUSES)
    query.add_argument("--start", type=when, help="only reservations overlapping [start, end)")
    query.add_argument("--end", type=when)
    query.add_argument("--desc", action="store_true", help="newest first")
    query.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    return parser


def _local(stamp, zone) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.timezone.utc).astimezone(zone)


def _row(reservation, zone) -> list:
    return [reservation.id, STATUS_BY_NUMBER.get(reservation.status, "?"), reservation.resource_id,
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
                         f"{STATUS_BY_NUMBER.get(reservation.status, '?'):<9} {reservation.id}  {reservation.note}")
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
                                        page_size=min(options.limit, 1000)):
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
    holder = {"zone": None}
    parser = build_parser(holder)
    # the zone is needed to parse times, so read --tz first
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--tz", default="")
    zone_name = pre.parse_known_args(argv)[0].tz
    try:
        holder["zone"] = _zone(zone_name)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    options = parser.parse_args(argv)
    options.zone = holder["zone"]
    client = ReservationClient(options.url, timeout=options.timeout, sign=options.sign, region=options.region)
    try:
        print(run(options, client))
    except ReservationError as error:
        print(f"rsvp: {error.code}: {error.message}", file=sys.stderr)
        for conflict in error.conflicts:
            print(f"rsvp:   conflicts with {conflict.id} [{_local(conflict.start, options.zone).isoformat()}, "
                  f"{_local(conflict.end, options.zone).isoformat()})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
