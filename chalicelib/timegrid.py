"""A resource's step grid: the instants a reservation may start and end at.

The grid is anchored at local midnight of the resource's IANA time zone and
follows the wall clock, so a room bookable "on the hour" stays bookable on the
hour across a DST change:

* a step under a day divides 24 h; the grid is every wall time 00:00, step,
  2*step, ... of every local day. A wall time that does not exist (the hour
  skipped in spring) is not on the grid; one that exists twice (the hour
  repeated in autumn) is on it twice.
* a step of whole days puts the grid at the first instant of every n-th
  local day (counted from 1970-01-01).

Without a time zone the grid is anchored at UTC midnight.
"""

import datetime
import functools
import zoneinfo
from collections.abc import Iterator

from .model import DAY_NS, NANOS_PER_SECOND

UTC = datetime.UTC
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=256)
def zone_of(name: str) -> datetime.tzinfo:
    """The zone of an IANA name ('' is UTC). Raises ValueError for an unknown name."""
    if not name:
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _instant(moment: datetime.datetime) -> int:
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NANOS_PER_SECOND + delta.microseconds * 1000


def _local(instant_ns: int, zone) -> datetime.datetime:
    seconds = instant_ns // NANOS_PER_SECOND
    return datetime.datetime.fromtimestamp(seconds, UTC).astimezone(zone)


def local_date(instant_ns: int, zone_name: str) -> datetime.date:
    return _local(instant_ns, zone_of(zone_name)).date()


@functools.lru_cache(maxsize=4096)
def _day_points(ordinal: int, step_ns: int, zone_name: str) -> tuple:
    """Every grid instant of one local day (sub-day steps), in order."""
    zone = zone_of(zone_name)
    day = datetime.date.fromordinal(ordinal)
    first = day_start(ordinal, zone_name)
    following = day_start(ordinal + 1, zone_name)
    midnight = datetime.datetime.combine(day, datetime.time(), tzinfo=UTC)
    if following - first == DAY_NS and _local(first, zone).time() == datetime.time():
        return tuple(range(first, following, step_ns))  # no transition today: a plain grid
    points = set()
    for wall_ns in range(0, DAY_NS, step_ns):
        naive = midnight + datetime.timedelta(microseconds=wall_ns // 1000)
        for fold in (0, 1):
            moment = naive.replace(tzinfo=zone, fold=fold)
            instant = _instant(moment.astimezone(UTC))
            back = _local(instant, zone)
            if back.replace(tzinfo=None) == naive.replace(tzinfo=None):  # exists at that wall time
                points.add(instant + wall_ns % 1000)
    return tuple(sorted(points))


@functools.lru_cache(maxsize=4096)
def day_start(ordinal: int, zone_name: str) -> int:
    """The first instant of a local day (its midnight, or the end of a gap that swallowed it)."""
    zone = zone_of(zone_name)
    naive = datetime.datetime.combine(datetime.date.fromordinal(ordinal), datetime.time())
    candidate = _instant(naive.replace(tzinfo=zone, fold=0).astimezone(UTC))
    if _local(candidate, zone).date().toordinal() == ordinal and _local(candidate, zone).time() == datetime.time():
        return candidate
    # midnight does not exist: the day starts where the previous one ends
    low, high = candidate - DAY_NS, candidate + DAY_NS
    while high - low > NANOS_PER_SECOND:
        middle = (low + high) // 2
        if _local(middle, zone).date().toordinal() >= ordinal:
            high = middle
        else:
            low = middle
    return (low // NANOS_PER_SECOND + 1) * NANOS_PER_SECOND  # transitions happen on whole seconds


def check_step(step_ns: int) -> str:
    """Why a step cannot make a grid ('' when it can)."""
    if step_ns <= 0:
        return "must be positive"
    if step_ns < DAY_NS:
        if step_ns % NANOS_PER_SECOND or DAY_NS % step_ns:
            return "must be whole seconds dividing 24 h (e.g. 5m, 15m, 1h) or whole days"
        return ""
    if step_ns % DAY_NS:
        return "must be whole seconds dividing 24 h (e.g. 5m, 15m, 1h) or whole days"
    return ""


class Grid:
    """The step grid of one resource (step 0: every instant is on it)."""

    def __init__(self, step_ns: int, zone_name: str = ""):
        self.step_ns = step_ns
        self.zone_name = zone_name
        self.zone = zone_of(zone_name)

    def _ordinal(self, instant_ns: int) -> int:
        return _local(instant_ns, self.zone).date().toordinal()

    def _points_of_day(self, ordinal: int) -> tuple:
        if self.step_ns < DAY_NS:
            return _day_points(ordinal, self.step_ns, self.zone_name)
        days = self.step_ns // DAY_NS
        return (day_start(ordinal, self.zone_name),) if (ordinal - EPOCH_ORDINAL) % days == 0 else ()

    def contains(self, instant_ns: int) -> bool:
        if not self.step_ns:
            return True
        return instant_ns in self._points_of_day(self._ordinal(instant_ns))

    def points(self, start_ns: int, end_ns: int) -> Iterator[int]:
        """Grid instants in [start, end], in order (every instant is not listed for step 0)."""
        ordinal = self._ordinal(start_ns) - 1
        last = self._ordinal(end_ns)
        while ordinal <= last:
            for point in self._points_of_day(ordinal):
                if start_ns <= point <= end_ns:
                    yield point
                elif point > end_ns:
                    return
            ordinal += 1

    def next_point(self, instant_ns: int) -> int:
        """The first grid instant at or after `instant_ns`."""
        if not self.step_ns:
            return instant_ns
        ordinal = self._ordinal(instant_ns) - 1
        while True:
            for point in self._points_of_day(ordinal):
                if point >= instant_ns:
                    return point
            ordinal += 1

    def cells(self, start_ns: int, end_ns: int) -> list:
        """The grid cells [p_i, p_i+1) that make up [start, end) (both on the grid)."""
        points = list(self.points(start_ns, end_ns))
        return list(zip(points, points[1:]))

    def describe(self, instant_ns: int) -> str:
        """An instant in the grid's zone, for messages."""
        moment = _local(instant_ns, self.zone)
        return moment.isoformat()
