"""rsvp: look at and change reservations and resources from a terminal.

    rsvp reserve --resource room-1 --user alice --start 2026-12-01T10:00+01:00 --end 2026-12-01T11:00+01:00
    rsvp reserve --resource lot-b --user bob --start 2026-12-01T08:00 --end 2026-12-01T18:00 --units 2 --hold 5m
    rsvp move ID --start 2026-12-01T15:00            # same length; --end and --resource change more
    rsvp get ID | confirm ID | cancel ID | update ID --note "moved"
    rsvp query --resource room-1 --start 2026-12-01  # a day-by-day timeline (a pool: units in use)
    rsvp resource define lot-b --capacity 40 --step 15m --max-duration 1d --label site=paris
    rsvp resource show lot-b | resource list --label site=paris | resource delete lot-b
    rsvp free --label site=paris --start 2026-12-01  # a free/busy grid of the day, free intervals
    rsvp slots --resource room-1 --duration 30m      # bookable starts (default: the next 7 days)
    rsvp watch --resource room-1                     # the change feed as it happens; Ctrl-C stops

The service: --url, else $RSVP_URL, else http://127.0.0.1:$PORT (the port `make serve` uses), else
http://127.0.0.1:8000. Options go before or after the command (rsvp get ID --json). Times are
ISO-8601 (a date alone is its midnight); without an offset they are read in --tz (default: this
machine's zone), and shown in it. Durations: 90s, 5m, 1h30m, 2d, 1w. --tenant (default $RSVP_TENANT)
is sent as x-tenant-id, which only the local server trusts (on AWS the tenant is the caller's IAM
identity); --as USER acts for that user (only their reservations can be changed).
--json prints machine-readable output (watch: one JSON object per line). Exit status: 0 done, 1 the
service refused or could not be reached (the message says why), 2 bad usage (a bad URL, time, zone,
duration, label or limit).
"""

import argparse
import bisect
import calendar
import datetime
import json
import os
import re
import signal
import sys
import threading
import zoneinfo

from google.protobuf import json_format

from chalicelib.gen import reservation_pb2 as pb
from rsvp.client import (
    RULE_DURATIONS,
    SETTABLE_STATUSES,
    ReservationClient,
    ReservationError,
    check_base_url,
    status_name,
)

DEFAULT_URL = "http://127.0.0.1:8000"
EXPIRED = "EXPIRED"
# EXPIRED only ever comes from the service: a filter, never a status to set
INPUT_STATUSES = tuple(status for status in SETTABLE_STATUSES if status != EXPIRED)
MAX_PAGE_SIZE = 1000
DAY = datetime.timedelta(days=1)
MINUTE = datetime.timedelta(minutes=1)
# free grid: the column width is the smallest of these that fits the window in GRID_COLUMNS columns
GRID_COLUMNS = 48
GRID_CELLS = tuple(datetime.timedelta(minutes=m) for m in (1, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720)) + tuple(
    datetime.timedelta(days=d) for d in (1, 2, 7, 14, 28)
)
MAX_GRID_COLUMNS = 400
DURATION_PATTERN = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")


def service_url(given, environ=os.environ) -> tuple:
    """(url, where it came from): --url, else $RSVP_URL, else http://127.0.0.1:$PORT, else the default."""
    if given:
        return given, "--url"
    if environ.get("RSVP_URL"):
        return environ["RSVP_URL"], "$RSVP_URL"
    if environ.get("PORT"):
        return f"http://127.0.0.1:{environ['PORT']}", "$PORT"
    return DEFAULT_URL, "the default"


def local_zone(environ=os.environ, localtime: str = "/etc/localtime"):
    """This machine's zone with its DST rules: $TZ, else /etc/localtime, else (neither readable) the
    current fixed offset, which is only right until the next DST change."""
    name = environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath(localtime)
        key = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else None
        if key:
            try:
                return zoneinfo.ZoneInfo(key)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass
        with open(localtime, "rb") as data:
            return zoneinfo.ZoneInfo.from_file(data, key="localtime")
    except (OSError, ValueError):
        return datetime.datetime.now().astimezone().tzinfo


def _zone(name: str):
    if not name:
        return local_zone()
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


def parse_duration(text: str) -> datetime.timedelta:
    """A duration as people write it: 90s, 5m, 1h30m, 2d, 1w (units in this order); "0" is none."""
    match = DURATION_PATTERN.fullmatch(text.strip())
    if text.strip() == "0":
        return datetime.timedelta()
    if not text.strip() or not match:
        hint = f" (say {text}m or {text}s)" if text.strip().isdigit() else ""
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}; write it as 90s, 5m, 1h30m, 2d or 1w{hint}")
    weeks, days, hours, minutes, seconds = (float(part) if part else 0 for part in match.groups())
    return datetime.timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _positive_duration(text: str) -> datetime.timedelta:
    length = parse_duration(text)
    if length <= datetime.timedelta():
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {text!r}")
    return length


def duration_text(length) -> str:
    """A timedelta (or a protobuf Duration) as people write it: 90m is 1h30m, 2d, 1.5s."""
    if hasattr(length, "ToTimedelta"):
        length = length.ToTimedelta()
    microseconds = length // datetime.timedelta(microseconds=1)
    if microseconds % 1_000_000:
        return f"{microseconds / 1_000_000:g}s"
    seconds, parts = microseconds // 1_000_000, []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _label(text: str) -> tuple:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"not a label: {text!r}; write it as key=value")
    return key, value


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(
                f"must be at least 1, got {text}" if kind is int else f"must be more than 0, got {text}"
            )
        return value

    return parse


