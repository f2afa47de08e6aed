"""The service rules: validation, the conflict check, state transitions, retries.

Knows nothing of HTTP, gRPC or DynamoDB request shapes: it takes and returns
model values and talks to a store (chalicelib.store.DynamoStore).
"""
import dataclasses
import datetime
import hashlib
import logging
import random
import time
import uuid
from typing import Optional

from .errors import Code, ServiceError, invalid, not_found
from .model import MAX_NS, MIN_NS, NANOS_PER_SECOND, Claim, Reservation, Status
from .query import Page, QuerySpec, run_query
from .slots import MAX_DURATION_NS, slots_touched
from .store import OutcomeUnknown, RequestIdTaken, StaleWrite, StorageUnavailable, Versioned

MAX_ID_LENGTH = 128
MAX_NOTE_LENGTH = 4096
REQUEST_ID_TTL_SECONDS = 24 * 3600
WRITE_ATTEMPTS = 16
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.25
EPOCH = datetime.datetime(1970, 1, 1)

log = logging.getLogger(__name__)


class Conflict(ServiceError):
    """Reserve overlapped live reservations; `claims` names them."""

    def __init__(self, resource_id: str, requested: Claim, claims: list):
        listed = ", ".join(f"{claim.reservation_id} [{_iso(claim.start_ns)}, {_iso(claim.end_ns)})" for claim in claims)
        super().__init__(Code.FAILED_PRECONDITION,
                         f"resource {resource_id} is already reserved in the requested window by {listed}")
        self.resource_id = resource_id
        self.requested = requested
        self.claims = tuple(claims)


def find_conflicts(claims, start_ns: int, end_ns: int, own_id: str) -> list:
    """THE conflict check: every other claim whose half-open window overlaps [start, end)."""
    overlapping = {claim.reservation_id: claim for claim in claims
                   if claim.reservation_id != own_id and claim.overlaps(start_ns, end_ns)}
    return sorted(overlapping.values(), key=lambda claim: (claim.start_ns, claim.reservation_id))


def _iso(instant_ns: int) -> str:
    seconds, nanos = divmod(instant_ns, NANOS_PER_SECOND)
    stamp = (EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z" if nanos else f"{stamp}Z"


def _check_text(field: str, value: str, max_length: int, required: bool) -> None:
    if required and not value:
        raise invalid(field, "must not be empty")
    if len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters, got {len(value)}")
    if not value.isprintable():
        raise invalid(field, "must contain printable characters only")


def check_reservation_id(value: str, field: str = "id") -> None:
    if not value:
        raise invalid(field, "must not be empty")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        raise invalid(field, "must be a reservation id as returned by reserve (a lowercase UUID)")


def _fingerprint(reservation: Reservation) -> str:
    """What makes two reserve calls 'the same request' for idempotency."""
    parts = (reservation.user_id, reservation.resource_id, str(int(reservation.status)),
             str(reservation.start_ns), str(reservation.end_ns), reservation.note)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _backoff(attempt: int) -> None:
    """Full jitter: spreads out writers that collided on the same slot item."""
    time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt)))


