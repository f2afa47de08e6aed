"""Resource rules: define (create or change), read, list and delete resources.

A definition fixes the resource's storage shape the first time it is stored
(exclusive with guard slots sized from max_duration, or a pool counting units
on its step grid); what shapes storage can never change afterwards. Which
other rules apply to reservations already made is in docs/api.md.
"""

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable

from . import paging, validate
from .errors import Code, ServiceError, failed, invalid, not_found, unavailable
from .layout import Shape, StoredResource, shape_for, start_key_bound
from .model import DAY_NS, DURATION_RULES, MAX_NS, ChangeEvent, ChangeKind, Resource
from .ports import BucketRecap, DefinitionWrite, OutcomeUnknown, StaleWrite, StorageUnavailable, Store, WritePlan
from .query import page_size_of
from .rules import LONGEST_NS
from .service import MAX_UNITS
from .timegrid import check_step, zone_of

MAX_LABELS = 32
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256
WRITE_ATTEMPTS = 8
log = logging.getLogger(__name__)


def _unknown_or_unavailable(maybe_written: bool, resource_id: str) -> ServiceError:
    if not maybe_written:
        return unavailable()
    return ServiceError(
        Code.UNKNOWN,
        f"storage failed while defining resource {resource_id}: the definition may "
        "have been stored; get it to find out, or define it again",
    )


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.25, 0.01 * 2**attempt)))


def _rule_name(field: str) -> str:
    return "resource." + field.removesuffix("_ns")


def check_resource(resource: Resource) -> Resource:
    """The resource with its id normalized and capacity defaulted, or INVALID_ARGUMENT naming the rule."""
    resource_id = validate.name("resource.id", resource.id)
    validate.check_text("resource.name", resource.name, validate.MAX_ID_LENGTH, required=False)
    if len(resource.labels) > MAX_LABELS:
        raise invalid("resource.labels", f"at most {MAX_LABELS} labels")
    for key, value in resource.labels:
        validate.check_text("resource.labels key", key, MAX_LABEL_KEY, required=True)
        validate.check_text(f"resource.labels[{key}]", value, MAX_LABEL_VALUE, required=False)
    if resource.capacity < 0 or resource.capacity > MAX_UNITS:
        raise invalid("resource.capacity", f"must be 0 (means 1) to {MAX_UNITS}, got {resource.capacity}")
    for field in DURATION_RULES:
        if getattr(resource, field) < 0:
            raise invalid(_rule_name(field), "must not be negative")
    for field in (
        "max_duration_ns",
        "min_duration_ns",
        "min_notice_ns",
        "max_advance_ns",
        "hold_for_ns",
        "buffer_before_ns",
        "buffer_after_ns",
    ):
        if getattr(resource, field) > LONGEST_NS:
            raise invalid(_rule_name(field), f"must be at most {LONGEST_NS // DAY_NS} days")
    if resource.min_duration_ns and resource.max_duration_ns and resource.min_duration_ns > resource.max_duration_ns:
        raise invalid("resource.min_duration", "must not be longer than max_duration")
    try:
        zone_of(resource.time_zone)
    except ValueError as error:
        raise invalid("resource.time_zone", f"{error} (an IANA name such as Europe/Paris)") from None
    if resource.step_ns:
        problem = check_step(resource.step_ns)
        if problem:
            raise invalid("resource.step", problem)
    capacity = resource.capacity or 1
    if capacity > 1:
        if not resource.step_ns:
            raise invalid("resource.step", "a pool (capacity > 1) needs a step: it counts units per step")
        if resource.buffer_before_ns or resource.buffer_after_ns:
            raise invalid(
                "resource.buffer_before",
                "a pool counts whole steps: buffers must be 0 (make the step or the reservation longer)",
            )
    return dataclasses.replace(
        resource, id=resource_id, capacity=capacity, labels=tuple(sorted(dict(resource.labels).items()))
    )