def _add_global_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """The options every command takes. After the command they only override what was given
    (SUPPRESS: an option not given there leaves the value from before the command alone)."""

    def default(value):
        return argparse.SUPPRESS if after_command else value

    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--url",
        default=default(None),
        help=f"base URL of the service (default: $RSVP_URL, else http://127.0.0.1:$PORT, else {DEFAULT_URL})",
    )
    group.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of tables")
    group.add_argument("--tz", default=default(""), help="time zone to read and show times in (default: local)")
    group.add_argument(
        "--timeout", type=_positive(float), default=default(10.0), help="seconds per request (default 10)"
    )
    group.add_argument(
        "--sign", action="store_true", default=default(False), help="SigV4-sign requests (the IAM-protected prod stage)"
    )
    group.add_argument("--region", default=default(None), help="AWS region for --sign (default: botocore's)")
    group.add_argument(
        "--tenant",
        default=default(None),
        help="tenant to act in, sent as x-tenant-id; only the local server trusts it "
        "(default: $RSVP_TENANT, else the default tenant)",
    )
    group.add_argument(
        "--as",
        dest="acting_user",
        metavar="USER",
        default=default(None),
        help="act for USER (x-acting-user): only USER's reservations can be made or changed",
    )


def _add_rule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="a name for people")
    parser.add_argument(
        "--label", dest="labels", action="append", type=_label, metavar="KEY=VALUE", help="a label (repeat for more)"
    )
    parser.add_argument(
        "--capacity",
        type=_positive(int),
        help="units reservable at once (default 1; more than 1 is a pool, which needs --step)",
    )
    for rule in RULE_DURATIONS:
        flag = "--" + rule.replace("_", "-")
        parser.add_argument(
            flag,
            dest=rule,
            type=parse_duration,
            metavar="DURATION",
            help={
                "min_duration": "shortest reservation",
                "max_duration": "longest reservation",
                "step": "start and end on this grid from local midnight of --time-zone",
                "buffer_before": "free time kept before each reservation",
                "buffer_after": "free time kept after each reservation",
                "min_notice": "reservations start at least this long from now",
                "max_advance": "reservations start at most this long from now",
                "hold_for": "PENDING reservations are holds that expire after this long",
            }[rule]
            + " (0: no rule)",
        )
    parser.add_argument("--time-zone", help="IANA zone of the step grid (default UTC)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsvp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_global_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, under=commands) -> argparse.ArgumentParser:
        sub = under.add_parser(name, help=text, description=text)
        _add_global_options(sub, after_command=True)
        return sub

    reserve = command("reserve", "reserve a resource for a time window")
    reserve.add_argument("--resource", required=True)
    reserve.add_argument("--user", required=True)
    reserve.add_argument("--start", required=True, type=_time)
    reserve.add_argument("--end", required=True, type=_time)
    reserve.add_argument("--units", type=_positive(int), default=0, help="units of a pool (default 1)")
    reserve.add_argument(
        "--hold",
        type=_positive_duration,
        metavar="DURATION",
        help="a PENDING hold that stops blocking its time after this long, e.g. 5m (default: the resource's hold_for)",
    )
    reserve.add_argument("--status", choices=INPUT_STATUSES, help="default: the service's (PENDING)")
    reserve.add_argument("--note", default="")
    reserve.add_argument("--request-id", help="makes a retried reserve safe (default: a fresh one)")

    for name, text in (
        ("confirm", "confirm a PENDING reservation (a hold: before it expires)"),
        ("cancel", "cancel a reservation"),
        ("get", "show one reservation"),
    ):
        command(name, text).add_argument("id")

    update = command("update", "change status and/or note")
    update.add_argument("id")
    update.add_argument("--status", choices=INPUT_STATUSES)
    notes = update.add_mutually_exclusive_group()
    notes.add_argument("--note")
    notes.add_argument("--clear-note", action="store_true")

    move = command("move", "move a reservation to another window and/or resource, in one step")
    move.add_argument("id")
    move.add_argument("--start", required=True, type=_time)
    move.add_argument("--end", type=_time, help="default: keeps the reservation's length")
    move.add_argument("--resource", default="", help="default: the same resource")

    query = command("query", "list reservations (with --resource a timeline; a pool's shows units in use)")
    query.add_argument("--resource", default="")
    query.add_argument("--user", default="")
    query.add_argument("--status", choices=SETTABLE_STATUSES, help="only this status (EXPIRED: expired holds)")
    query.add_argument("--start", type=_time, help="only reservations overlapping [start, end)")
    query.add_argument("--end", type=_time)
    query.add_argument("--desc", action="store_true", help="newest first")
    query.add_argument(
        "--limit", type=_positive(int), default=1000, help="at most this many, at least 1 (default 1000)"
    )

    resource = command("resource", "define, set, show, list and delete resources")
    actions = resource.add_subparsers(dest="action", required=True, metavar="ACTION")
    define = command("define", "create a resource or replace its definition (rules not given: none)", actions)
    define.add_argument("id")
    _add_rule_options(define)
    change = command("set", "change only the given fields of a defined resource (--label KEY= removes KEY)", actions)
    change.add_argument("id")
    _add_rule_options(change)
    command("show", "show a resource and its rules", actions).add_argument("id")
    listing = command("list", "list the defined resources, in id order", actions)
    listing.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="only resources with this label (repeat: all of them)",
    )
    command(
        "delete", "delete a resource (refused while it has reservations that have not ended)", actions
    ).add_argument("id")

    def selection(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--resource",
            dest="resources",
            action="append",
            default=[],
            metavar="ID",
            help="a resource (repeat for more; at most 100)",
        )
        sub.add_argument(
            "--label",
            dest="labels",
            action="append",
            type=_label,
            metavar="KEY=VALUE",
            help="instead of --resource: the defined resources with these labels",
        )
        sub.add_argument("--units", type=_positive(int), default=0, help="units wanted (default 1)")

    free = command("free", "free/busy grid of resources over a window, and their free intervals")
    selection(free)
    free.add_argument("--start", type=_time, help="default: today's midnight (in --tz)")
    free.add_argument("--end", type=_time, help="default: a day after --start (at most 92 days)")
    free.add_argument(
        "--cell",
        type=_positive_duration,
        metavar="DURATION",
        help=f"column width (default: the first of "
        f"{', '.join(duration_text(cell) for cell in GRID_CELLS)} that shows the window in at most "
        f"{GRID_COLUMNS} columns)",
    )

    slots = command("slots", "bookable start times for a reservation of --duration (and --units)")
    selection(slots)
    slots.add_argument("--duration", required=True, type=_positive_duration, metavar="DURATION")
    slots.add_argument("--start", type=_time, help="default: now")
    slots.add_argument("--end", type=_time, help="default: 7 days after --start (at most 92 days)")
    slots.add_argument("--limit", type=_positive(int), default=1000, help="at most this many (default 1000)")

    watch = command(
        "watch",
        "print changes as they happen (the change feed) until Ctrl-C (or SIGTERM); then "
        "prints the cursor to resume from",
    )
    scope = watch.add_mutually_exclusive_group()
    scope.add_argument("--resource", default="", help="only this resource's changes")
    scope.add_argument("--user", default="", help="only this user's changes (default: the whole tenant's)")
    watch.add_argument("--after", default="", metavar="CURSOR", help="resume after this cursor (default: from now on)")
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
            placed = moment.replace(tzinfo=options.zone)
            if placed.astimezone(datetime.UTC).astimezone(options.zone).replace(tzinfo=None) != moment:
                parser.error(
                    f"--{bound} {moment.isoformat()} does not exist in {options.zone} (the clocks skip "
                    f"it at a DST change); give another time or an offset"
                )
            setattr(options, bound, placed)
    if options.tenant is None:
        options.tenant = environ.get("RSVP_TENANT") or None
    url, options.url_source = service_url(options.url, environ)
    try:
        options.url = check_base_url(url)
    except ValueError as error:
        parser.error(f"{error} (from {options.url_source})")
    if options.command == "reserve" and options.hold is not None and options.status not in (None, "PENDING"):
        parser.error(f"--hold makes a PENDING hold; it cannot be {options.status}")
    if options.command in ("free", "slots"):
        if bool(options.resources) == bool(options.labels):
            parser.error(f"{options.command} needs --resource (one or more) or --label, not both")
        if options.command == "free":
            options.start = options.start or datetime.datetime.combine(
                datetime.datetime.now(options.zone).date(), datetime.time(), tzinfo=options.zone
            )
            options.end = options.end or _add_days(options.start, 1)
        else:
            options.start = options.start or datetime.datetime.now(options.zone).replace(microsecond=0)
            options.end = options.end or _add_days(options.start, 7)
        if options.end <= options.start:
            parser.error("--end must be after --start")
    if options.command == "free":
        cell = options.cell or grid_cell(options.end - options.start)
        if (options.end - options.start) / cell > MAX_GRID_COLUMNS:
            parser.error(f"--cell {duration_text(cell)} makes more than {MAX_GRID_COLUMNS} columns; take a wider one")
        options.cell = cell
    return options


