"""The reservation rules: validation, THE conflict check, holds, state transitions, retries.

Knows nothing of HTTP, gRPC or DynamoDB request shapes: it takes and returns
model values, reads snapshots from a Store and asks it to apply WritePlans.
Every decision is made on a snapshot and committed only if that snapshot is
still true (see chalicelib.ports): a lost race re-reads and decides again.
"""

import collections
import dataclasses
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable

from . import rules, validate
from .errors import Code, ServiceError, failed, invalid, not_found, unavailable
from .layout import Guard, Shape, StoredResource, start_key_bound
from .model import Booking, Caller, ChangeEvent, ChangeKind, Reservation, Resource, Status, lookback_ns
from .ports import (
    NEIGHBOUR_LIMIT,
    BucketChange,
    DefinitionCheck,
    DefinitionWrite,
    GuardBump,
    LongestRaise,
    OutcomeUnknown,
    RequestRecord,
    ReserveRead,
    ReserveSnapshot,
    StaleWrite,
    StorageUnavailable,
    Store,
    TooLarge,
    WritePlan,
    merge_bucket_deltas,
    units_by_cell,
)

REQUEST_ID_TTL_SECONDS = 24 * 3600
WRITE_ATTEMPTS = 16
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.25
LISTED_CONFLICTS = 10
DISPLACE_LIMIT = 5  # expired holds removed by the write that takes their time; more are removed first
EXPIRE_BATCH = 20  # expired holds removed by one write of their own
MAX_UNITS = 1_000_000
HINTS_KEPT = 10_000
log = logging.getLogger(__name__)


class Conflict(ServiceError):
    """A claim does not fit: `blocking` (the first LISTED_CONFLICTS) are in the way, `total` in all."""

    def __init__(
        self,
        resource_id: str,
        requested: Reservation,
        blocking: list,
        total: int,
        full_window: tuple = (),
        units_free: int = 0,
        capacity: int = 1,
        at_least: bool = False,
        buffers: tuple = (0, 0),
    ):
        self.resource_id = resource_id
        self.requested = requested
        self.blocking = tuple(blocking[:LISTED_CONFLICTS])
        self.total = total
        self.full_window = full_window
        self.units_free = units_free
        listed = ", ".join(
            f"{b.reservation.id} [{validate.iso(b.reservation.start_ns)}, {validate.iso(b.reservation.end_ns)})"
            for b in self.blocking
        )
        more = (
            f" and {'at least ' if at_least else ''}{total - len(self.blocking)} more"
            if total > len(self.blocking)
            else ""
        )
        if full_window:
            start, end = full_window
            message = (
                f"resource {resource_id} has {units_free} of {capacity} units free in "
                f"[{validate.iso(start)}, {validate.iso(end)}), {requested.units} requested; "
                f"taken by {listed}{more}"
            )
        else:
            message = f"resource {resource_id} is already reserved in the requested window by {listed}{more}"
            if any(buffers) or any(b.buffer_before_ns or b.buffer_after_ns for b in self.blocking):
                before, after = buffers
                message += (
                    f" (its buffers keep free time around reservations: {validate.duration_text(before)} "
                    f"before and {validate.duration_text(after)} after)"
                )
        super().__init__(Code.FAILED_PRECONDITION, message)


class _ReadAgain(Exception):
    """What a plan was being built on changed (expired holds were swept first): read again."""


class MaybeWritten(ServiceError):
    """A write whose outcome could not be learned: it may have been applied."""

    def __init__(self, message: str, reservation_id: str, request_id: str = ""):
        super().__init__(Code.UNKNOWN, message)
        self.reservation_id = reservation_id
        self.request_id = request_id


def find_conflicts(neighbours, booking: Booking, now_ns: int) -> tuple:
    """THE conflict check of an exclusive resource: (blocking, displaceable) among the stored
    bookings whose padded window overlaps the new one's. Expired holds block nothing."""
    blocking, displaceable = [], []
    for other in neighbours:
        if other.reservation.id == booking.reservation.id:
            continue
        if not other.overlaps(booking.padded_start_ns, booking.padded_end_ns):
            continue
        (displaceable if other.reservation.expired(now_ns) else blocking).append(other)
    return blocking, displaceable


