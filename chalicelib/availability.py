"""Free/busy and bookable slots of several resources, by the same rules reserve applies.

One call reads in two rounds: the definitions (one batch, or the resources
index for a label selector), then every resource's bookings (exclusive) or
unit counters and bookings (pools) in the window, all at once. Nothing is read
from the indexes' history: reads follow what the window holds.

Busy intervals are the padded windows (buffers included) of the reservations
that block time; expired holds block nothing. A slot from find_slots is one
that reserve would accept now: every rule of its resource (grid, buffers,
duration, notice, horizon, capacity) is applied the same way.
"""

import dataclasses
import heapq
import re
import time
from collections.abc import Callable

from . import paging, rules, validate
from .errors import Code, ServiceError, invalid, unavailable
from .layout import Shape, StoredResource, start_key_bound
from .model import DAY_NS, MIN_NS, MINUTE_NS
from .ports import StorageUnavailable, Store, TimelineRead, TooLarge
from .query import page_size_of
from .timegrid import Grid

MAX_RESOURCES = 100
MAX_WINDOW_NS = 92 * DAY_NS
SEARCH_STEP_NS = 5 * MINUTE_NS  # candidate starts of a resource without a step
ITEM_BUDGET = 5000  # bookings read per resource and call
NOTICE_MARGIN_NS = 1_000_000_000
SLOT_POSITION = re.compile(
    r"\d{21}#.+"
)  # a page of slots ends at (start, resource id)  # a slot must still meet min_notice a moment after it is found


@dataclasses.dataclass(frozen=True)
class FreeBusy:
    resource_id: str
    capacity: int
    busy: list  # of (start, end)
    free: list  # of (start, end)
    free_units: list  # of (start, end, units free)


@dataclasses.dataclass(frozen=True)
class Subject:
    """A resource asked about: its definition (None: undefined) and the shape its items have."""

    resource_id: str
    stored: StoredResource | None

    @property
    def rules(self):
        return self.stored.resource if self.stored is not None and self.stored.live else None

    @property
    def shape(self) -> Shape:
        return self.stored.shape if self.stored is not None else Shape()

    @property
    def capacity(self) -> int:
        if not self.bookable:
            return 0
        return self.rules.capacity if self.rules is not None else 1

    @property
    def bookable(self) -> bool:
        """A deleted pool takes no reservations (a deleted exclusive resource is like an undefined one)."""
        return not (self.shape.pool and self.rules is None)


def _merge(intervals: list) -> list:
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _complement(intervals: list, start: int, end: int) -> list:
    free, cursor = [], start
    for busy_start, busy_end in intervals:
        if busy_start > cursor:
            free.append((cursor, busy_start))
        cursor = max(cursor, busy_end)
    if cursor < end:
        free.append((cursor, end))
    return free