class ResourceService:
    def __init__(self, store: Store, hints: dict, clock: Callable[[], int] = time.time_ns):
        self.store = store
        self.hints = hints  # shared with ReservationService: dropped here when a definition changes
        self.clock = clock

    def _read(self, tenant: str, resource_id: str) -> StoredResource | None:
        try:
            return self.store.read_definition(tenant, resource_id)
        except StorageUnavailable as error:
            raise unavailable() from error

    def define(self, tenant: str, wanted: Resource) -> Resource:
        """Create a resource or change its rules (storage shape and capacity changes are checked)."""
        resource = check_resource(wanted)
        maybe_written = False
        for attempt in range(WRITE_ATTEMPTS):
            now = self.clock()
            try:
                current = self.store.read_definition(tenant, resource.id)
            except StorageUnavailable as error:
                raise _unknown_or_unavailable(maybe_written, resource.id) from error
            shape = current.shape if current is not None else shape_for(resource)
            self._check_shape(resource, shape, current)
            if current is not None and current.live and current.resource == resource:
                if shape.pool:
                    self._settle_capacity(tenant, current, None, now)  # finish a change a lost answer cut short
                return resource
            capacity_changed = current is not None and shape.pool and current.resource.capacity != resource.capacity
            if capacity_changed:
                self._check_capacity(tenant, resource, shape, now)
            stored = StoredResource(
                resource,
                shape,
                rev=(current.rev + 1) if current else 1,
                crev=(current.crev + (1 if capacity_changed else 0)) if current else 1,
                longest_ns=current.longest_ns if current else 0,
                max_buffer_before_ns=max(current.max_buffer_before_ns if current else 0, resource.buffer_before_ns),
                last_event_ns=max(now, (current.last_event_ns + 1) if current else 0),
            )
            plan = WritePlan(
                tenant,
                definitions=[DefinitionWrite(stored, current.rev if current else 0)],
                events=[
                    ChangeEvent(
                        ChangeKind.RESOURCE_DEFINED,
                        stored.last_event_ns,
                        uuid.uuid4().hex,
                        resource.id,
                        resource=resource,
                    )
                ],
            )
            try:
                self.store.commit(plan)
            except (StaleWrite, OutcomeUnknown):
                maybe_written = True  # (a failed condition may be our own write, retried): the next read tells
                _backoff(attempt)
                continue
            finally:
                self.hints.pop((tenant, resource.id), None)
            if shape.pool:
                self._settle_capacity(tenant, stored, current if capacity_changed else None, now)
            return resource
        raise ServiceError(Code.ABORTED, f"too many concurrent changes on resource {resource.id}; retry")

    @staticmethod
    def _check_shape(resource: Resource, shape: Shape, current: StoredResource | None) -> None:
        """Refuse changes of what shapes storage, naming what can be done instead."""
        if current is None:
            return
        if resource.is_pool != shape.pool:
            if current.defined:
                raise failed(
                    f"resource {resource.id}: capacity 1 and capacity > 1 are stored differently, so a "
                    f"resource cannot change between them; define a new resource id"
                )
            raise failed(
                f"resource {resource.id} was already used without a definition, so it stays "
                f"exclusive (capacity 1); define a pool before its first reservation, under a new id"
            )
        if shape.pool and (resource.step_ns, resource.time_zone) != (shape.step_ns, shape.time_zone):
            raise failed(
                f"resource {resource.id}: a pool's step and time_zone are fixed once defined "
                f"(step {validate.duration_text(shape.step_ns)}, time_zone {shape.time_zone or 'UTC'})"
            )
        padded = resource.max_duration_ns + resource.buffer_before_ns + resource.buffer_after_ns
        if padded > shape.longest_ns():
            raise failed(
                f"resource {resource.id}: its storage was sized for reservations of at most "
                f"{validate.duration_text(shape.longest_ns())} with their buffers; define a new "
                f"resource id for longer ones"
            )

    def _future_buckets(self, tenant: str, resource_id: str, shape: Shape, now_ns: int) -> list:
        first = shape.bucket_of(now_ns)
        try:
            return self.store.read_buckets(tenant, resource_id, shape, first, first + 10**12)
        except StorageUnavailable as error:
            raise unavailable() from error

    def _check_capacity(self, tenant: str, resource: Resource, shape: Shape, now_ns: int) -> None:
        """Lowering a pool's capacity below what is booked from now on is refused, naming the busiest cell."""
        busiest = None
        for bucket in self._future_buckets(tenant, resource.id, shape, now_ns):
            for cell, used in bucket.used:
                end = shape.grid.next_point(cell + 1)
                if end > now_ns and (busiest is None or used > busiest[0]):
                    busiest = (used, cell, end)
        if busiest is not None and busiest[0] > resource.capacity:
            used, start, end = busiest
            raise failed(
                f"resource {resource.id}: {used} units are booked in [{validate.iso(start)}, "
                f"{validate.iso(end)}), more than the capacity {resource.capacity} asked; cancel or move "
                f"reservations there first"
            )

    def _settle_capacity(self, tenant: str, stored: StoredResource, before: StoredResource | None, now_ns: int) -> None:
        """Give every bucket from now on the definition's capacity. A bucket where reservations made
        meanwhile (by writers that read the old capacity) do not fit the new one undoes the change;
        storage failures leave it under way: defining the resource again finishes it."""
        shape, new, resource_id = stored.shape, stored.resource.capacity, stored.resource.id
        for attempt in range(WRITE_ATTEMPTS):
            try:
                pending = [
                    bucket
                    for bucket in self.store.read_buckets(
                        tenant, resource_id, shape, shape.bucket_of(now_ns), shape.bucket_of(now_ns) + 10**12
                    )
                    if bucket.cap != new
                ]
            except StorageUnavailable:
                break
            if not pending:
                return
            for bucket in pending:
                try:
                    self.store.commit(
                        WritePlan(
                            tenant, recaps=[BucketRecap(resource_id, shape, bucket.index, bucket.cap, new, now_ns)]
                        )
                    )
                except StaleWrite:
                    if new < bucket.cap and self._over(tenant, stored, bucket.index, new, now_ns):
                        self._undo_capacity(
                            tenant,
                            stored,
                            before
                            or dataclasses.replace(
                                stored, resource=dataclasses.replace(stored.resource, capacity=bucket.cap)
                            ),
                            now_ns,
                        )
                        raise failed(
                            f"resource {resource_id}: reservations made while the capacity changed do not "
                            f"fit {new}; the capacity stays {before.resource.capacity if before else bucket.cap}"
                        ) from None
                    _backoff(attempt)
                    break  # its capacity changed meanwhile: read the buckets again
                except (OutcomeUnknown, StorageUnavailable):
                    _backoff(attempt)
                    break  # read again: a lost answer may have applied it
        # UNKNOWN, not UNAVAILABLE: the definition was stored, only some of its buckets follow it yet
        raise ServiceError(
            Code.UNKNOWN,
            f"resource {resource_id}: capacity {new} is stored but storage failed while "
            "applying it; define the resource again (same fields) to finish it",
        )

    def _over(self, tenant: str, stored: StoredResource, index: int, capacity: int, now_ns: int) -> bool:
        """Does a bucket hold more units than `capacity` in a cell that is not over yet?"""
        shape = stored.shape
        try:
            buckets = self.store.read_buckets(tenant, stored.resource.id, shape, index, index)
        except StorageUnavailable:
            return False  # not known: the caller retries and reads again
        return any(
            used > capacity and shape.grid.next_point(cell + 1) > now_ns
            for bucket in buckets
            for cell, used in bucket.used
        )

    def _undo_capacity(self, tenant: str, after: StoredResource, before: StoredResource, now_ns: int) -> None:
        """Put the definition and the buckets back to the capacity of `before`."""
        restored = dataclasses.replace(
            before, rev=after.rev + 1, crev=after.crev + 1, last_event_ns=after.last_event_ns + 1
        )
        try:
            self.store.commit(
                WritePlan(
                    tenant,
                    definitions=[DefinitionWrite(restored, after.rev)],
                    events=[
                        ChangeEvent(
                            ChangeKind.RESOURCE_DEFINED,
                            restored.last_event_ns,
                            uuid.uuid4().hex,
                            before.resource.id,
                            resource=before.resource,
                        )
                    ],
                )
            )
        except (StaleWrite, OutcomeUnknown, StorageUnavailable):
            raise ServiceError(
                Code.UNKNOWN,
                f"resource {after.resource.id}: reservations made meanwhile do not fit "
                f"capacity {after.resource.capacity}, and putting back "
                f"{before.resource.capacity} failed; get the resource to see which "
                "capacity it has, and define it again",
            ) from None
        self._settle_capacity(tenant, restored, None, now_ns)

    def get(self, tenant: str, resource_id: str) -> Resource:
        resource_id = validate.name("id", resource_id)
        stored = self._read(tenant, resource_id)
        if stored is None or not stored.live:
            raise not_found("resource", resource_id)
        return stored.resource

    def list(self, tenant: str, labels: dict, page_size: int, page_token: str) -> tuple:
        """(resources in id order, next page token) of the tenant's defined resources carrying `labels`."""
        size = page_size_of(page_size)
        digest = paging.query_digest("resources", tenant, sorted(labels.items()))
        after = paging.decode(page_token, digest, position=None) if page_token else ""
        found = []
        try:
            for stored in self.store.list_definitions(tenant, after, labels, size + 1):
                if len(found) == size:
                    return found, paging.encode(found[-1].id, digest)
                found.append(stored.resource)
        except StorageUnavailable as error:
            raise unavailable() from error
        return found, ""

    def _live_booking(self, tenant: str, current: StoredResource, now_ns: int):
        """A booking of the resource that is not over (nor an expired hold), if there is one."""
        lookback = current.longest_ns if current.shape.pool else 0
        resource_id = current.resource.id
        try:
            if not current.shape.pool:  # at most one booking covers `now`: the last one starting before it
                before = next(
                    iter(
                        self.store.bookings(
                            tenant, resource_id, start_key_bound(-LONGEST_NS), start_key_bound(now_ns), True, 1
                        )
                    ),
                    None,
                )
                if before is not None and before.reservation.end_ns > now_ns and not before.reservation.expired(now_ns):
                    return before
            for booking in self.store.bookings(
                tenant, resource_id, start_key_bound(now_ns - lookback), start_key_bound(MAX_NS + 1), False, 20
            ):
                if booking.reservation.end_ns > now_ns and not booking.reservation.expired(now_ns):
                    return booking
        except StorageUnavailable as error:
            raise unavailable() from error
        return None

    def delete(self, tenant: str, resource_id: str) -> Resource:
        """Delete a definition; refused while reservations of the resource end in the future."""
        resource_id = validate.name("id", resource_id)
        maybe_deleted = None  # the definition a delete whose answer was lost (or retried) may have stored
        for _ in range(WRITE_ATTEMPTS):
            now = self.clock()
            try:
                current = self._read(tenant, resource_id)
            except ServiceError:
                if maybe_deleted is None:
                    raise
                raise ServiceError(
                    Code.UNKNOWN,
                    f"storage failed while deleting resource {resource_id}: it may "
                    "have been deleted; get it to find out",
                ) from None
            if (
                maybe_deleted is not None
                and current is not None
                and current.deleted
                and current.rev == maybe_deleted.rev
            ):
                return current.resource  # the delete whose answer was lost did commit
            if current is None or not current.live:
                raise not_found("resource", resource_id)
            live = self._live_booking(tenant, current, now)
            if live is not None:
                raise failed(
                    f"resource {resource_id} still has reservations (e.g. {live.reservation.id} ending "
                    f"{validate.iso(live.reservation.end_ns)}); cancel them first"
                )
            stored = dataclasses.replace(
                current, rev=current.rev + 1, deleted=True, last_event_ns=max(now, current.last_event_ns + 1)
            )
            plan = WritePlan(
                tenant,
                definitions=[DefinitionWrite(stored, current.rev)],
                events=[
                    ChangeEvent(
                        ChangeKind.RESOURCE_DELETED,
                        stored.last_event_ns,
                        uuid.uuid4().hex,
                        resource_id,
                        resource=current.resource,
                    )
                ],
            )
            try:
                self.store.commit(plan)
                return current.resource
            except (StaleWrite, OutcomeUnknown):  # lost, or applied and then retried against itself
                maybe_deleted = stored
                continue
            finally:
                self.hints.pop((tenant, resource_id), None)
        raise ServiceError(Code.ABORTED, f"too many concurrent changes on resource {resource_id}; retry")