# ---- formatting ---------------------------------------------------------------------------------------------


def _local(stamp, zone) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.UTC).astimezone(zone)


def _add_days(moment: datetime.datetime, days: int) -> datetime.datetime:
    """The same wall-clock time `days` later (23 or 25 hours over a DST change)."""
    wall = moment.replace(tzinfo=None) + datetime.timedelta(days=days)
    return (
        wall.replace(tzinfo=moment.tzinfo)
        if isinstance(moment.tzinfo, zoneinfo.ZoneInfo)
        else moment + datetime.timedelta(days=days)
    )


def _midnight(day: datetime.date, zone) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _live(reservation) -> bool:
    """Does it take its time? (an expired hold does not)"""
    return status_name(reservation.status) != EXPIRED


def _row(reservation, zone, extra: tuple) -> list:
    row = [
        reservation.id,
        status_name(reservation.status),
        reservation.resource_id,
        reservation.user_id,
        _local(reservation.start, zone).isoformat(timespec="minutes"),
        _local(reservation.end, zone).isoformat(timespec="minutes"),
    ]
    if "units" in extra:
        row.append(str(reservation.units or 1))
    if "expires" in extra:
        row.append(
            _local(reservation.expires_at, zone).isoformat(timespec="seconds")
            if reservation.HasField("expires_at")
            else ""
        )
    return [*row, reservation.note]