class ReservationService:
    def __init__(self, store):
        self.store = store

    def reserve(self, draft: Reservation, request_id: str = "") -> Reservation:
        """Make a reservation unless it overlaps a live one of the same resource.

        `draft.id` must be empty: ids are assigned here. UNKNOWN status means PENDING.
        """
        if draft.id:
            raise invalid("reservation.id", "must be empty: the service assigns ids")
        _check_text("reservation.user_id", draft.user_id, MAX_ID_LENGTH, required=True)
        _check_text("reservation.resource_id", draft.resource_id, MAX_ID_LENGTH, required=True)
        _check_text("reservation.note", draft.note, MAX_NOTE_LENGTH, required=False)
        _check_text("request_id", request_id, MAX_ID_LENGTH, required=False)
        if not MIN_NS <= draft.start_ns <= MAX_NS or not MIN_NS <= draft.end_ns <= MAX_NS:
            raise invalid("reservation.start", "must lie in years 1 to 9999")
        if draft.start_ns >= draft.end_ns:
            raise invalid("reservation.end", "must be after reservation.start")
        if draft.end_ns - draft.start_ns > MAX_DURATION_NS:
            raise invalid("reservation.end", f"a reservation lasts at most {MAX_DURATION_NS // NANOS_PER_SECOND // 86400} days")
        status = draft.status or Status.PENDING
        wanted = Reservation(str(uuid.uuid4()), draft.user_id, draft.resource_id, Status(status),
                             draft.start_ns, draft.end_ns, draft.note)
        fingerprint = _fingerprint(wanted)
        slots = slots_touched(wanted.start_ns, wanted.end_ns)

        for attempt in range(WRITE_ATTEMPTS):
            read = self._storage(self.store.read_for_reserve, wanted.resource_id, slots, wanted.user_id,
                                 request_id or None)
            if read.remembered is not None:
                return self._replay(read.remembered, fingerprint, request_id)
            claims = [claim for slot in read.slots for claim in slot.claims]
            if any(claim.reservation_id == wanted.id for claim in claims):
                return wanted  # an earlier attempt whose answer was lost did commit
            conflicts = find_conflicts(claims, wanted.start_ns, wanted.end_ns, wanted.id)
            if conflicts:
                raise Conflict(wanted.resource_id, Claim("", wanted.start_ns, wanted.end_ns), conflicts)
            if attempt == WRITE_ATTEMPTS - 1:
                break
            request = (request_id, fingerprint, int(time.time()) + REQUEST_ID_TTL_SECONDS) if request_id else None
            try:
                self.store.insert(wanted, read, request)
                return wanted
            except (StaleWrite, OutcomeUnknown, RequestIdTaken):
                _backoff(attempt)
        raise ServiceError(Code.ABORTED, f"too many concurrent changes on resource {wanted.resource_id}; retry")

    @staticmethod
    def _storage(read, *arguments):
        """Storage reads; their failure becomes UNAVAILABLE for the caller."""
        try:
            return read(*arguments)
        except StorageUnavailable as error:
            raise _unavailable() from error

    @staticmethod
    def _replay(remembered, fingerprint: str, request_id: str) -> Reservation:
        if remembered.fingerprint != fingerprint:
            raise ServiceError(Code.ALREADY_EXISTS,
                               f"request_id {request_id} was already used for a different reservation")
        return remembered.reservation

    def query(self, spec: QuerySpec) -> Page:
        """One page of the reservations matching every filter given (see chalicelib.query)."""
        _check_text("user_id", spec.user_id, MAX_ID_LENGTH, required=False)
        _check_text("resource_id", spec.resource_id, MAX_ID_LENGTH, required=False)
        return self._storage(run_query, self.store, spec)

    def get(self, reservation_id: str) -> Reservation:
        return self._load(reservation_id).reservation

    def confirm(self, reservation_id: str) -> Reservation:
        """PENDING becomes CONFIRMED; CONFIRMED stays; BLOCKED cannot be confirmed."""
        def confirmed(current: Reservation) -> Optional[Reservation]:
            if current.status == Status.BLOCKED:
                raise ServiceError(Code.FAILED_PRECONDITION,
                                   f"reservation {reservation_id} is BLOCKED and cannot be confirmed")
            if current.status == Status.CONFIRMED:
                return None
            return dataclasses.replace(current, status=Status.CONFIRMED)
        return self._change(reservation_id, confirmed)

    def update(self, reservation_id: str, status: Status, note: Optional[str]) -> Reservation:
        """Set status (UNKNOWN: keep it) and/or note (None: keep it, "": clear it)."""
        if note is not None:
            _check_text("note", note, MAX_NOTE_LENGTH, required=False)

        def updated(current: Reservation) -> Optional[Reservation]:
            changed = dataclasses.replace(current, status=status or current.status,
                            note=current.note if note is None else note)
            return None if changed == current else changed
        return self._change(reservation_id, updated)

    def cancel(self, reservation_id: str) -> Reservation:
        """Delete the reservation and free its time at once; answers it as it was."""
        # Set once a delete failed: it may have been applied all the same (an answer lost and the
        # call retried by botocore fails its condition), or a concurrent cancel won. Either way, if
        # the reservation is gone on the next read, this cancel's request is fulfilled.
        maybe_deleted = None
        for attempt in range(WRITE_ATTEMPTS):
            try:
                current = self._load(reservation_id)
            except ServiceError as error:
                if error.code is Code.NOT_FOUND and maybe_deleted is not None:
                    return maybe_deleted
                raise
            try:
                self.store.delete(current)
                return current.reservation
            except (StaleWrite, OutcomeUnknown):
                maybe_deleted = current.reservation
                _backoff(attempt)
        raise ServiceError(Code.ABORTED, f"too many concurrent changes on reservation {reservation_id}; retry")

    def _load(self, reservation_id: str) -> Versioned:
        check_reservation_id(reservation_id)
        found = self._storage(self.store.get, reservation_id)
        if found is None:
            raise not_found(reservation_id)
        return found

    def _change(self, reservation_id: str, rule) -> Reservation:
        """Read, apply `rule` (None: nothing to change), write back if unchanged meanwhile."""
        for attempt in range(WRITE_ATTEMPTS):
            current = self._load(reservation_id)
            changed = rule(current.reservation)
            if changed is None:
                return current.reservation
            try:
                self.store.replace(current, changed)
                return changed
            except (StaleWrite, OutcomeUnknown):
                _backoff(attempt)
        raise ServiceError(Code.ABORTED, f"too many concurrent changes on reservation {reservation_id}; retry")


def _unavailable() -> ServiceError:
    """Logged with its cause for operators; the caller only learns to retry."""
    log.warning("storage unavailable", exc_info=True)
    return ServiceError(Code.UNAVAILABLE, "storage is temporarily unavailable; retry")