class Profile:
    """One resource over a window: when is how much of it free (for a pool, per grid cell)."""

    def __init__(self, subject: Subject, timeline, now_ns: int):
        self.subject = subject
        self.now_ns = now_ns
        live = [b for b in timeline.bookings if not b.reservation.expired(now_ns)]
        self.blocking = sorted((b.padded_start_ns, b.padded_end_ns) for b in live)
        self.cells = self._cells(timeline, now_ns) if subject.shape.pool else []

    def _cells(self, timeline, now_ns: int) -> list:
        """(start, end, units free) of every grid cell of the read window, expired holds given back."""
        shape, read = self.subject.shape, timeline.read
        grid = shape.grid
        buckets = {bucket.index: bucket for bucket in timeline.buckets}
        expired = [b for b in timeline.bookings if b.reservation.expired(now_ns)]
        capacity = self.subject.capacity
        points = list(grid.points(read.start_ns - shape.step_ns - 2 * DAY_NS, read.end_ns + shape.step_ns + 2 * DAY_NS))
        cells = []
        for start, end in zip(points, points[1:]):
            if end <= read.start_ns or start >= read.end_ns:
                continue
            bucket = buckets.get(shape.bucket_of(start))
            limit = min(bucket.cap, capacity) if bucket is not None and bucket.exists else capacity
            used = bucket.used_at(start) if bucket is not None else 0
            used -= sum(b.reservation.units for b in expired if b.padded_start_ns <= start < b.padded_end_ns)
            cells.append((start, end, max(0, limit - used)))
        return cells

    def free_units(self, start: int, end: int) -> list:
        if self.subject.shape.pool:
            steps = [(max(s, start), min(e, end), free) for s, e, free in self.cells if e > start and s < end]
        else:
            busy = _merge([(max(s, start), min(e, end)) for s, e in self.blocking if e > start and s < end])
            steps = [(s, e, 0) for s, e in busy] + [(s, e, 1) for s, e in _complement(busy, start, end)]
        merged = []
        for step in sorted(steps):
            if merged and merged[-1][2] == step[2] and merged[-1][1] == step[0]:
                merged[-1] = (merged[-1][0], step[1], step[2])
            else:
                merged.append(step)
        return merged

    def feasible_starts(self, duration: int, units: int, before: int, after: int) -> list:
        """Intervals [first, last] of starts where a claim of `duration` and `units` fits what blocks now."""
        if self.subject.shape.pool:
            runs = []
            for start, end, free in self.cells:
                if free < units:
                    continue
                if runs and runs[-1][1] == start:
                    runs[-1] = (runs[-1][0], end)
                else:
                    runs.append((start, end))
            return [(start, end - duration) for start, end in runs if end - start >= duration]
        if units > 1:
            return []
        gaps = _complement(_merge(self.blocking), -(2**62), 2**62)
        return [
            (start + before, end - duration - after) for start, end in gaps if end - start >= before + duration + after
        ]