def format_table(reservations, zone) -> str:
    """A table of reservations; UNITS and EXPIRES (holds) only when one of them has them."""
    if not reservations:
        return "no reservations"
    extra = tuple(
        name
        for name, present in (
            ("units", any(r.units > 1 for r in reservations)),
            ("expires", any(r.HasField("expires_at") for r in reservations)),
        )
        if present
    )
    header = ["ID", "STATUS", "RESOURCE", "USER", "START", "END"] + [name.upper() for name in extra] + ["NOTE"]
    rows = [header] + [_row(r, zone, extra) for r in reservations]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _reservation_line(start, end, reservation, pool: bool, zone) -> str:
    units = f"  {reservation.units or 1} unit{'s' if (reservation.units or 1) > 1 else ''}" if pool else ""
    if reservation.HasField("expires_at"):
        expires = _local(reservation.expires_at, zone)
        units += (
            f"  hold {'expired' if status_name(reservation.status) == EXPIRED else 'until'} {expires:%m-%d %H:%M:%S}"
        )
    return (
        f"    {start:%m-%d %H:%M} - {end:%m-%d %H:%M}  {reservation.user_id:<12} "
        f"{status_name(reservation.status):<9} {reservation.id}{units}  {reservation.note}"
    ).rstrip()


def _by_day(reservations, zone) -> dict:
    days = {}
    for reservation in reservations:
        start, end = _local(reservation.start, zone), _local(reservation.end, zone)
        day = start.date()
        while day <= (end - datetime.timedelta(microseconds=1)).date():
            days.setdefault(day, []).append((start, end, reservation))
            day += DAY
    return days


def format_timeline(resource: str, reservations, zone) -> str:
    """One line per day with a 24-hour bar (one character per hour), then that day's reservations."""
    if not reservations:
        return f"{resource}: nothing reserved"
    days = _by_day(reservations, zone)
    lines = [f"{resource}  (one character per hour, {zone})"]
    for day in sorted(days):
        midnight = _midnight(day, zone)
        bar = ["."] * 24
        for start, end, reservation in days[day]:
            for hour in range(24):
                slot_start = midnight + datetime.timedelta(hours=hour)
                if _live(reservation) and start < slot_start + datetime.timedelta(hours=1) and end > slot_start:
                    bar[hour] = "#"
        lines.append(f"{day.isoformat()} {day.strftime('%a')} |{''.join(bar)}|")
        for start, end, reservation in days[day]:
            lines.append(_reservation_line(start, end, reservation, False, zone))
    return "\n".join(lines)


class Steps:
    """A step function of time: (start, end, value) pieces, sorted and disjoint; elsewhere `outside`."""

    def __init__(self, pieces, outside: int = 0):
        self.pieces = sorted(pieces)
        self.starts = [piece[0] for piece in self.pieces]
        self.outside = outside

    @classmethod
    def of_usage(cls, reservations) -> "Steps":
        """Units in use over time by the live reservations."""
        changes = {}
        for reservation in reservations:
            if _live(reservation):
                for stamp, sign in ((reservation.start, 1), (reservation.end, -1)):
                    moment = stamp.ToDatetime(tzinfo=datetime.UTC)
                    changes[moment] = changes.get(moment, 0) + sign * (reservation.units or 1)
        pieces, level, previous = [], 0, None
        for moment in sorted(changes):
            if previous is not None and level:
                pieces.append((previous, moment, level))
            level += changes[moment]
            previous = moment
        return cls(pieces)

    def values(self, start: datetime.datetime, end: datetime.datetime) -> list:
        """The values taken during [start, end) (with `outside` where no piece covers it)."""
        found, cursor = [], start
        index = max(bisect.bisect_right(self.starts, start) - 1, 0)
        for piece_start, piece_end, value in self.pieces[index:]:
            if piece_start >= end:
                break
            if piece_end <= start:
                continue
            if piece_start > cursor:
                found.append(self.outside)
            found.append(value)
            cursor = max(cursor, piece_end)
        if cursor < end or not found:
            found.append(self.outside)
        return found


def _shade(fraction: float, levels: str) -> str:
    return levels[min(int(fraction * len(levels)), len(levels) - 1)]


def occupancy_char(in_use: int, capacity: int) -> str:
    """'.' none, a digit (capacity up to 9) or a bar (more) for the units in use, '#' full (or over)."""
    if in_use <= 0:
        return "."
    if in_use >= capacity:
        return "#"
    if capacity <= 9:
        return str(in_use)
    bars = "▁▂▃▄▅▆▇" if _can_print("▁▂▃▄▅▆▇") else "-:=+*%"
    return _shade(in_use / capacity, bars)


def pool_cell(step: datetime.timedelta) -> datetime.timedelta:
    """The width of one character of a pool's day line: the step, or a multiple of it of 30 min or more
    that divides the day; a whole day for steps of a day or more (then a line is a month)."""
    if step >= DAY or step <= datetime.timedelta():
        return DAY
    per_day = DAY // step if DAY % step == datetime.timedelta() else 0
    multiple = 1
    while step * multiple < 30 * MINUTE or (per_day and per_day % multiple):
        multiple += 1
    return step * multiple


