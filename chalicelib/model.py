"""The values the service rules work on: plain data, no wire format, no storage shape.

Instants and durations are integers of nanoseconds (instants since the Unix
epoch, UTC), so that Timestamps round-trip exactly and compare without float
error.
"""

import dataclasses
import enum

NANOS_PER_SECOND = 1_000_000_000
MILLIS_NS = 1_000_000
MINUTE_NS = 60 * NANOS_PER_SECOND
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
# Queries by user or by tenant look back at least this far before their window (more when the
# user's or the tenant's longest-reservation record says so), so that reservations up to this long
# never write those records: a user's first reservation costs no more than the others.
LOOKBACK_FLOOR_NS = HOUR_NS


def lookback_ns(recorded_longest_ns: int) -> int:
    """How far a query by user or tenant looks back before its window, given their recorded longest."""
    return max(recorded_longest_ns, LOOKBACK_FLOOR_NS)


# google.protobuf.Timestamp allows 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
MIN_NS = MIN_SECONDS * NANOS_PER_SECOND
MAX_NS = MAX_SECONDS * NANOS_PER_SECOND + NANOS_PER_SECOND - 1
DEFAULT_TENANT = "default"


class Status(enum.IntEnum):
    """Same numbers as the proto's ReservationStatus."""

    UNKNOWN = 0
    PENDING = 1
    CONFIRMED = 2
    BLOCKED = 3
    EXPIRED = 4


class ChangeKind(enum.IntEnum):
    """Same numbers as the proto's ChangeKind."""

    UNKNOWN = 0
    RESERVATION_CREATED = 1
    RESERVATION_CONFIRMED = 2
    RESERVATION_UPDATED = 3
    RESERVATION_RESCHEDULED = 4
    RESERVATION_CANCELLED = 5
    RESERVATION_EXPIRED = 6
    RESOURCE_DEFINED = 7
    RESOURCE_DELETED = 8


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant every key lives under, and optionally the one user it acts for."""

    tenant: str = DEFAULT_TENANT
    acting_user: str = ""


@dataclasses.dataclass(frozen=True)
class Reservation:
    id: str
    user_id: str
    resource_id: str
    status: Status
    start_ns: int
    end_ns: int
    note: str = ""
    units: int = 1
    expires_at_ns: int = 0  # 0: not a hold, never expires

    def expired(self, now_ns: int) -> bool:
        """A hold stops blocking anything at its expiry instant."""
        return self.status == Status.PENDING and self.expires_at_ns != 0 and now_ns >= self.expires_at_ns

    def seen_at(self, now_ns: int) -> "Reservation":
        """As a caller sees it at `now_ns`: an expired hold reads as EXPIRED."""
        return dataclasses.replace(self, status=Status.EXPIRED) if self.expired(now_ns) else self


@dataclasses.dataclass(frozen=True)
class Booking:
    """A reservation as stored: with the buffers it was made with and its revision.

    Buffers are fixed when a reservation is made (or moved), so that a later
    change of the resource's buffers never makes stored reservations overlap.
    """

    reservation: Reservation
    rev: int = 1
    buffer_before_ns: int = 0
    buffer_after_ns: int = 0
    last_event_ns: int = 0  # time of its latest change event: the next one is later
    pooled: bool = False  # counted in a pool's buckets: releasing it gives units back
    slot_ns: int = 0  # exclusive: the length of its resource's guard slots (fixed for the resource's life)

    @property
    def padded_start_ns(self) -> int:
        return self.reservation.start_ns - self.buffer_before_ns

    @property
    def padded_end_ns(self) -> int:
        return self.reservation.end_ns + self.buffer_after_ns

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """Half-open padded windows: [10:00, 10:20) and [10:20, 10:40) do not overlap."""
        return self.padded_start_ns < end_ns and start_ns < self.padded_end_ns


@dataclasses.dataclass(frozen=True)
class Resource:
    """A resource's rules. 0 means "no such rule" for every duration."""

    id: str
    name: str = ""
    labels: tuple = ()  # sorted (key, value) pairs
    capacity: int = 1
    min_duration_ns: int = 0
    max_duration_ns: int = 0
    step_ns: int = 0
    buffer_before_ns: int = 0
    buffer_after_ns: int = 0
    min_notice_ns: int = 0
    max_advance_ns: int = 0
    hold_for_ns: int = 0
    time_zone: str = ""

    @property
    def is_pool(self) -> bool:
        return self.capacity > 1

    def labelled(self, selector: dict) -> bool:
        own = dict(self.labels)
        return all(own.get(key) == value for key, value in selector.items())


# the rules of a Resource that are lengths of time, in nanoseconds
DURATION_RULES = tuple(field.name for field in dataclasses.fields(Resource) if field.name.endswith("_ns"))


@dataclasses.dataclass(frozen=True)
class ChangeEvent:
    """One change, stored in the same transaction as the change itself."""

    kind: ChangeKind
    at_ns: int
    event_id: str
    resource_id: str
    reservation: Reservation | None = None
    before: Reservation | None = None
    resource: Resource | None = None