def _fingerprint(reservation: Reservation, hold_for_ns: int | None) -> str:
    """What makes two reserve calls 'the same request' for idempotency. A request of one unit and no
    hold keeps the first release's fingerprint, so its remembered request ids still replay."""
    parts = (
        reservation.user_id,
        reservation.resource_id,
        str(int(reservation.status)),
        str(reservation.start_ns),
        str(reservation.end_ns),
        reservation.note,
    )
    if reservation.units != 1 or hold_for_ns is not None:
        parts += (str(reservation.units), str(hold_for_ns))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _backoff(attempt: int) -> None:
    """Full jitter: spreads out writers that collided on the same item."""
    time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)))


def _event(kind: ChangeKind, at_ns: int, after: Reservation, before: Reservation | None = None) -> ChangeEvent:
    return ChangeEvent(kind, at_ns, uuid.uuid4().hex, after.resource_id, reservation=after, before=before)


def _next_event_time(plan: WritePlan, now_ns: int, booking: Booking | None = None) -> int:
    """The time of the plan's next event: after its other events and, so that events of one reservation
    are in the order of its changes even when two writers' clocks differ, after the booking's last one."""
    latest = max((event.at_ns for event in plan.events), default=now_ns - 1)
    return max(now_ns, latest + 1, booking.last_event_ns + 1 if booking is not None else now_ns)


def _check_units(units: int, field: str) -> int:
    if units < 0:
        raise invalid(field, f"must not be negative, got {units}")
    if units > MAX_UNITS:
        raise invalid(field, f"must be at most {MAX_UNITS}")
    return units or 1


class Hints(collections.OrderedDict):
    """(tenant, resource) -> StoredResource, the HINTS_KEPT most recently used (a warm Lambda's memory)."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > HINTS_KEPT:
            self.popitem(last=False)


@dataclasses.dataclass
class Target:
    """Where a claim goes: the resource's definition (or None), shape and the snapshot read for it."""

    definition: StoredResource | None
    shape: Shape
    snapshot: ReserveSnapshot

    @property
    def resource(self):
        return self.definition.resource if self.definition is not None and self.definition.live else None