def format_occupancy(resource: str, reservations, capacity: int, step: datetime.timedelta, zone) -> str:
    """A pool's units in use: one line per day (a month for steps of a day or more), one character per
    cell of the grid with the most units in use during it, and the capacity; then the reservations."""
    if not reservations:
        return f"{resource}: nothing reserved (capacity {capacity})"
    usage = Steps.of_usage(reservations)
    cell = pool_cell(step)
    monthly = cell >= DAY
    legend = "digits: units in use" if capacity <= 9 else "bars: share of the units in use"
    lines = [
        (
            f"{resource}  capacity {capacity}, one character per {duration_text(cell)}: the most units in use "
            f"then (. none, {legend}, # full; {zone})"
        )
    ]
    by_day = _by_day(reservations, zone)
    periods = sorted({day.replace(day=1) for day in by_day} if monthly else by_day)
    utc = datetime.UTC
    for number, period in enumerate(periods):
        if monthly:  # one character per local day
            bounds = [
                _midnight(period + DAY * index, zone).astimezone(utc)
                for index in range(calendar.monthrange(period.year, period.month)[1] + 1)
            ]
        else:  # UTC steps from local midnight to the next: a DST day has 46 or 50 half hours
            bounds, finish = [_midnight(period, zone).astimezone(utc)], _midnight(period + DAY, zone).astimezone(utc)
            while bounds[-1] < finish:
                bounds.append(min(bounds[-1] + cell, finish))
        bar, peak = [], 0
        for cell_start, cell_end in zip(bounds, bounds[1:]):
            top = max(usage.values(cell_start, cell_end))
            bar.append(occupancy_char(top, capacity))
            peak = max(peak, top)
        if number == 0:
            lines.append(
                " " * (9 if monthly else 16)
                + (_day_ruler(len(bar)) if monthly else _ruler(bounds[:-1], zone, one_day=True))
            )
        title = period.strftime("%Y-%m") if monthly else f"{period.isoformat()} {period.strftime('%a')}"
        lines.append(f"{title} |{''.join(bar)}| peak {peak}/{capacity}")
        days = [day for day in sorted(by_day) if (day.replace(day=1) == period if monthly else day == period)]
        seen = set()
        for day in days:
            for start, end, reservation in by_day[day]:
                if reservation.id not in seen:
                    seen.add(reservation.id)
                    lines.append(_reservation_line(start, end, reservation, True, zone))
    return "\n".join(lines)


def _rules(resource) -> list:
    """(label, text) of the rules a resource has."""
    rules = []
    for rule in RULE_DURATIONS:
        value = getattr(resource, rule)
        if resource.HasField(rule) and (value.seconds or value.nanos):
            text = duration_text(value)
            if rule == "step":
                text += f" (grid from local midnight, {resource.time_zone or 'UTC'})"
            rules.append((rule.replace("_", " "), text))
    if resource.time_zone and not any(label == "step" for label, _ in rules):
        rules.append(("time zone", resource.time_zone))
    return rules


def _labels_text(labels) -> str:
    return " ".join(f"{key}={labels[key]}" for key in sorted(labels))


def format_resource(resource) -> str:
    capacity = resource.capacity or 1
    lines = [f"{resource.id}" + (f"  {resource.name}" if resource.name else "")]
    lines.append(f"  {'capacity':<14}{capacity}" + (" (a pool)" if capacity > 1 else " (exclusive)"))
    if resource.labels:
        lines.append(f"  {'labels':<14}{_labels_text(resource.labels)}")
    rules = _rules(resource)
    lines += [f"  {label:<14}{text}" for label, text in rules]
    if not rules:
        lines.append("  no rules")
    return "\n".join(lines)


def format_resources(resources) -> str:
    if not resources:
        return "no resources"
    rows = [["ID", "NAME", "CAPACITY", "LABELS", "RULES"]]
    for resource in resources:
        rules = ", ".join(f"{label} {text.split(' (')[0]}" for label, text in _rules(resource))
        rows.append([resource.id, resource.name, str(resource.capacity or 1), _labels_text(resource.labels), rules])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def grid_cell(window: datetime.timedelta) -> datetime.timedelta:
    """The column width of a free/busy grid: the smallest of GRID_CELLS that fits it in GRID_COLUMNS."""
    for cell in GRID_CELLS:
        if window / cell <= GRID_COLUMNS:
            return cell
    return GRID_CELLS[-1]


def free_char(free_low: int, free_high: int, capacity: int, units: int) -> str:
    """One cell of the free/busy grid from the fewest and the most free units during it."""
    if free_high < units:
        return "#"
    if free_low < units:
        return ":"
    if free_low >= capacity:
        return "."
    if capacity <= 9:
        return str(free_low)
    shades = "░▒▓" if _can_print("░▒▓") else "-=*"
    return _shade(1 - free_low / capacity, shades)


def _ruler(columns: list, zone, one_day: bool) -> str:
    """Time labels over the grid's columns, where they fit."""
    line, taken = [], 0
    cell = columns[1] - columns[0] if len(columns) > 1 else DAY
    for index, moment in enumerate(columns):
        local = moment.astimezone(zone)
        if one_day or cell < datetime.timedelta(hours=1):
            worth = local.minute == 0 and local.second == 0
            text = f"{local:%H}" if worth else ""
            if index == 0 and not worth:
                text = f"{local:%H:%M}"
        else:
            worth = local.hour == 0 and local.minute == 0
            text = f"{local:%m-%d}" if worth else ""
            if index == 0 and not worth:
                text = f"{local:%m-%d %H:%M}"
        if text and index >= taken:
            line.append(" " * (index - len("".join(line))) + text)
            taken = index + len(text) + 1
    return "".join(line)


