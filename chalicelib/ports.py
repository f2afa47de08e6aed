"""The seam between the rules and storage: what the rules ask a store for, and what they ask it to write.

The rules read snapshots and decide; a store applies a WritePlan all or
nothing, and only if everything it was decided on is still as it was read
(versions of guards, revisions of reservations, bucket capacities,
definitions). Otherwise it raises StaleWrite and nothing was written: there
is no read-then-write race. chalicelib.dynamo implements it on DynamoDB;
tests have an in-memory one.
"""

import dataclasses
from collections.abc import Iterator
from typing import Protocol

from .layout import Guard, RememberedRequest, Shape, StoredResource
from .model import Booking, ChangeEvent, Reservation


class StaleWrite(Exception):
    """Something the plan was decided on changed, or a concurrent write collided: nothing was written.

    `kinds` tells what: booking, guard, bucket, definition, request, user, conflict.
    """

    def __init__(self, kinds: frozenset = frozenset()):
        super().__init__(",".join(sorted(kinds)))
        self.kinds = kinds


class OutcomeUnknown(Exception):
    """The write may or may not have been applied (time-out, dropped connection, 5xx)."""


class StorageUnavailable(Exception):
    """The store could not be read (throttled or failing after its own retries)."""


class TooLarge(Exception):
    """The write would pass a storage limit (item or transaction size)."""


@dataclasses.dataclass(frozen=True)
class ReserveRead:
    """What to read before placing a claim on [padded_start, padded_end) of one resource."""

    tenant: str
    resource_id: str
    shape: Shape
    padded_start_ns: int
    padded_end_ns: int
    user_id: str = ""
    request_id: str = ""
    # exclusive resources: the resource's largest buffer_before ever, so that
    # every booking whose padded window may overlap is read
    lookback_ns: int = 0


@dataclasses.dataclass(frozen=True)
class ReserveSnapshot:
    definition: StoredResource | None
    guards: dict  # slot -> Guard as read
    buckets: dict  # bucket index -> Bucket
    # exclusive resources: the bookings whose padded window overlaps, in start order; when there are
    # NEIGHBOUR_LIMIT or more (more_neighbours), only the first LISTED_NEIGHBOURS of them
    neighbours: tuple
    more_neighbours: bool
    remembered: RememberedRequest | None
    user_longest_ns: int
    tenant_longest_ns: int


NEIGHBOUR_LIMIT = 1000
LISTED_NEIGHBOURS = 10


@dataclasses.dataclass(frozen=True)
class TimelineRead:
    """What availability needs of one resource over [start, end): bookings whose padded window
    overlaps it (exclusive: bookings reaching back `lookback_ns` more; pools: their buckets too)."""

    resource_id: str
    shape: Shape
    start_ns: int
    end_ns: int
    lookback_ns: int


@dataclasses.dataclass(frozen=True)
class Timeline:
    read: TimelineRead
    bookings: tuple  # padded-overlapping [start, end), in start order
    buckets: tuple  # pools: the buckets of the window that exist


@dataclasses.dataclass(frozen=True)
class GuardBump:
    """Bump an exclusive resource's guard, only if it is still at the version read (0: absent).

    The store also keeps every guard's list of bookings true: a booking created, moved, removed or
    whose hold expiry changed is added to, updated in or removed from the guards of its slots.
    """

    resource_id: str
    guard: Guard


@dataclasses.dataclass(frozen=True)
class BucketChange:
    """Add `deltas` (cell start -> units, may be negative) to a pool bucket.

    Cells with a positive delta must stay within `cap`, and the bucket must
    still count against `cap` (or not exist yet, when `create`).
    """

    resource_id: str
    shape: Shape
    index: int
    deltas: tuple  # sorted (cell start ns, delta)
    cap: int  # the bucket's capacity as read (or, when created, the capacity it starts with)
    limit: int  # cells with a positive delta must stay within this (min of cap and the definition's)
    create: bool


@dataclasses.dataclass(frozen=True)
class BucketRecap:
    """Give a pool bucket a new capacity, only if it still has `old_cap` and every cell that ends
    after `from_ns` fits `new_cap` (the past keeps what it had)."""

    resource_id: str
    shape: Shape
    index: int
    old_cap: int
    new_cap: int
    from_ns: int = 0