class ReservationService:
    def __init__(self, store: Store, clock: Callable[[], int] = time.time_ns):
        self.store = store
        self.clock = clock
        # Hints of definitions, to know which items to read; a shape never changes once stored,
        # and every write re-reads the definition itself, so a stale hint only costs a re-read.
        self.hints = Hints()

    # ---- reserve ---------------------------------------------------------------------------

    def reserve(
        self, caller: Caller, draft: Reservation, request_id: str = "", hold_for_ns: int | None = None
    ) -> Reservation:
        """Make a reservation unless it does not fit. `draft.id` must be empty: ids are assigned here."""
        if draft.id:
            raise invalid("reservation.id", "must be empty: the service assigns ids")
        user_id = validate.name("reservation.user_id", draft.user_id)
        resource_id = validate.name("reservation.resource_id", draft.resource_id)
        validate.check_text("reservation.note", draft.note, validate.MAX_NOTE_LENGTH, required=False)
        validate.check_text("request_id", request_id, validate.MAX_ID_LENGTH, required=False)
        validate.window("reservation.start", "reservation.end", draft.start_ns, draft.end_ns)
        status = Status(draft.status or Status.PENDING)
        if status == Status.EXPIRED:
            raise invalid("reservation.status", "EXPIRED is only ever set by the service")
        if hold_for_ns is not None:
            if hold_for_ns < 0:
                raise invalid("hold_for", "must not be negative")
            if status != Status.PENDING:
                raise invalid("hold_for", f"only a PENDING reservation can be a hold, not {status.name}")
        self._check_acting(caller, user_id)
        units = _check_units(draft.units, "reservation.units")
        wanted = Reservation(
            str(uuid.uuid4()), user_id, resource_id, status, draft.start_ns, draft.end_ns, draft.note, units
        )
        fingerprint = _fingerprint(wanted, hold_for_ns)
        maybe_written = False
        for attempt in range(WRITE_ATTEMPTS):
            now = self.clock()
            try:
                target = self._target(caller.tenant, wanted, request_id)
            except StorageUnavailable as error:
                raise self._unknown_or_unavailable(maybe_written, wanted.id, request_id) from error
            snapshot = target.snapshot
            if snapshot.remembered is not None:
                return self._replay(snapshot.remembered, fingerprint, request_id).seen_at(now)
            if maybe_written and self._committed(caller.tenant, wanted.id, request_id):
                return self.get(caller, wanted.id)
            rules.check_window(
                target.resource,
                target.shape,
                wanted.start_ns,
                wanted.end_ns,
                units,
                now,
                "reservation.start",
                "reservation.end",
                "reservation.units",
            )
            self._check_bookable(target, resource_id)
            before, after = rules.padding(target.resource)
            expires = rules.hold_expiry(target.resource, hold_for_ns, now) if status == Status.PENDING else 0
            booking = Booking(
                dataclasses.replace(wanted, expires_at_ns=expires),
                1,
                before,
                after,
                pooled=target.shape.pool,
                slot_ns=target.shape.slot_ns,
            )
            plan = WritePlan(caller.tenant)
            try:
                self._place(plan, target, booking, now, moving=None)
            except _ReadAgain:
                continue
            at = _next_event_time(plan, now)
            booking = dataclasses.replace(booking, last_event_ns=at)
            plan.create.append(booking)
            if request_id:
                plan.request = RequestRecord(
                    request_id, fingerprint, booking.reservation, int(time.time()) + REQUEST_ID_TTL_SECONDS
                )
            self._raise_longest(plan, snapshot, booking)
            plan.events.append(_event(ChangeKind.RESERVATION_CREATED, at, booking.reservation))
            try:
                self._commit(plan)
                return booking.reservation
            except StaleWrite as stale:
                # a new id's booking can only exist already if this very write was applied and then
                # retried (botocore retries a timed-out call): find out as after a lost answer
                maybe_written = maybe_written or "booking" in stale.kinds
                _backoff(attempt)
            except OutcomeUnknown:
                maybe_written = True
                _backoff(attempt)
        if maybe_written and self._committed(caller.tenant, wanted.id, request_id):
            return self.get(caller, wanted.id)
        raise ServiceError(
            Code.ABORTED, f"too many concurrent changes on resource {resource_id}; nothing was reserved; retry"
        )

    def _commit(self, plan: WritePlan) -> None:
        try:
            self.store.commit(plan)
        except TooLarge:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                "this change touches more items than one DynamoDB "
                "transaction holds; make the reservation shorter (or cancel "
                "and reserve instead of moving it)",
            ) from None

    def _committed(self, tenant: str, reservation_id: str, request_id: str) -> bool:
        """After a write whose answer was lost: did it commit? (a failed read: MaybeWritten)"""
        for attempt in range(3):
            try:
                return self.store.get(tenant, reservation_id) is not None
            except StorageUnavailable:
                _backoff(attempt + 3)
        raise self._unknown_or_unavailable(True, reservation_id, request_id)

    @staticmethod
    def _unknown_or_unavailable(maybe_written: bool, reservation_id: str, request_id: str) -> ServiceError:
        if not maybe_written:
            return unavailable()
        retry = f"retry with request_id {request_id}" if request_id else "retry with a request_id next time"
        log.warning("write outcome unknown for reservation %s", reservation_id)
        return MaybeWritten(
            f"storage failed while reserving: reservation {reservation_id} may have been made; "
            f"get it to find out, or {retry}",
            reservation_id,
            request_id,
        )

    @staticmethod
    def _replay(remembered, fingerprint: str, request_id: str) -> Reservation:
        if remembered.fingerprint != fingerprint:
            raise ServiceError(
                Code.ALREADY_EXISTS, f"request_id {request_id} was already used for a different reservation"
            )
        return remembered.reservation

    def _target(self, tenant: str, reservation: Reservation, request_id: str = "") -> Target:
        """Read what placing `reservation` needs; read again when the hint about its resource was wrong."""
        hint_key = (tenant, reservation.resource_id)
        for _ in range(3):
            hint = self.hints.get(hint_key)
            shape, (before, after), lookback = _read_plan(hint)
            read = ReserveRead(
                tenant,
                reservation.resource_id,
                shape,
                reservation.start_ns - before,
                reservation.end_ns + after,
                reservation.user_id,
                request_id,
                lookback,
            )
            snapshot = self.store.read_for_reserve(read)
            definition = snapshot.definition
            if definition is not None:
                self.hints[hint_key] = definition
            else:
                self.hints.pop(hint_key, None)
            fresh_shape, fresh_padding, fresh_lookback = _read_plan(definition)
            if (fresh_shape, fresh_padding) == (shape, (before, after)) and lookback >= fresh_lookback:
                return Target(definition, shape, snapshot)
        raise ServiceError(Code.ABORTED, f"resource {reservation.resource_id} is being redefined; retry")

    @staticmethod
    def _check_bookable(target: Target, resource_id: str) -> None:
        if target.shape.pool and target.resource is None:
            raise failed(f"resource {resource_id} was deleted; define it again to reserve it")

    def _place(self, plan: WritePlan, target: Target, booking: Booking, now_ns: int, moving: Booking | None) -> None:
        """Add to `plan` what claims `booking`'s padded window (raises Conflict when it does not fit).

        `moving` is the booking being rescheduled: it is not in its own way, and its old claim is released.
        """
        if target.definition is None:
            plan.definitions.append(
                DefinitionWrite(
                    StoredResource(_undefined(booking.reservation.resource_id), Shape(), defined=False), expected_rev=0
                )
            )
        if target.shape.pool:
            self._place_in_pool(plan, target, booking, now_ns, moving)
        else:
            self._place_exclusive(plan, target, booking, now_ns)

    def _place_exclusive(self, plan: WritePlan, target: Target, booking: Booking, now_ns: int) -> None:
        snapshot = target.snapshot
        reservation = booking.reservation
        blocking, displaceable = find_conflicts(snapshot.neighbours, booking, now_ns)
        if blocking:
            raise Conflict(
                reservation.resource_id,
                reservation,
                blocking,
                NEIGHBOUR_LIMIT if snapshot.more_neighbours else len(blocking),
                at_least=snapshot.more_neighbours,
                buffers=(booking.buffer_before_ns, booking.buffer_after_ns),
            )
        if snapshot.more_neighbours or len(displaceable) > DISPLACE_LIMIT:
            # Too many expired holds in the way for one write: remove them first (freeing time needs no
            # guard), then decide again on what is left.
            self._expire(plan.tenant, self._expired_in(plan.tenant, booking, now_ns, _read_plan(target.definition)[2]))
            raise _ReadAgain()
        self._displace(plan, self._stored(plan, displaceable, now_ns, target.shape), now_ns)
        plan.guards += [
            GuardBump(reservation.resource_id, snapshot.guards.get(index) or Guard(index))
            for index in target.shape.slots(booking.padded_start_ns, booking.padded_end_ns)
        ]

    def _stored(self, plan: WritePlan, holds: list, now_ns: int, shape: Shape) -> list:
        """The stored bookings of expired holds that guards listed (a guard keeps only their windows).
        One that is gone (deleted by TTL) leaves the guards; one confirmed meanwhile means: read again."""
        found = []
        for hold in holds:
            if hold.rev:
                found.append(hold)
                continue
            try:
                stored = self.store.get(plan.tenant, hold.reservation.id)
            except StorageUnavailable as error:
                raise unavailable() from error
            if stored is None:
                plan.stale_entries += [
                    (hold.reservation.resource_id, index, hold.reservation.id)
                    for index in shape.slots(hold.padded_start_ns, hold.padded_end_ns)
                ]
            elif stored.reservation.expired(now_ns):
                found.append(stored)
            else:
                raise _ReadAgain()
        return found

    def _place_in_pool(
        self, plan: WritePlan, target: Target, booking: Booking, now_ns: int, moving: Booking | None
    ) -> None:
        definition, shape, snapshot = target.definition, target.shape, target.snapshot
        reservation = booking.reservation
        capacity = definition.resource.capacity
        wanted = units_by_cell(booking, shape)
        released = {}
        if moving is not None and moving.reservation.resource_id == reservation.resource_id:
            released = {cell: -units for cell, units in units_by_cell(moving, shape).items()}
        displaced = []
        full = self._first_full(shape, snapshot.buckets, capacity, merge_bucket_deltas(shape, wanted, released))
        if full is not None:
            in_window = list(self._pool_bookings(plan.tenant, definition, booking))
            displaced = [
                other
                for other in in_window
                if other.reservation.expired(now_ns)
                and other.overlaps(booking.padded_start_ns, booking.padded_end_ns)
                and (moving is None or other.reservation.id != moving.reservation.id)
            ]
            if len(displaced) > DISPLACE_LIMIT:
                self._expire(plan.tenant, displaced)  # apart, then decide on fresh counters
                raise _ReadAgain()
            freed = [{cell: -units for cell, units in units_by_cell(other, shape).items()} for other in displaced]
            merged = merge_bucket_deltas(shape, wanted, released, *freed)
            buckets = self._with_buckets(plan.tenant, reservation.resource_id, shape, snapshot.buckets, merged)
            full = self._first_full(shape, buckets, capacity, merged)
            if full is not None:
                cell_start, cell_end, free = full
                blocking = [
                    other
                    for other in in_window
                    if other.overlaps(cell_start, cell_end)
                    and not other.reservation.expired(now_ns)
                    and (moving is None or other.reservation.id != moving.reservation.id)
                ]
                if not blocking:
                    # the counters read count units whose bookings are gone by the time they were read
                    # (an expired hold swept, a booking cancelled): decide again on fresh counters
                    raise _ReadAgain()
                raise Conflict(
                    reservation.resource_id,
                    reservation,
                    blocking,
                    len(blocking),
                    (cell_start, cell_end),
                    free,
                    capacity,
                )
        freed = [{cell: -units for cell, units in units_by_cell(other, shape).items()} for other in displaced]
        self._displace(plan, displaced, now_ns)
        created = False
        merged = merge_bucket_deltas(shape, wanted, released, *freed)
        buckets = self._with_buckets(plan.tenant, reservation.resource_id, shape, snapshot.buckets, merged)
        for index, cells in sorted(merged.items()):
            bucket = buckets.get(index)
            exists = bucket is not None and bucket.exists
            cap = bucket.cap if exists else capacity
            plan.buckets.append(
                BucketChange(
                    reservation.resource_id,
                    shape,
                    index,
                    tuple(sorted(cells.items())),
                    cap,
                    min(cap, capacity),
                    create=not exists,
                )
            )
            created = created or not exists
        padded = booking.padded_end_ns - booking.padded_start_ns
        if created or padded > definition.longest_ns:
            plan.checks.append(
                DefinitionCheck(
                    reservation.resource_id, definition.crev, padded if padded > definition.longest_ns else 0
                )
            )

    def _with_buckets(self, tenant: str, resource_id: str, shape: Shape, read: dict, merged: dict) -> dict:
        """The buckets read, plus those the deltas touch beyond the new window (a moved or displaced
        booking's old cells): a bucket's existence and capacity must be known to write it."""
        missing = sorted(set(merged) - set(read))
        if not missing:
            return read
        try:
            found = self.store.read_buckets(tenant, resource_id, shape, missing[0], missing[-1])
        except StorageUnavailable as error:
            raise unavailable() from error
        return {**read, **{bucket.index: bucket for bucket in found if bucket.index in merged}}

    @staticmethod
    def _first_full(shape: Shape, buckets: dict, capacity: int, merged: dict) -> tuple | None:
        """(cell start, cell end, units free) of the first cell the deltas would overfill, or None."""
        for index in sorted(merged):
            bucket = buckets.get(index)
            limit = min(bucket.cap, capacity) if bucket is not None and bucket.exists else capacity
            for cell, delta in sorted(merged[index].items()):
                used = bucket.used_at(cell) if bucket is not None else 0
                if delta > 0 and used + delta > limit:
                    end = shape.grid.next_point(cell + 1)
                    return cell, end, max(0, limit - used)
        return None

    def _expired_in(self, tenant: str, booking: Booking, now_ns: int, lookback_ns: int) -> list:
        """Every expired hold whose padded window overlaps an exclusive booking's: stored exclusive
        bookings never overlap, so only the last one starting before the window can reach into it."""
        resource_id = booking.reservation.resource_id
        start = start_key_bound(booking.padded_start_ns)
        try:
            before = list(self.store.bookings(tenant, resource_id, start_key_bound(rules.EARLIEST_NS), start, True, 1))[
                :1
            ]
            within = self.store.bookings(
                tenant, resource_id, start, start_key_bound(booking.padded_end_ns + lookback_ns), False, 100
            )
            return [
                other
                for other in [*before, *within]
                if other.reservation.expired(now_ns) and other.overlaps(booking.padded_start_ns, booking.padded_end_ns)
            ]
        except StorageUnavailable as error:
            raise unavailable() from error

    def _pool_bookings(self, tenant: str, definition: StoredResource, booking: Booking):
        """The pool's bookings that may overlap `booking` (looking back by its longest claim)."""
        low = start_key_bound(booking.padded_start_ns - definition.longest_ns - definition.max_buffer_before_ns)
        high = start_key_bound(booking.padded_end_ns + definition.max_buffer_before_ns)
        for other in self.store.bookings(tenant, booking.reservation.resource_id, low, high, False, 100):
            if other.overlaps(booking.padded_start_ns, booking.padded_end_ns):
                yield other

    @staticmethod
    def _displace(plan: WritePlan, holds: list, now_ns: int) -> None:
        """Remove expired holds in the same write that takes their time (a pool's deltas already free their units)."""
        for hold in holds:
            plan.remove.append(hold)
            plan.events.append(
                _event(
                    ChangeKind.RESERVATION_EXPIRED,
                    _next_event_time(plan, now_ns, hold),
                    hold.reservation.seen_at(now_ns),
                    hold.reservation,
                )
            )

    def _raise_longest(self, plan: WritePlan, snapshot: ReserveSnapshot, booking: Booking) -> None:
        duration = booking.reservation.end_ns - booking.reservation.start_ns
        if duration > lookback_ns(snapshot.user_longest_ns):
            plan.longest.append(LongestRaise(booking.reservation.user_id, duration, snapshot.user_longest_ns))
        if duration > lookback_ns(snapshot.tenant_longest_ns):
            plan.longest.append(LongestRaise("", duration, snapshot.tenant_longest_ns))

    # ---- reads --------------------------------------------------------------------------------

    def get(self, caller: Caller, reservation_id: str) -> Reservation:
        return self._load(caller, reservation_id).reservation.seen_at(self.clock())

    def _load(self, caller: Caller, reservation_id: str) -> Booking:
        validate.reservation_id(reservation_id)
        try:
            found = self.store.get(caller.tenant, reservation_id)
        except StorageUnavailable as error:
            raise unavailable() from error
        if found is None:
            raise not_found("reservation", reservation_id)
        return found

    @staticmethod
    def _check_acting(caller: Caller, user_id: str) -> None:
        if caller.acting_user and caller.acting_user != user_id:
            raise ServiceError(
                Code.PERMISSION_DENIED,
                f"acting as user {caller.acting_user}: cannot change reservations of another user",
            )

    # ---- changes of one reservation -----------------------------------------------------------

    def confirm(self, caller: Caller, reservation_id: str) -> Reservation:
        """PENDING becomes CONFIRMED (a hold stops expiring); CONFIRMED stays; BLOCKED and EXPIRED cannot."""

        def confirmed(current: Reservation, now_ns: int) -> Reservation | None:
            if current.expired(now_ns):
                raise failed(f"reservation {reservation_id}: hold expired at {validate.iso(current.expires_at_ns)}")
            if current.status == Status.BLOCKED:
                raise failed(f"reservation {reservation_id} is BLOCKED and cannot be confirmed")
            if current.status == Status.CONFIRMED:
                return None
            return dataclasses.replace(current, status=Status.CONFIRMED, expires_at_ns=0)

        return self._change(caller, reservation_id, confirmed, ChangeKind.RESERVATION_CONFIRMED)

    def update(self, caller: Caller, reservation_id: str, status: Status, note: str | None) -> Reservation:
        """Set status (UNKNOWN: keep it) and/or note (None: keep it, "": clear it). An expired hold cannot."""
        if status == Status.EXPIRED:
            raise invalid("status", "EXPIRED is only ever set by the service")
        if note is not None:
            validate.check_text("note", note, validate.MAX_NOTE_LENGTH, required=False)

        def updated(current: Reservation, now_ns: int) -> Reservation | None:
            if current.expired(now_ns):
                raise failed(f"reservation {reservation_id}: hold expired at {validate.iso(current.expires_at_ns)}")
            new_status = status or current.status
            expires = current.expires_at_ns if new_status == Status.PENDING else 0
            changed = dataclasses.replace(
                current, status=new_status, expires_at_ns=expires, note=current.note if note is None else note
            )
            return None if changed == current else changed

        return self._change(caller, reservation_id, updated, ChangeKind.RESERVATION_UPDATED)

    def _change(self, caller: Caller, reservation_id: str, rule, kind: ChangeKind) -> Reservation:
        """Read, apply `rule` (None: nothing to change), write back if unchanged meanwhile."""
        intended = None
        for attempt in range(WRITE_ATTEMPTS):
            now = self.clock()
            current = self._load_after(caller, reservation_id, intended)
            if intended is not None and current == intended:  # ours: same revision, same event time
                return intended.reservation  # the write whose answer was lost did commit
            self._check_acting(caller, current.reservation.user_id)
            changed = rule(current.reservation, now)
            if changed is None:
                return current.reservation.seen_at(now)
            plan = WritePlan(caller.tenant)
            at = _next_event_time(plan, now, current)
            stored = dataclasses.replace(current, reservation=changed, rev=current.rev + 1, last_event_ns=at)
            plan.change.append((current, stored))
            plan.events.append(_event(kind, at, changed, current.reservation))
            try:
                self._commit(plan)
                return changed
            except (StaleWrite, OutcomeUnknown):
                # A failed condition may be our own write, applied and then retried by botocore:
                # the next read tells (the revision is ours), and if it cannot, so does the answer.
                intended = stored
                _backoff(attempt)
        return self._give_up(caller, reservation_id, intended)

    def _give_up(self, caller: Caller, reservation_id: str, intended: Booking | None) -> Reservation:
        """After the last attempt: the answer is what happened, if a lost answer left it unknown."""
        if intended is not None and self._load_after(caller, reservation_id, intended) == intended:
            return intended.reservation
        raise ServiceError(
            Code.ABORTED, f"too many concurrent changes on reservation {reservation_id}; nothing was changed; retry"
        )

    def _load_after(self, caller: Caller, reservation_id: str, intended: Booking | None) -> Booking:
        """The reservation as stored; after a lost answer, a failing read means 'may have happened'."""
        if intended is None:
            return self._load(caller, reservation_id)
        for attempt in range(3):
            try:
                found = self.store.get(caller.tenant, reservation_id)
            except StorageUnavailable:
                _backoff(attempt + 3)
                continue
            if found is None:
                raise not_found("reservation", reservation_id)
            return found
        raise MaybeWritten(
            f"storage failed while changing reservation {reservation_id}: the change may have "
            f"been applied; get it to find out",
            reservation_id,
        )

    def cancel(self, caller: Caller, reservation_id: str) -> Reservation:
        """Delete the reservation and free its time at once; answers it as it was (an expired hold too)."""
        # Set once a delete failed: it may have been applied all the same (an answer lost and the
        # call retried by botocore fails its condition), or a concurrent cancel won. Either way, if
        # the reservation is gone on the next read, this cancel's request is fulfilled.
        maybe_deleted = None
        for attempt in range(WRITE_ATTEMPTS):
            now = self.clock()
            try:
                current = self._load_after(caller, reservation_id, maybe_deleted)
            except ServiceError as error:
                if error.code is Code.NOT_FOUND and maybe_deleted is not None:
                    return maybe_deleted.reservation.seen_at(now)
                raise
            self._check_acting(caller, current.reservation.user_id)
            seen = current.reservation.seen_at(now)
            plan = WritePlan(caller.tenant, remove=[current])
            plan.events.append(
                _event(
                    ChangeKind.RESERVATION_CANCELLED, _next_event_time(plan, now, current), seen, current.reservation
                )
            )
            self._release(plan, current)
            try:
                self._commit(plan)
                return seen
            except (StaleWrite, OutcomeUnknown):
                maybe_deleted = current
                _backoff(attempt)
        try:
            self._load_after(caller, reservation_id, maybe_deleted)
        except ServiceError as error:
            if error.code is Code.NOT_FOUND:
                return maybe_deleted.reservation.seen_at(self.clock())
            raise
        raise ServiceError(
            Code.ABORTED, f"too many concurrent changes on reservation {reservation_id}; nothing was cancelled; retry"
        )

    def _release(self, plan: WritePlan, booking: Booking) -> None:
        """Give back a pool booking's units (an exclusive one frees its time by disappearing)."""
        if not booking.pooled:
            return
        shape = self._shape_of(plan.tenant, booking.reservation.resource_id)
        freed = {cell: -units for cell, units in units_by_cell(booking, shape).items()}
        for index, cells in merge_bucket_deltas(shape, freed).items():
            _add_to_bucket(plan, booking.reservation.resource_id, shape, index, cells)

    def pool_lookback(self, tenant: str, resource_id: str) -> int | None:
        """How long before a window a pool's bookings may start and still overlap it (None: not a pool)."""
        if not self._shape_of(tenant, resource_id).pool:
            return None
        try:
            definition = self.store.read_definition(tenant, resource_id)
        except StorageUnavailable as error:
            raise unavailable() from error
        return definition.longest_ns if definition is not None else 0

    def _shape_of(self, tenant: str, resource_id: str) -> Shape:
        hint = self.hints.get((tenant, resource_id))
        if hint is None:
            try:
                hint = self.store.read_definition(tenant, resource_id)
            except StorageUnavailable as error:
                raise unavailable() from error
            if hint is None:
                return Shape()
            self.hints[(tenant, resource_id)] = hint
        return hint.shape

    # ---- reschedule -------------------------------------------------------------------------------

    def reschedule(
        self, caller: Caller, reservation_id: str, start_ns: int, end_ns: int, resource_id: str = ""
    ) -> Reservation:
        """Move a reservation (id, user, status, note, units, hold expiry kept) in one write:
        the new window is claimed and the old one released together, or nothing changes."""
        validate.window("start", "end", start_ns, end_ns)
        if resource_id:
            resource_id = validate.name("resource_id", resource_id)
        intended = None
        for attempt in range(WRITE_ATTEMPTS):
            now = self.clock()
            current = self._load_after(caller, reservation_id, intended)
            if intended is not None and current == intended:  # ours: same revision, same event time
                return intended.reservation
            self._check_acting(caller, current.reservation.user_id)
            old = current.reservation
            if old.expired(now):
                raise failed(f"reservation {reservation_id}: hold expired at {validate.iso(old.expires_at_ns)}")
            moved = dataclasses.replace(
                old, start_ns=start_ns, end_ns=end_ns, resource_id=resource_id or old.resource_id
            )
            if moved == old:
                return old
            try:
                target = self._target(caller.tenant, moved)
            except StorageUnavailable as error:
                raise unavailable() from error
            rules.check_window(target.resource, target.shape, start_ns, end_ns, old.units, now, "start", "end", "units")
            self._check_bookable(target, moved.resource_id)
            before, after = rules.padding(target.resource)
            stored = Booking(
                moved, current.rev + 1, before, after, pooled=target.shape.pool, slot_ns=target.shape.slot_ns
            )
            plan = WritePlan(caller.tenant)
            if old.resource_id != moved.resource_id:
                self._release(plan, current)
            try:
                self._place(plan, target, stored, now, moving=current)
            except _ReadAgain:
                continue
            at = _next_event_time(plan, now, current)
            stored = dataclasses.replace(stored, last_event_ns=at)
            plan.change.append((current, stored))
            self._raise_longest(plan, target.snapshot, stored)
            plan.events.append(_event(ChangeKind.RESERVATION_RESCHEDULED, at, moved, old))
            try:
                self._commit(plan)
                return moved
            except (StaleWrite, OutcomeUnknown):
                # A failed condition may be our own write, applied and then retried by botocore:
                # the next read tells (the revision is ours), and if it cannot, so does the answer.
                intended = stored
                _backoff(attempt)
        return self._give_up(caller, reservation_id, intended)

    # ---- expiry ---------------------------------------------------------------------------------------

    def sweep_expired(self, limit: int = 500) -> int:
        """Remove holds that expired (the scheduled sweep): returns how many were removed."""
        now = self.clock()
        by_tenant = {}
        for tenant, booking in self.store.expired_holds(now, 100):
            if sum(len(holds) for holds in by_tenant.values()) >= limit:
                break
            if booking.reservation.expired(now):
                by_tenant.setdefault(tenant, []).append(booking)
        return sum(self._expire(tenant, holds) for tenant, holds in by_tenant.items())

    def _expire(self, tenant: str, holds: list) -> int:
        """Remove expired holds (each only if it is still the one read), EXPIRE_BATCH per write;
        returns how many were removed."""
        removed = 0
        for first in range(0, len(holds), EXPIRE_BATCH):
            removed += self._expire_batch(tenant, holds[first : first + EXPIRE_BATCH])
        return removed

    def _expire_batch(self, tenant: str, holds: list) -> int:
        now = self.clock()
        plan = WritePlan(tenant)
        for hold in holds:
            plan.remove.append(hold)
            plan.events.append(
                _event(
                    ChangeKind.RESERVATION_EXPIRED,
                    _next_event_time(plan, now, hold),
                    hold.reservation.seen_at(now),
                    hold.reservation,
                )
            )
            self._release(plan, hold)
        try:
            self._commit(plan)
            return len(holds)
        except (StaleWrite, OutcomeUnknown, ServiceError):
            if len(holds) == 1:
                return 0  # confirmed, cancelled or removed by someone else meanwhile (or next sweep's)
            return sum(self._expire_batch(tenant, [hold]) for hold in holds)


def _add_to_bucket(plan: WritePlan, resource_id: str, shape: Shape, index: int, cells: dict) -> None:
    """Give units back to a bucket, merged with what the plan already gives it (one action per item)."""
    for number, change in enumerate(plan.buckets):
        if (change.resource_id, change.index) == (resource_id, index):
            merged = dict(change.deltas)
            for cell, delta in cells.items():
                merged[cell] = merged.get(cell, 0) + delta
            plan.buckets[number] = dataclasses.replace(change, deltas=tuple(sorted(merged.items())))
            return
    plan.buckets.append(BucketChange(resource_id, shape, index, tuple(sorted(cells.items())), 0, 0, create=False))


def _undefined(resource_id: str) -> Resource:
    return Resource(resource_id)


def _read_plan(definition: StoredResource | None) -> tuple:
    """(shape, (buffer_before, buffer_after), neighbour lookback) that a definition asks a read for."""
    if definition is None:
        return Shape(), (0, 0), 0
    live = definition.resource if definition.live else None
    return definition.shape, rules.padding(live), definition.max_buffer_before_ns