def _day_ruler(days: int) -> str:
    """Day-of-month numbers over a month line (one character per day)."""
    line = ""
    for day in (1, 5, 10, 15, 20, 25, 30):
        if day <= days:
            line += " " * (day - 1 - len(line)) + str(day)
    return line


def _moment_text(moment: datetime.datetime, zone, one_day: bool, is_end: bool = False) -> str:
    local = moment.astimezone(zone)
    if one_day:
        return "24:00" if is_end and local.time() == datetime.time() else f"{local:%H:%M}"
    return f"{local:%a %m-%d %H:%M}"


def _interval_text(start: datetime.datetime, end: datetime.datetime, zone, one_day: bool) -> str:
    if one_day:
        return f"{_moment_text(start, zone, True)}-{_moment_text(end, zone, True, True)}"
    same_day = start.astimezone(zone).date() == end.astimezone(zone).date()
    return f"{_moment_text(start, zone, False)} - " + (
        f"{end.astimezone(zone):%H:%M}" if same_day else _moment_text(end, zone, False)
    )


def format_free(
    availability, start: datetime.datetime, end: datetime.datetime, cell: datetime.timedelta, units: int, zone
) -> str:
    """A free/busy grid: one row per resource, one column per `cell` of [start, end); then each
    resource's free intervals (where `units` units are free)."""
    units = units or 1
    utc = datetime.UTC
    start, end = start.astimezone(utc), end.astimezone(utc)
    columns = []
    moment = start
    while moment < end:
        columns.append(moment)
        moment += cell
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    one_day = local_start.date() == (local_end - datetime.timedelta(microseconds=1)).date()
    window = (
        f"{local_start:%Y-%m-%d %a} {_moment_text(start, zone, True)}-{_moment_text(end, zone, True, True)}"
        if one_day
        else f"{local_start:%Y-%m-%d %H:%M} to {local_end:%Y-%m-%d %H:%M}"
    )
    pools = [entry for entry in availability.resources if entry.capacity > 1]
    legend = ". free  # busy  : partly free"
    if pools:
        legend += (
            "  pools: digits = free units"
            if all(p.capacity <= 9 for p in pools)
            else "  pools: digits (small) or shades (more used) = fewer units free"
        )
    wanted = f", {units} units" if units > 1 else ""
    lines = [f"free/busy {window} ({zone}){wanted}, one column = {duration_text(cell)}", legend]
    names = [
        entry.resource_id + (f" ({entry.capacity})" if entry.capacity > 1 else "") for entry in availability.resources
    ]
    width = max([len(name) for name in names] + [8])
    lines.append(" " * (width + 2) + _ruler(columns, zone, one_day))
    for name, entry in zip(names, availability.resources):
        free_units = Steps(
            [
                (piece.start.ToDatetime(tzinfo=utc), piece.end.ToDatetime(tzinfo=utc), piece.free)
                for piece in entry.free_units
            ],
            outside=entry.capacity,
        )
        row = []
        for column in columns:
            values = free_units.values(column, min(column + cell, end))
            row.append(free_char(min(values), max(values), entry.capacity or 1, units))
        lines.append(f"{name:<{width}} |{''.join(row)}|")
    if not availability.resources:
        lines.append("no resources")
    lines.append("")
    for entry in availability.resources:
        intervals = [
            _interval_text(i.start.ToDatetime(tzinfo=utc), i.end.ToDatetime(tzinfo=utc), zone, one_day)
            for i in entry.free
        ]
        wanted = f" for {units} unit{'s' if units > 1 else ''} (pool of {entry.capacity})" if entry.capacity > 1 else ""
        lines.append(
            f"{entry.resource_id}: "
            + (f"free{wanted} " + ", ".join(intervals) if intervals else f"no free time{wanted}")
        )
    return "\n".join(lines)


def _starts_text(starts: list) -> str:
    """Start times, runs of three or more evenly spaced ones as 'first-last every step'."""
    parts, index = [], 0
    while index < len(starts):
        last = index
        if index + 2 < len(starts) and starts[index + 1] - starts[index] == starts[index + 2] - starts[index + 1]:
            gap = starts[index + 1] - starts[index]
            while last + 1 < len(starts) and starts[last + 1] - starts[last] == gap:
                last += 1
            parts.append(f"{starts[index]:%H:%M}-{starts[last]:%H:%M} every {duration_text(gap)}")
        else:
            parts.append(f"{starts[index]:%H:%M}")
        index = last + 1
    return ", ".join(parts)


def format_slots(slots, length: datetime.timedelta, units: int, start, end, zone, limited: bool) -> str:
    """Bookable starts per resource and day, evenly spaced runs compressed."""
    wanted = f" of {units} units" if units > 1 else ""
    lines = [
        (
            f"bookable starts for {duration_text(length)}{wanted}, {start.astimezone(zone):%Y-%m-%d %H:%M} to "
            f"{end.astimezone(zone):%Y-%m-%d %H:%M} ({zone})"
        )
    ]
    if not slots:
        return lines[0] + "\nnone"
    groups = {}
    for slot in slots:
        moment = _local(slot.start, zone)
        groups.setdefault(slot.resource_id, {}).setdefault(moment.date(), []).append(moment)
    width = max(len(resource) for resource in groups)
    for resource in sorted(groups):
        for day in sorted(groups[resource]):
            lines.append(f"{resource:<{width}}  {day:%a %Y-%m-%d}  {_starts_text(sorted(groups[resource][day]))}")
    if limited:
        lines.append(f"(the first {len(slots)}; --limit shows more)")
    return "\n".join(lines)