@dataclasses.dataclass(frozen=True)
class DefinitionWrite:
    """Store a definition, only if it is still at revision `expected_rev` (0: absent)."""

    stored: StoredResource
    expected_rev: int


@dataclasses.dataclass(frozen=True)
class DefinitionCheck:
    """The definition must still have capacity revision `crev`; raise its `longest` to `longest_ns` if given."""

    resource_id: str
    crev: int
    longest_ns: int = 0


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    request_id: str
    fingerprint: str
    reservation: Reservation
    expires_at_s: int


@dataclasses.dataclass(frozen=True)
class LongestRaise:
    """Raise the longest reservation recorded for a user (or, user_id "", the whole tenant)
    to `duration_ns`, only if it is still `read_ns`: it bounds how far back their queries look."""

    user_id: str
    duration_ns: int
    read_ns: int


@dataclasses.dataclass
class WritePlan:
    """Everything one change writes, applied atomically."""

    tenant: str
    create: list = dataclasses.field(default_factory=list)  # of Booking (must not exist)
    change: list = dataclasses.field(default_factory=list)  # of (Booking as read, Booking to store)
    remove: list = dataclasses.field(default_factory=list)  # of Booking as read
    guards: list = dataclasses.field(default_factory=list)  # of GuardBump
    buckets: list = dataclasses.field(default_factory=list)  # of BucketChange
    recaps: list = dataclasses.field(default_factory=list)  # of BucketRecap
    definitions: list = dataclasses.field(default_factory=list)  # of DefinitionWrite
    checks: list = dataclasses.field(default_factory=list)  # of DefinitionCheck
    request: RequestRecord | None = None
    longest: list = dataclasses.field(default_factory=list)  # of LongestRaise
    events: list = dataclasses.field(default_factory=list)  # of ChangeEvent
    # guard entries of bookings that no longer exist (a hold deleted by TTL): (resource_id, slot, reservation id)
    stale_entries: list = dataclasses.field(default_factory=list)


class Store(Protocol):
    """What the rules need from storage (chalicelib.dynamo.DynamoStore, or a fake in tests)."""

    def read_definition(self, tenant: str, resource_id: str) -> StoredResource | None: ...

    def read_definitions(self, tenant: str, resource_ids: list) -> dict: ...

    def list_definitions(self, tenant: str, after_id: str, labels: dict, chunk: int) -> Iterator[StoredResource]: ...

    def read_for_reserve(self, read: ReserveRead) -> ReserveSnapshot: ...

    def get(self, tenant: str, reservation_id: str) -> Booking | None: ...

    def bookings(
        self, tenant: str, resource_id: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]: ...

    def bookings_of_user(
        self, tenant: str, user_id: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]: ...

    def bookings_of_tenant(
        self, tenant: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]: ...

    def read_buckets(self, tenant: str, resource_id: str, shape: Shape, first: int, last: int) -> list: ...

    def longest(self, tenant: str, user_id: str) -> int: ...

    def events(self, scope: "Scope", after_key: str, until_key: str, chunk: int) -> Iterator[ChangeEvent]: ...

    def expired_holds(self, now_ns: int, chunk: int) -> Iterator[tuple]: ...

    def timelines(self, tenant: str, reads: list, item_budget: int) -> list: ...

    def commit(self, plan: WritePlan) -> None: ...


@dataclasses.dataclass(frozen=True)
class Scope:
    """Whose changes: one resource, one user, or (both empty) the whole tenant."""

    tenant: str
    resource_id: str = ""
    user_id: str = ""


def units_by_cell(booking: Booking, shape: Shape) -> dict:
    """Cell start -> units a pool booking counts."""
    return {cell: booking.reservation.units for cell, _ in shape.cells(booking.padded_start_ns, booking.padded_end_ns)}


def merge_bucket_deltas(shape: Shape, *changes: dict) -> dict:
    """Bucket index -> {cell -> summed delta} for several cell deltas (a transaction touches each bucket once)."""
    merged = {}
    for change in changes:
        for cell, delta in change.items():
            cells = merged.setdefault(shape.bucket_of(cell), {})
            cells[cell] = cells.get(cell, 0) + delta
    return merged
