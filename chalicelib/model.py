"""The reservation as the service rules see it: plain values, no wire format.

Instants are integers of nanoseconds since the Unix epoch (UTC), so that
Timestamps round-trip exactly and compare without float error.
"""
import dataclasses
import enum

NANOS_PER_SECOND = 1_000_000_000
# google.protobuf.Timestamp allows 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
MIN_NS = MIN_SECONDS * NANOS_PER_SECOND
MAX_NS = MAX_SECONDS * NANOS_PER_SECOND + NANOS_PER_SECOND - 1


class Status(enum.IntEnum):
    """Same numbers as the proto's ReservationStatus."""

    UNKNOWN = 0
    PENDING = 1
    CONFIRMED = 2
    BLOCKED = 3


@dataclasses.dataclass(frozen=True)
class Reservation:
    id: str
    user_id: str
    resource_id: str
    status: Status
    start_ns: int
    end_ns: int
    note: str = ""

    @property
    def claim(self) -> "Claim":
        return Claim(self.id, self.start_ns, self.end_ns)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One reservation's interval as recorded in a time-slot item."""

    reservation_id: str
    start_ns: int
    end_ns: int

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """Half-open intervals: [10:00, 10:20) and [10:20, 10:40) do not overlap."""
        return self.start_ns < end_ns and start_ns < self.end_ns