def _kind_name(kind: int) -> str:
    name = pb.ChangeKind.Name(kind) if kind in pb.ChangeKind.values() else str(kind)
    return name.removeprefix("RESERVATION_").removeprefix("RESOURCE_").lower()


def _window_text(reservation, zone) -> str:
    start, end = _local(reservation.start, zone), _local(reservation.end, zone)
    end_text = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M}-{end_text}"


def format_event(event, zone) -> str:
    """One line: time, kind, id, resource, user, window and what changed."""
    at = _local(event.at, zone).strftime("%Y-%m-%d %H:%M:%S")
    kind = _kind_name(event.kind)
    if event.HasField("resource"):
        resource = event.resource
        rules = ", ".join(f"{label} {text.split(' (')[0]}" for label, text in _rules(resource))
        details = ", ".join(
            part for part in (f"capacity {resource.capacity or 1}", rules, _labels_text(resource.labels)) if part
        )
        return f"{at}  resource {kind:<9}  {resource.id}  ({details})"
    after, before = event.reservation, event.before
    extra = []
    if (after.units or 1) > 1:
        extra.append(f"{after.units} units")
    extra.append(status_name(after.status))
    if after.HasField("expires_at"):
        expired = status_name(after.status) == EXPIRED
        extra.append(f"hold {'expired at' if expired else 'until'} {_local(after.expires_at, zone):%H:%M:%S}")
    if event.HasField("before"):
        if (before.resource_id, before.start, before.end) != (after.resource_id, after.start, after.end):
            extra.append(f"was {before.resource_id} {_window_text(before, zone)}")
        if before.status != after.status:
            extra.append(f"was {status_name(before.status)}")
        if before.note != after.note:
            extra.append(f"note {after.note!r}" if after.note else "note cleared")
    elif after.note:
        extra.append(f"note {after.note!r}")
    return (
        f"{at}  {kind:<11}  {after.id}  {after.resource_id}  {after.user_id}  {_window_text(after, zone)}  "
        f"({', '.join(extra)})"
    )


# ---- commands -----------------------------------------------------------------------------------------------


def _documents(messages) -> list:
    return [json_format.MessageToDict(message) for message in messages]


def _rule_fields(options) -> dict:
    fields = {rule: getattr(options, rule) for rule in RULE_DURATIONS if getattr(options, rule) is not None}
    for name in ("name", "capacity", "time_zone"):
        if getattr(options, name) is not None:
            fields[name] = getattr(options, name)
    return fields


def _resource_fields(resource) -> dict:
    """The fields of a stored resource, as define_resource takes them."""
    fields = {
        "name": resource.name,
        "labels": dict(resource.labels),
        "capacity": resource.capacity,
        "time_zone": resource.time_zone,
    }
    for rule in RULE_DURATIONS:
        if resource.HasField(rule):
            fields[rule] = getattr(resource, rule).ToTimedelta()
    return fields


def run_resource(options, client: ReservationClient) -> str:
    if options.action in ("define", "set"):
        fields = _rule_fields(options)
        labels = dict(options.labels or [])
        if options.action == "set":
            try:
                current = _resource_fields(client.get_resource(options.id))
            except ReservationError as error:
                if error.code == "not_found":
                    error.message += " (resource set changes a defined resource; resource define creates one)"
                raise
            merged = {**current["labels"], **labels}
            fields = {
                **current,
                **fields,
                "labels": {key: value for key, value in merged.items() if value or key not in labels},
            }
        else:
            fields["labels"] = labels
        shown = client.define_resource(options.id, **fields)
    elif options.action == "list":
        resources = list(client.list_resources(labels=dict(options.labels or [])))
        return json.dumps(_documents(resources), indent=2) if options.json else format_resources(resources)
    else:
        shown = getattr(client, {"show": "get_resource", "delete": "delete_resource"}[options.action])(options.id)
    if options.json:
        return json.dumps(json_format.MessageToDict(shown), indent=2)
    return ("deleted " if options.action == "delete" else "") + format_resource(shown)


def _resource_of(client: ReservationClient, resource_id: str):
    """The resource's definition, or None for one nobody defined."""
    try:
        return client.get_resource(resource_id)
    except ReservationError as error:
        if error.code == "not_found":
            return None
        raise