class AvailabilityService:
    def __init__(self, store: Store, clock: Callable[[], int] = time.time_ns):
        self.store = store
        self.clock = clock

    def _subjects(self, tenant: str, resource_ids: list, labels: dict) -> list:
        if bool(resource_ids) == bool(labels):
            raise invalid("resource_ids", "give resource_ids or labels (exactly one of them)")
        try:
            if resource_ids:
                if len(resource_ids) > MAX_RESOURCES:
                    raise invalid(
                        "resource_ids", f"at most {MAX_RESOURCES} resources per call, got {len(resource_ids)}"
                    )
                ids = list(dict.fromkeys(validate.name("resource_ids", rid) for rid in resource_ids))
                stored = self.store.read_definitions(tenant, ids)
                return [Subject(rid, stored.get(rid)) for rid in ids]
            found = []
            for definition in self.store.list_definitions(tenant, "", labels, MAX_RESOURCES + 1):
                found.append(Subject(definition.resource.id, definition))
                if len(found) > MAX_RESOURCES:
                    raise invalid("labels", f"more than {MAX_RESOURCES} resources carry these labels; narrow them")
            return found
        except StorageUnavailable as error:
            raise unavailable() from error

    def _profiles(
        self, tenant: str, subjects: list, start: int, end: int, margin_before: int, margin_after: int, now: int
    ) -> list:
        reads = []
        for subject in subjects:
            lookback = subject.stored.max_buffer_before_ns if subject.stored is not None else 0
            if subject.shape.pool:
                lookback = subject.stored.longest_ns if subject.stored is not None else 0
            reads.append(
                TimelineRead(subject.resource_id, subject.shape, start - margin_before, end + margin_after, lookback)
            )
        try:
            timelines = self.store.timelines(tenant, reads, ITEM_BUDGET)
        except TooLarge:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"a resource holds more than {ITEM_BUDGET} reservations in this window: ask for a shorter window",
            ) from None
        except StorageUnavailable as error:
            raise unavailable() from error
        return [Profile(subject, timeline, now) for subject, timeline in zip(subjects, timelines)]

    @staticmethod
    def _window(start: int, end: int) -> None:
        validate.window("start", "end", start, end)
        if end - start > MAX_WINDOW_NS:
            raise invalid("end", f"a window spans at most {MAX_WINDOW_NS // DAY_NS} days")

    def availability(self, tenant: str, resource_ids: list, labels: dict, start: int, end: int, units: int) -> list:
        self._window(start, end)
        if units < 0:
            raise invalid("units", "must not be negative")
        units = units or 1
        subjects = self._subjects(tenant, resource_ids, labels)
        found = []
        for profile in self._profiles(tenant, subjects, start, end, 0, 0, self.clock()):
            steps = profile.free_units(start, end)
            free = _merge([(s, e) for s, e, available in steps if available >= units])
            found.append(
                FreeBusy(
                    profile.subject.resource_id, profile.subject.capacity, _complement(free, start, end), free, steps
                )
            )
        return found

    def find_slots(
        self,
        tenant: str,
        resource_ids: list,
        labels: dict,
        start: int,
        end: int,
        duration: int,
        units: int,
        limit: int,
        page_token: str,
    ) -> tuple:
        """(slots as (resource_id, start, end) in (start, resource) order, next page token)."""
        self._window(start, end)
        if duration <= 0:
            raise invalid("duration", "must be positive")
        if units < 0:
            raise invalid("units", "must not be negative")
        units = units or 1
        size = page_size_of(limit, "limit")
        digest = paging.query_digest(
            "slots", tenant, sorted(resource_ids), sorted(labels.items()), start, end, duration, units
        )
        after = paging.decode(page_token, digest, position=SLOT_POSITION) if page_token else ""
        resume = int(after.split("#", 1)[0]) + MIN_NS if after else start
        now = self.clock()
        subjects = self._subjects(tenant, resource_ids, labels)
        before = max((s.rules.buffer_before_ns for s in subjects if s.rules), default=0)
        after_pad = max((s.rules.buffer_after_ns for s in subjects if s.rules), default=0)
        profiles = self._profiles(tenant, subjects, start, end, before, after_pad, now)
        merged = heapq.merge(
            *(_slots_of(profile, max(start, resume), end, duration, units, now) for profile in profiles)
        )
        found = []
        for slot_start, resource_id in merged:
            position = f"{start_key_bound(slot_start)}#{resource_id}"
            if after and position <= after:
                continue
            if len(found) == size:
                last_resource, last_start, _ = found[-1]
                return found, paging.encode(f"{start_key_bound(last_start)}#{last_resource}", digest)
            found.append((resource_id, slot_start, slot_start + duration))
        return found, ""


def _slots_of(profile: Profile, start: int, end: int, duration: int, units: int, now: int):
    """(start, resource id) of every bookable start of one resource in [start, end - duration], in order:
    grid points inside the intervals where the claim fits, within notice and horizon."""
    subject = profile.subject
    resource = subject.rules
    if not subject.bookable:
        return
    try:
        rules.check_length(resource, subject.shape, duration, units, "duration", "units")
    except ServiceError:
        return  # this duration or these units never fit this resource
    stepped = resource is not None and resource.step_ns
    grid = Grid(resource.step_ns, resource.time_zone) if stepped else Grid(SEARCH_STEP_NS)
    earliest, latest = start, end - duration
    if resource is not None:
        if resource.min_notice_ns:
            earliest = max(earliest, now + NOTICE_MARGIN_NS + resource.min_notice_ns)
        if resource.max_advance_ns:
            latest = min(latest, now + resource.max_advance_ns)
    before, after = rules.padding(resource)
    for first, last in profile.feasible_starts(duration, units, before, after):
        for candidate in grid.points(max(first, earliest), min(last, latest)):
            if stepped and not grid.contains(candidate + duration):
                continue
            yield candidate, subject.resource_id
