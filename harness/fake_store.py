"""An in-memory Store (chalicelib.ports) with DynamoDB's all-or-nothing conditional writes.

For testing the rules in milliseconds: it applies a WritePlan only if every
condition the DynamoDB store would put on it holds, else raises StaleWrite
and changes nothing. `fail_next` makes the next commits fail in a chosen way.
"""

import dataclasses
import threading
import time

from chalicelib import dynamo, layout
from chalicelib.layout import Bucket, RememberedRequest
from chalicelib.ports import (
    LISTED_NEIGHBOURS,
    NEIGHBOUR_LIMIT,
    ReserveSnapshot,
    StaleWrite,
    Timeline,
    TooLarge,
)


class FakeStore:
    def __init__(self):
        self.lock = threading.RLock()
        self.definitions = {}  # (tenant, resource) -> StoredResource
        self.by_id = {}  # (tenant, reservation id) -> Booking
        self.guards = {}  # (tenant, resource, slot) -> {"ver": int, "busy": {id: guard entry}, "dense": bool}
        self.buckets = {}  # (tenant, resource, index) -> {"cap": int, "used": {cell: units}}
        self.requests = {}  # (tenant, request id) -> (RememberedRequest, expires_at_s)
        self.longest_seen = {}  # (tenant, user id or "") -> ns
        self.events_kept = {}  # (tenant, event key) -> ChangeEvent
        self.commits = 0
        self.failures = []  # exceptions the next commits raise (after applying, for "applied" ones)

    def fail_next(self, error: Exception, applied: bool = False) -> None:
        self.failures.append((error, applied))

    # ---- reads -------------------------------------------------------------------------------

    def read_definition(self, tenant, resource_id):
        with self.lock:
            return self.definitions.get((tenant, resource_id))

    def read_definitions(self, tenant, resource_ids):
        with self.lock:
            return {rid: self.definitions[(tenant, rid)] for rid in resource_ids if (tenant, rid) in self.definitions}

    def list_definitions(self, tenant, after_id, labels, chunk):
        with self.lock:
            found = sorted(
                (
                    stored
                    for (owner, rid), stored in self.definitions.items()
                    if owner == tenant and rid > after_id and stored.live and stored.resource.labelled(labels)
                ),
                key=lambda stored: stored.resource.id,
            )
        return iter(found)

    def _resource_bookings(self, tenant, resource_id):
        return sorted(
            (b for (owner, _), b in self.by_id.items() if owner == tenant and b.reservation.resource_id == resource_id),
            key=lambda b: layout.start_key(b.reservation.start_ns, b.reservation.id),
        )

    def read_for_reserve(self, read):
        with self.lock:
            shape = read.shape
            guards, buckets, neighbours = {}, {}, ()
            if shape.pool:
                for cell, _ in shape.cells(read.padded_start_ns, read.padded_end_ns):
                    index = shape.bucket_of(cell)
                    buckets[index] = self._bucket(read.tenant, read.resource_id, index)
            else:
                guards = {
                    index: self._guard(read.tenant, read.resource_id, index)
                    for index in shape.slots(read.padded_start_ns, read.padded_end_ns)
                }
                if any(guard.dense for guard in guards.values()):
                    neighbours = tuple(
                        b
                        for b in self._resource_bookings(read.tenant, read.resource_id)
                        if b.overlaps(read.padded_start_ns, read.padded_end_ns)
                    )
                else:  # as the DynamoDB store: what the guards list
                    neighbours = dynamo._listed(guards.values(), read.padded_start_ns, read.padded_end_ns)
            remembered = None
            if read.request_id and (read.tenant, read.request_id) in self.requests:
                record, expires_at = self.requests[(read.tenant, read.request_id)]
                remembered = record if expires_at > time.time() else None
            more = len(neighbours) >= NEIGHBOUR_LIMIT
            return ReserveSnapshot(
                self.definitions.get((read.tenant, read.resource_id)),
                guards,
                buckets,
                neighbours[:LISTED_NEIGHBOURS] if more else neighbours,
                more,
                remembered,
                self.longest_seen.get((read.tenant, read.user_id), 0),
                self.longest_seen.get((read.tenant, ""), 0),
            )

    def _guard(self, tenant, resource_id, index):
        stored = self.guards.get((tenant, resource_id, index))
        if stored is None:
            return layout.guard_from(resource_id, index, None)
        return layout.guard_from(
            resource_id,
            index,
            {"ver": {"N": str(stored["ver"])}, "busy": {"M": stored["busy"]}, "dense": {"BOOL": stored["dense"]}},
        )

    def _bucket(self, tenant, resource_id, index):
        stored = self.buckets.get((tenant, resource_id, index))
        if stored is None:
            return Bucket(index)
        return Bucket(index, stored["cap"], tuple(sorted(stored["used"].items())), True)

    def get(self, tenant, reservation_id):
        with self.lock:
            return self.by_id.get((tenant, reservation_id))

    def _in_range(self, bookings, low_key, high_key, descending):
        chosen = [
            b for b in bookings if low_key <= layout.start_key(b.reservation.start_ns, b.reservation.id) <= high_key
        ]
        return iter(
            sorted(chosen, key=lambda b: layout.start_key(b.reservation.start_ns, b.reservation.id), reverse=descending)
        )

    def bookings_of_resource(self, tenant, resource_id):
        with self.lock:
            return self._resource_bookings(tenant, resource_id)

    def bookings(self, tenant, resource_id, low_key, high_key, descending, chunk):
        with self.lock:
            return self._in_range(self._resource_bookings(tenant, resource_id), low_key, high_key, descending)

    def bookings_of_user(self, tenant, user_id, low_key, high_key, descending, chunk):
        with self.lock:
            return self._in_range(
                [b for (owner, _), b in self.by_id.items() if owner == tenant and b.reservation.user_id == user_id],
                low_key,
                high_key,
                descending,
            )

    def bookings_of_tenant(self, tenant, low_key, high_key, descending, chunk):
        with self.lock:
            return self._in_range(
                [b for (owner, _), b in self.by_id.items() if owner == tenant], low_key, high_key, descending
            )

    def read_buckets(self, tenant, resource_id, shape, first, last):
        with self.lock:
            return [
                self._bucket(tenant, resource_id, index)
                for (owner, rid, index) in sorted(self.buckets)
                if owner == tenant and rid == resource_id and first <= index <= last
            ]

    def longest(self, tenant, user_id):
        with self.lock:
            return self.longest_seen.get((tenant, user_id), 0)

    def events(self, scope, after_key, until_key, chunk):
        with self.lock:
            chosen = []
            for (tenant, event_key), event in sorted(self.events_kept.items()):
                if tenant != scope.tenant or not after_key < event_key <= until_key:
                    continue
                if scope.resource_id and scope.resource_id not in layout.event_partitions(event):
                    continue
                if scope.user_id and (event.reservation is None or event.reservation.user_id != scope.user_id):
                    continue
                chosen.append(event)
        return iter(chosen)

    def expired_holds(self, now_ns, chunk):
        with self.lock:
            found = [(tenant, b) for (tenant, _), b in self.by_id.items() if b.reservation.expired(now_ns)]
        return iter(sorted(found, key=lambda pair: pair[1].reservation.expires_at_ns))

    def timelines(self, tenant, reads, item_budget):
        found = []
        with self.lock:
            for read in reads:
                bookings = tuple(
                    b
                    for b in self._resource_bookings(tenant, read.resource_id)
                    if b.overlaps(read.start_ns, read.end_ns)
                )
                if len(bookings) > item_budget:
                    raise TooLarge()
                buckets = ()
                if read.shape.pool:
                    first, last = read.shape.bucket_of(read.start_ns), read.shape.bucket_of(read.end_ns - 1)
                    buckets = tuple(self.read_buckets(tenant, read.resource_id, read.shape, first, last))
                found.append(Timeline(read, bookings, buckets))
        return found

    # ---- writes --------------------------------------------------------------------------------

    def commit(self, plan):
        if len(dynamo._actions(plan)) > dynamo.TRANSACTION_LIMIT:
            raise TooLarge()
        with self.lock:
            failure = self.failures.pop(0) if self.failures else None
            if failure is not None and not failure[1]:
                raise failure[0]
            kinds = self._failed_conditions(plan)
            if kinds:
                if failure is not None:
                    raise failure[0]
                raise StaleWrite(frozenset(kinds))
            self._apply(plan)
            self.commits += 1
            if failure is not None:
                raise failure[0]

    def _failed_conditions(self, plan):
        tenant, kinds = plan.tenant, set()
        for booking in plan.create:
            if (tenant, booking.reservation.id) in self.by_id:
                kinds.add("booking")
        for before, _ in plan.change:
            current = self.by_id.get((tenant, before.reservation.id))
            if current is None or current.rev != before.rev:
                kinds.add("booking")
        for booking in plan.remove:
            current = self.by_id.get((tenant, booking.reservation.id))
            if current is None or current.rev != booking.rev:
                kinds.add("booking")
        for bump in plan.guards:
            if self._guard(tenant, bump.resource_id, bump.guard.index).version != bump.guard.version:
                kinds.add("guard")
        for change in plan.buckets:
            stored = self.buckets.get((tenant, change.resource_id, change.index))
            if change.create:
                if stored is not None:
                    kinds.add("bucket")
                continue
            if stored is None:
                kinds.add("bucket")
                continue
            rising = [(cell, delta) for cell, delta in change.deltas if delta > 0]
            if rising and (
                stored["cap"] != change.cap
                or any(stored["used"].get(cell, 0) + delta > change.limit for cell, delta in rising)
            ):
                kinds.add("bucket")
        for recap in plan.recaps:
            stored = self.buckets.get((tenant, recap.resource_id, recap.index))
            grid = recap.shape.grid
            live = (
                [units for cell, units in stored["used"].items() if grid.next_point(cell + 1) > recap.from_ns]
                if stored is not None
                else []
            )
            if (
                stored is None
                or stored["cap"] != recap.old_cap
                or (recap.new_cap < recap.old_cap and any(units > recap.new_cap for units in live))
            ):
                kinds.add("bucket")
        for write in plan.definitions:
            current = self.definitions.get((tenant, write.stored.resource.id))
            if (current.rev if current is not None else 0) != write.expected_rev:
                kinds.add("definition")
        for check in plan.checks:
            current = self.definitions.get((tenant, check.resource_id))
            if (
                current is None
                or current.crev != check.crev
                or (check.longest_ns and not current.longest_ns < check.longest_ns)
            ):
                kinds.add("definition")
        if plan.request is not None:
            existing = self.requests.get((tenant, plan.request.request_id))
            if existing is not None and existing[1] >= int(time.time()):
                kinds.add("request")
        for raise_ in plan.longest:
            if self.longest_seen.get((tenant, raise_.user_id), 0) >= raise_.duration_ns:
                kinds.add("user")
        return kinds

    def _apply_guard(self, tenant, resource_id, index, change):
        """What chalicelib.dynamo._guard_actions asks DynamoDB to do to one guard."""
        bump, sets = change["bump"], dict(change["set"])
        if bump is not None and bump.version == 0:
            dense = len(sets) > layout.GUARD_LISTED
            self.guards[(tenant, resource_id, index)] = {"ver": 1, "busy": {} if dense else sets, "dense": dense}
            return
        stored = self.guards.setdefault((tenant, resource_id, index), {"ver": 1, "busy": {}, "dense": False})
        if bump is not None:
            stored["ver"] += 1
            listed = {entry.reservation.id for entry in bump.entries}
            if bump.dense or len(listed | set(sets)) > layout.GUARD_LISTED:
                stored["dense"], stored["busy"] = True, {}
                return
        stored["busy"].update(sets)
        for reservation_id in change["remove"] - set(change["set"]):
            stored["busy"].pop(reservation_id, None)

    def _apply(self, plan):
        tenant = plan.tenant
        for booking in plan.remove:
            del self.by_id[(tenant, booking.reservation.id)]
        for booking in plan.create:
            self.by_id[(tenant, booking.reservation.id)] = booking
        for _, after in plan.change:
            self.by_id[(tenant, after.reservation.id)] = after
        for (resource_id, index), change in dynamo._guard_changes(plan).items():
            self._apply_guard(tenant, resource_id, index, change)
        for change in plan.buckets:
            key = (tenant, change.resource_id, change.index)
            stored = self.buckets.setdefault(key, {"cap": change.cap, "used": {}})
            for cell, delta in change.deltas:
                stored["used"][cell] = stored["used"].get(cell, 0) + delta
        for recap in plan.recaps:
            self.buckets[(tenant, recap.resource_id, recap.index)]["cap"] = recap.new_cap
        for write in plan.definitions:
            self.definitions[(tenant, write.stored.resource.id)] = write.stored
        for check in plan.checks:
            if check.longest_ns:
                key = (tenant, check.resource_id)
                self.definitions[key] = dataclasses.replace(self.definitions[key], longest_ns=check.longest_ns)
        if plan.request is not None:
            record = plan.request
            self.requests[(tenant, record.request_id)] = (
                RememberedRequest(record.fingerprint, record.reservation),
                record.expires_at_s,
            )
        for raise_ in plan.longest:
            self.longest_seen[(tenant, raise_.user_id)] = raise_.duration_ns
        for event in plan.events:
            self.events_kept[(tenant, layout.event_key_of(event.at_ns, event.event_id))] = event