def run(options, client: ReservationClient) -> str:
    zone = options.zone
    if options.command == "resource":
        return run_resource(options, client)
    if options.command == "free":
        answer = client.availability(
            options.start, options.end, options.resources, dict(options.labels or []), options.units
        )
        if options.json:
            return json.dumps(_documents(answer.resources), indent=2)
        return format_free(answer, options.start, options.end, options.cell, options.units, zone)
    if options.command == "slots":
        found = []
        for slot in client.find_slots(
            options.start,
            options.end,
            options.duration,
            options.resources,
            dict(options.labels or []),
            options.units,
            limit=min(options.limit + 1, MAX_PAGE_SIZE),
        ):
            found.append(slot)
            if len(found) > options.limit:
                break
        limited, found = len(found) > options.limit, found[: options.limit]
        if options.json:
            return json.dumps(_documents(found), indent=2)
        return format_slots(found, options.duration, options.units, options.start, options.end, zone, limited)
    if options.command == "reserve":
        shown = [
            client.reserve(
                options.resource,
                options.user,
                options.start,
                options.end,
                options.status,
                options.note,
                options.request_id,
                units=options.units,
                hold_for=options.hold,
            )
        ]
    elif options.command in ("confirm", "cancel", "get"):
        shown = [getattr(client, options.command)(options.id)]
    elif options.command == "update":
        note = "" if options.clear_note else options.note
        shown = [client.update(options.id, options.status, note)]
    elif options.command == "move":
        end = options.end
        if end is None:
            current = client.get(options.id)
            end = options.start + (current.end.ToDatetime() - current.start.ToDatetime())
        shown = [client.reschedule(options.id, options.start, end, options.resource)]
    else:
        shown = []
        for reservation in client.query(
            resource_id=options.resource,
            user_id=options.user,
            status=options.status,
            start=options.start,
            end=options.end,
            desc=options.desc,
            page_size=min(options.limit, MAX_PAGE_SIZE),
        ):
            if len(shown) == options.limit:
                break
            shown.append(reservation)
        if not options.json and options.resource:
            definition = _resource_of(client, options.resource)
            if definition is not None and definition.capacity > 1:
                return format_occupancy(
                    options.resource, shown, definition.capacity, definition.step.ToTimedelta(), zone
                )
            return format_timeline(options.resource, shown, zone)
    if options.json:
        documents = _documents(shown)
        return json.dumps(documents if options.command == "query" else documents[0], indent=2)
    return format_table(shown, zone)


def watch(options, client: ReservationClient, out=None, err=None) -> int:
    """Prints events as they come until Ctrl-C (or a failure); then the cursor to resume from."""
    out, err = out or sys.stdout, err or sys.stderr
    scope = (
        f"resource {options.resource}"
        if options.resource
        else f"user {options.user}"
        if options.user
        else f"tenant {client.tenant or 'default'}"
    )
    listener = client.listen(options.after, options.resource, options.user)
    try:
        listener.connect()
    except ReservationError as error:
        _print_error(error, options, err)
        return 1
    except KeyboardInterrupt:
        return 130
    print(
        f"rsvp: watching {scope} {'after the cursor' if options.after else 'from now'}; Ctrl-C stops",
        file=err,
        flush=True,
    )

    def show(event):
        text = json.dumps(json_format.MessageToDict(event)) if options.json else format_event(event, options.zone)
        print(text, file=out, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    code, stopping = 0, threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if stopping else None  # `kill`, `timeout`: as Ctrl-C
    try:
        for event in listener:
            show(event)
    except KeyboardInterrupt:
        pass
    except ReservationError as error:
        _print_error(error, options, err)
        code = 1
    finally:
        if stopping:
            signal.signal(signal.SIGTERM, previous)
    for event in listener.close():
        show(event)
    if listener.cursor and listener.cursor != options.after:  # one the service handed out
        where = (
            f"--resource {options.resource} " if options.resource else f"--user {options.user} " if options.user else ""
        )
        print(f"rsvp: stopped; resume with: rsvp watch {where}--after {listener.cursor}", file=err, flush=True)
    elif code == 0:
        print(
            "rsvp: stopped before the service handed out a cursor"
            + ("; resume with the same --after" if options.after else ""),
            file=err,
            flush=True,
        )
    return code


def _print_error(error: ReservationError, options, err) -> None:
    zone = options.zone
    print(f"rsvp: {error.code}: {error.message}", file=err)
    if error.code == "unavailable" and error.message.startswith("cannot reach"):
        print(f"rsvp:   (URL from {options.url_source}; --url or $RSVP_URL name another)", file=err)
    for conflict in error.conflicts:
        units = f", {conflict.units} units" if conflict.units > 1 else ""
        print(
            f"rsvp:   conflicts with {conflict.id} [{_local(conflict.start, zone).isoformat()}, "
            f"{_local(conflict.end, zone).isoformat()}){units}",
            file=err,
        )
    if error.conflict is not None:
        requested = error.conflict.requested
        if any(
            c.end.ToNanoseconds() <= requested.start.ToNanoseconds()
            or c.start.ToNanoseconds() >= requested.end.ToNanoseconds()
            for c in error.conflicts
        ):
            print(
                f"rsvp:   (not overlapping the asked window: {error.conflict.resource_id} keeps buffer time "
                f"around reservations; rsvp resource show {error.conflict.resource_id})",
                file=err,
            )
        if error.conflict.total > len(error.conflicts):
            print(f"rsvp:   ... {error.conflict.total} in the way in all", file=err)
        if error.conflict.HasField("full_window"):
            window = error.conflict.full_window
            print(
                f"rsvp:   units free in [{_local(window.start, zone).isoformat()}, "
                f"{_local(window.end, zone).isoformat()}): {error.conflict.units_free}, "
                f"asked {error.conflict.requested.units or 1}",
                file=err,
            )


def main(argv=None) -> int:
    parser = build_parser()
    options = parse(parser, argv)
    try:
        client = ReservationClient(
            options.url,
            timeout=options.timeout,
            sign=options.sign,
            region=options.region,
            tenant=options.tenant,
            acting_user=options.acting_user,
        )
    except ImportError as error:  # --sign without botocore
        parser.error(str(error))
    if options.command == "watch":
        return watch(options, client)
    try:
        print(run(options, client))
    except ReservationError as error:
        _print_error(error, options, sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
