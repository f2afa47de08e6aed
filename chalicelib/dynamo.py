"""The Store on DynamoDB: round trips and conditional transactions over the items of chalicelib.layout.

A WritePlan becomes one TransactWriteItems whose every action carries the
condition the rules decided on (guard versions, reservation revisions, bucket
capacities, definition revisions): DynamoDB applies all of it or nothing.
Reads that decide a write are strongly consistent; the few reads one call
needs at once are issued concurrently.
"""

import concurrent.futures
import os
import time
from collections.abc import Iterator

from . import layout
from .layout import Shape, StoredResource
from .model import Booking, ChangeEvent
from .ports import (
    LISTED_NEIGHBOURS,
    NEIGHBOUR_LIMIT,
    OutcomeUnknown,
    ReserveRead,
    ReserveSnapshot,
    Scope,
    StaleWrite,
    StorageUnavailable,
    Timeline,
    TimelineRead,
    TooLarge,
    WritePlan,
)

BATCH_GET_LIMIT = 100
# The first page of a newest-first read of an exclusive resource's bookings (later pages are sized
# from what it read): a reserve's window is short, a day of availability often holds a dozen. A
# Query bills the summed size of its items, so a page of 16 small bookings costs what two of 4 and
# 12 cost, one round trip sooner.
NEIGHBOURS_FIRST_PAGE = 4
TIMELINE_FIRST_PAGE = 16
TRANSACTION_LIMIT = 100
# Calls of one round run at once: one pool for them, one for calls they start themselves; sized so
# that availability's 100 resources (chalicelib.availability.MAX_RESOURCES) take one round, not four.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=100, thread_name_prefix="dynamodb")
_INNER = concurrent.futures.ThreadPoolExecutor(max_workers=100, thread_name_prefix="dynamodb-inner")


class _Reach:
    """Sizes the next page of a newest-first read that must reach back to `floor_ns`: as many items
    as the density read so far predicts for the rest of the way (DynamoDB bills the whole page, so a
    fixed large page would read history the window does not hold), plus a few."""

    MARGIN = 2
    MAX_PAGE = 1000

    def __init__(self, top_ns: int, floor_ns: int):
        self.top_ns = top_ns
        self.floor_ns = floor_ns
        self.read = 0
        self.newest_start_ns = self.oldest_start_ns = top_ns

    def passed(self, start_ns: int) -> None:
        self.read += 1
        if self.read == 1:
            self.newest_start_ns = start_ns
        self.oldest_start_ns = min(self.oldest_start_ns, start_ns)

    def next_page(self) -> int:
        remaining = max(self.oldest_start_ns - self.floor_ns, 0)
        if self.read >= 2 and self.newest_start_ns > self.oldest_start_ns:  # the gaps between the items read
            expected = -(-(self.read - 1) * remaining // (self.newest_start_ns - self.oldest_start_ns))
        else:
            expected = -(-self.read * remaining // max(self.top_ns - self.oldest_start_ns, 1))
        return min(expected + self.MARGIN, self.MAX_PAGE)


class DynamoStore:
    def __init__(self, table_name: str, client):
        self.table_name = table_name
        self.client = client

    # ---- reads ---------------------------------------------------------------------------------

    def read_definition(self, tenant: str, resource_id: str) -> StoredResource | None:
        return layout.definition_from(self._get(layout.definition_key(tenant, resource_id)))

    def read_definitions(self, tenant: str, resource_ids: list) -> dict:
        """Resource id -> StoredResource (absent ones left out), one strongly consistent batch."""
        items = self._batch_get([layout.definition_key(tenant, resource_id) for resource_id in resource_ids])
        found = {}
        for resource_id in resource_ids:
            stored = layout.definition_from(items.get(layout.pair(layout.definition_key(tenant, resource_id))))
            if stored is not None:
                found[resource_id] = stored
        return found

    def list_definitions(self, tenant: str, after_id: str, labels: dict, chunk: int) -> Iterator[StoredResource]:
        """Defined resources of a tenant in id order after `after_id`, carrying every label of `labels`."""
        arguments = {
            "TableName": self.table_name,
            "IndexName": layout.RESOURCES,
            "Limit": chunk,
            "KeyConditionExpression": "dk = :tenant AND did > :after",
            # DynamoDB refuses an empty string as a key value: the first page starts after "\x00"
            "ExpressionAttributeValues": {":tenant": {"S": tenant}, ":after": {"S": after_id or "\x00"}},
        }
        if labels:
            names, conditions = {"#labels": "labels"}, []
            for number, (name, value) in enumerate(sorted(labels.items())):
                names[f"#l{number}"] = name
                arguments["ExpressionAttributeValues"][f":l{number}"] = {"S": value}
                conditions.append(f"#labels.#l{number} = :l{number}")
            arguments["FilterExpression"] = " AND ".join(conditions)
            arguments["ExpressionAttributeNames"] = names
        for item in self._items(self.client.query, arguments):
            stored = layout.definition_from(item)
            if stored.live:
                yield stored

    def read_for_reserve(self, read: ReserveRead) -> ReserveSnapshot:
        """The definition, guards or buckets, request id and longest reservations (one batch), then,
        for an exclusive resource, the bookings around the window (one query).

        The bookings are read after the guards, never at the same time: a booking committed between the
        two reads then shows up in the second, or its guard bump makes the write conditioned on the
        version read fail. Read the other way round, a snapshot could hold the new guard version without
        the booking that came with it, and a write conditioned on it would double-book.
        """
        shape = read.shape
        keys = [
            layout.definition_key(read.tenant, read.resource_id),
            layout.longest_key(read.tenant, read.user_id),
            layout.longest_key(read.tenant, ""),
        ]
        if read.request_id:
            keys.append(layout.request_key(read.tenant, read.request_id))
        if shape.pool:
            cells = shape.cells(read.padded_start_ns, read.padded_end_ns)
            indexes = sorted({shape.bucket_of(cell) for cell, _ in cells})
            keys += [layout.bucket_key(read.tenant, read.resource_id, index) for index in indexes]
        else:
            indexes = list(shape.slots(read.padded_start_ns, read.padded_end_ns))
            keys += [layout.guard_key(read.tenant, read.resource_id, index) for index in indexes]
        items = self._batch_get(keys)
        guards = {
            index: layout.guard_from(
                read.resource_id, index, items.get(layout.pair(layout.guard_key(read.tenant, read.resource_id, index)))
            )
            for index in ([] if shape.pool else indexes)
        }
        if shape.pool:
            found, more = (), False
        elif any(guard.dense for guard in guards.values()):
            found, more = self._neighbours(read)  # a busy slot: its guard lists no more, read the bookings
        else:
            found, more = _listed(guards.values(), read.padded_start_ns, read.padded_end_ns), False

        def item(key):
            return items.get(layout.pair(key))

        remembered = None
        if read.request_id:
            remembered = layout.remembered_from(
                item(layout.request_key(read.tenant, read.request_id)), int(time.time())
            )
        buckets = {}
        if shape.pool:
            buckets = {
                index: layout.bucket_from(shape, index, item(layout.bucket_key(read.tenant, read.resource_id, index)))
                for index in indexes
            }
        return ReserveSnapshot(
            definition=layout.definition_from(item(layout.definition_key(read.tenant, read.resource_id))),
            guards=guards,
            buckets=buckets,
            neighbours=found,
            more_neighbours=more,
            remembered=remembered,
            user_longest_ns=layout.longest_of(item(layout.longest_key(read.tenant, read.user_id))),
            tenant_longest_ns=layout.longest_of(item(layout.longest_key(read.tenant, ""))),
        )

    def _neighbours(self, read: ReserveRead) -> tuple:
        return self._overlapping(
            read.tenant, read.resource_id, read.padded_start_ns, read.padded_end_ns, read.lookback_ns, NEIGHBOUR_LIMIT
        )

    def _overlapping(
        self,
        tenant: str,
        resource_id: str,
        start_ns: int,
        end_ns: int,
        lookback_ns: int,
        limit: int,
        first_page: int = NEIGHBOURS_FIRST_PAGE,
    ) -> tuple:
        """(bookings of an exclusive resource whose padded window overlaps [start, end), more?): read newest
        start first, from `lookback_ns` after the end, until one ends before the window.

        Stored exclusive bookings never overlap each other (padded), so their order by start is also
        their order by end: the first one that ends before the window ends the search.
        """
        arguments = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "ScanIndexForward": False,
            "Limit": first_page,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": layout.resource_pk(tenant, resource_id)},
                ":low": {"S": layout.BOOKING_PREFIX},
                ":high": {"S": layout.booking_sk_bound(end_ns + lookback_ns)},
            },
        }
        found = []
        reach = _Reach(end_ns + lookback_ns, start_ns)
        for item in self._items(self.client.query, arguments, later_limit=reach.next_page):
            booking = layout.booking_from(item)
            reach.passed(booking.reservation.start_ns)
            if booking.padded_end_ns <= start_ns:
                break
            if booking.overlaps(start_ns, end_ns):
                found.append(booking)
                if len(found) >= limit:
                    return self._first_overlapping(tenant, resource_id, start_ns, end_ns), True
        return tuple(reversed(found)), False

    def _first_overlapping(self, tenant: str, resource_id: str, start_ns: int, end_ns: int) -> tuple:
        """The first LISTED_NEIGHBOURS bookings overlapping [start, end), in start order (too many to read all):
        the one covering `start` (the last to start before it), then those starting from it on."""
        before = next(
            iter(
                self.bookings(
                    tenant,
                    resource_id,
                    layout.start_key_bound(layout.MIN_NS),
                    layout.start_key_bound(start_ns),
                    True,
                    1,
                )
            ),
            None,
        )
        first = [before] if before is not None and before.overlaps(start_ns, end_ns) else []
        for booking in self.bookings(
            tenant,
            resource_id,
            layout.start_key_bound(start_ns),
            layout.start_key_bound(end_ns),
            False,
            LISTED_NEIGHBOURS,
        ):
            if len(first) >= LISTED_NEIGHBOURS:
                break
            if booking.overlaps(start_ns, end_ns):
                first.append(booking)
        return tuple(first)

    def timelines(self, tenant: str, reads: list, item_budget: int) -> list:
        """The Timeline of each read, all read at once (one round of concurrent calls).
        Raises TooLarge when a resource holds more than `item_budget` bookings in its window."""
        return list(_POOL.map(lambda read: self._timeline(tenant, read, item_budget), reads))

    def _timeline(self, tenant: str, read: TimelineRead, item_budget: int) -> Timeline:
        shape = read.shape
        if not shape.pool:
            found, more = self._overlapping(
                tenant, read.resource_id, read.start_ns, read.end_ns, read.lookback_ns, item_budget, TIMELINE_FIRST_PAGE
            )
            if more:
                raise TooLarge()
            return Timeline(read, found, ())
        buckets = _INNER.submit(
            self.read_buckets,
            tenant,
            read.resource_id,
            shape,
            shape.bucket_of(read.start_ns),
            shape.bucket_of(read.end_ns - 1),
        )
        found = []
        for booking in self.bookings(
            tenant,
            read.resource_id,
            layout.start_key_bound(read.start_ns - read.lookback_ns),
            layout.start_key_bound(read.end_ns),
            False,
            100,
        ):
            if booking.overlaps(read.start_ns, read.end_ns):
                found.append(booking)
                if len(found) > item_budget:
                    raise TooLarge()
        return Timeline(read, tuple(found), tuple(buckets.result()))

    def get(self, tenant: str, reservation_id: str) -> Booking | None:
        item = self._get(layout.reservation_key(tenant, reservation_id))
        return layout.booking_from(item) if item is not None else None

    def bookings(
        self, tenant: str, resource_id: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]:
        """A resource's bookings with low_key <= start_key <= high_key, in start order (strongly consistent)."""
        arguments = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "ScanIndexForward": not descending,
            "Limit": chunk,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": layout.resource_pk(tenant, resource_id)},
                ":low": {"S": layout.BOOKING_PREFIX + low_key},
                ":high": {"S": layout.BOOKING_PREFIX + high_key},
            },
        }
        return (
            layout.booking_from(item) for item in self._items(self.client.query, arguments, later_limit=max(chunk, 100))
        )

    def bookings_of_user(
        self, tenant: str, user_id: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]:
        return self._in_index(
            layout.BY_USER, "uk", layout.user_index_key(tenant, user_id), low_key, high_key, descending, chunk
        )

    def bookings_of_tenant(
        self, tenant: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]:
        return self._in_index(layout.BY_TENANT, "tk", tenant, low_key, high_key, descending, chunk)

    def _in_index(
        self, index: str, attribute: str, partition: str, low_key: str, high_key: str, descending: bool, chunk: int
    ) -> Iterator[Booking]:
        arguments = {
            "TableName": self.table_name,
            "IndexName": index,
            "Limit": chunk,
            "ScanIndexForward": not descending,
            "KeyConditionExpression": f"{attribute} = :partition AND start_key BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":partition": {"S": partition},
                ":low": {"S": low_key},
                ":high": {"S": high_key},
            },
        }
        # the first call reads what a page needs; a selective filter reads on in bigger calls
        return (
            layout.booking_from(item) for item in self._items(self.client.query, arguments, later_limit=max(chunk, 100))
        )

    def read_buckets(self, tenant: str, resource_id: str, shape: Shape, first: int, last: int) -> list:
        """A pool's buckets first..last (those that exist), strongly consistent."""
        arguments = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": layout.resource_pk(tenant, resource_id)},
                ":low": {"S": layout.bucket_sk(first)},
                ":high": {"S": layout.bucket_sk(last)},
            },
        }
        return [
            layout.bucket_from(shape, layout.bucket_index_of(item["sk"]["S"]), item)
            for item in self._items(self.client.query, arguments)
        ]

    def longest(self, tenant: str, user_id: str) -> int:
        return layout.longest_of(self._get(layout.longest_key(tenant, user_id)))

    def events(self, scope: Scope, after_key: str, until_key: str, chunk: int) -> Iterator[ChangeEvent]:
        """Events of a scope with after_key < event key <= until_key, in order."""
        values = {":after": {"S": after_key}, ":until": {"S": until_key}}
        if scope.resource_id:
            values[":pk"] = {"S": layout.events_pk(scope.tenant, scope.resource_id)}
            arguments = {"ConsistentRead": True, "KeyConditionExpression": "pk = :pk AND sk BETWEEN :after AND :until"}
        elif scope.user_id:
            values[":pk"] = {"S": layout.user_index_key(scope.tenant, scope.user_id)}
            arguments = {
                "IndexName": layout.EVENTS_BY_USER,
                "KeyConditionExpression": "euk = :pk AND ek BETWEEN :after AND :until",
            }
        else:
            values[":pk"] = {"S": scope.tenant}
            arguments = {
                "IndexName": layout.EVENTS_BY_TENANT,
                "KeyConditionExpression": "etk = :pk AND ek BETWEEN :after AND :until",
            }
        arguments.update(TableName=self.table_name, Limit=chunk, ExpressionAttributeValues=values)
        for item in self._items(self.client.query, arguments):
            if item["ek"]["S"] != after_key:  # BETWEEN is inclusive
                yield layout.event_from(item)

    def expired_holds(self, now_ns: int, chunk: int) -> Iterator[tuple]:
        """(tenant, Booking) of holds whose expiry has passed, every tenant, oldest first per shard."""
        for shard in range(layout.HOLD_SHARDS):
            arguments = {
                "TableName": self.table_name,
                "IndexName": layout.HOLDS,
                "Limit": chunk,
                "KeyConditionExpression": "hk = :shard AND hexp <= :now",
                "ExpressionAttributeValues": {":shard": {"S": f"H#{shard}"}, ":now": {"N": str(now_ns)}},
            }
            for entry in self._items(self.client.query, arguments):
                item = self._get(layout.key(entry["pk"]["S"], entry["sk"]["S"]))
                if item is not None:
                    yield layout.tenant_of(entry["pk"]["S"]), layout.booking_from(item)

    def _items(self, operation, arguments: dict, later_limit=0):
        """Every item of a Query, read one page (round trip) at a time, as they are consumed; pages after
        the first read `later_limit` items (a caller that reads on was selective), or as many as
        `later_limit()` says once the page before was consumed."""
        while True:
            answer = self._read(operation, arguments)
            yield from answer["Items"]
            if "LastEvaluatedKey" not in answer:
                return
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
            if later_limit:
                arguments["Limit"] = later_limit() if callable(later_limit) else later_limit

    @staticmethod
    def _read(operation, arguments: dict) -> dict:
        try:
            return operation(**arguments)
        except Exception as error:  # botocore errors after its own retries
            raise StorageUnavailable() from error

    def _get(self, key: dict) -> dict | None:
        return self._read(self.client.get_item, {"TableName": self.table_name, "Key": key, "ConsistentRead": True}).get(
            "Item"
        )

    def _batch_get(self, keys: list) -> dict:
        found = {}
        for first in range(0, len(keys), BATCH_GET_LIMIT):
            pending = {self.table_name: {"Keys": keys[first : first + BATCH_GET_LIMIT], "ConsistentRead": True}}
            for attempt in range(10):
                answer = self._read(self.client.batch_get_item, {"RequestItems": pending})
                for item in answer["Responses"].get(self.table_name, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.01 * 2**attempt)
            else:
                raise StorageUnavailable()
        return found

    # ---- writes ------------------------------------------------------------------------------------

    def commit(self, plan: WritePlan) -> None:
        """Apply every write of the plan in one transaction, each only if what it was decided on holds."""
        actions = _actions(plan)
        if len(actions) > TRANSACTION_LIMIT:
            raise TooLarge()
        for _, action in actions:
            next(iter(action.values()))["TableName"] = self.table_name
        try:
            self.client.transact_write_items(TransactItems=[action for _, action in actions])
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]
            kinds = {kind for (kind, _), reason in zip(actions, reasons) if reason == "ConditionalCheckFailed"}
            if any(reason == "TransactionConflict" for reason in reasons):
                kinds.add("conflict")
            if any(reason == "ValidationError" for reason in reasons):
                raise TooLarge() from error
            raise StaleWrite(frozenset(kinds)) from error
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException" and "size" in error.response.get(
                "Error", {}
            ).get("Message", ""):
                raise TooLarge() from error
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                raise
            raise OutcomeUnknown() from error
        except Exception as error:
            raise OutcomeUnknown() from error


def _put(item: dict, condition: str = "", values: dict | None = None) -> dict:
    action = {"Item": item}
    if condition:
        action["ConditionExpression"] = condition
    if values:
        action["ExpressionAttributeValues"] = values
    return {"Put": action}


def _rev(booking: Booking) -> dict:
    return {":rev": {"N": str(booking.rev)}}


def _actions(plan: WritePlan) -> list:
    """(kind, TransactWriteItems action) for every write of the plan."""
    tenant = plan.tenant
    actions = []
    for booking in plan.create:
        actions.append(("booking", _put(layout.reservation_item(tenant, booking), "attribute_not_exists(pk)")))
        actions.append(("booking", _put(layout.booking_item(tenant, booking), "attribute_not_exists(pk)")))
    for before, after in plan.change:
        actions.append(("booking", _put(layout.reservation_item(tenant, after), "rev = :rev", _rev(before))))
        old_key = layout.booking_key(tenant, before.reservation)
        if old_key == layout.booking_key(tenant, after.reservation):
            actions.append(("booking", _put(layout.booking_item(tenant, after), "rev = :rev", _rev(before))))
        else:
            actions.append(
                (
                    "booking",
                    {
                        "Delete": {
                            "Key": old_key,
                            "ConditionExpression": "rev = :rev",
                            "ExpressionAttributeValues": _rev(before),
                        }
                    },
                )
            )
            actions.append(("booking", _put(layout.booking_item(tenant, after), "attribute_not_exists(pk)")))
    for booking in plan.remove:
        for key in (
            layout.reservation_key(tenant, booking.reservation.id),
            layout.booking_key(tenant, booking.reservation),
        ):
            actions.append(
                (
                    "booking",
                    {
                        "Delete": {
                            "Key": key,
                            "ConditionExpression": "rev = :rev",
                            "ExpressionAttributeValues": _rev(booking),
                        }
                    },
                )
            )
    actions += [("guard", action) for action in _guard_actions(plan)]
    actions += [("bucket", _bucket_action(tenant, change)) for change in plan.buckets]
    actions += [("bucket", _recap_action(tenant, recap)) for recap in plan.recaps]
    for write in plan.definitions:
        item = layout.definition_item(tenant, write.stored)
        if write.expected_rev:
            actions.append(("definition", _put(item, "rev = :rev", {":rev": {"N": str(write.expected_rev)}})))
        else:
            actions.append(("definition", _put(item, "attribute_not_exists(pk)")))
    for check in plan.checks:
        key = layout.definition_key(tenant, check.resource_id)
        values = {":crev": {"N": str(check.crev)}}
        if check.longest_ns:
            values[":longest"] = {"N": str(check.longest_ns)}
            actions.append(
                (
                    "definition",
                    {
                        "Update": {
                            "Key": key,
                            "UpdateExpression": "SET longest = :longest",
                            "ConditionExpression": "crev = :crev AND longest < :longest",
                            "ExpressionAttributeValues": values,
                        }
                    },
                )
            )
        else:
            actions.append(
                (
                    "definition",
                    {
                        "ConditionCheck": {
                            "Key": key,
                            "ConditionExpression": "crev = :crev",
                            "ExpressionAttributeValues": values,
                        }
                    },
                )
            )
    if plan.request is not None:
        record = plan.request
        actions.append(
            (
                "request",
                _put(
                    layout.request_item(
                        tenant, record.request_id, record.fingerprint, record.reservation, record.expires_at_s
                    ),
                    "attribute_not_exists(pk) OR expires_at < :now",
                    {":now": {"N": str(int(time.time()))}},
                ),
            )
        )
    for raise_ in plan.longest:
        actions.append(
            (
                "user",
                {
                    "Update": {
                        "Key": layout.longest_key(tenant, raise_.user_id),
                        "UpdateExpression": "SET longest = :duration",
                        "ConditionExpression": "attribute_not_exists(longest) OR longest < :duration",
                        "ExpressionAttributeValues": {":duration": {"N": str(raise_.duration_ns)}},
                    }
                },
            )
        )
    for event in plan.events:
        actions += [
            ("event", _put(layout.event_item(tenant, event, partition), "attribute_not_exists(pk)"))
            for partition in layout.event_partitions(event)
        ]
    return actions


def _listed(guards, start_ns: int, end_ns: int) -> tuple:
    """The bookings that sparse guards list and that overlap [start, end), in start order, once each."""
    found = {
        entry.reservation.id: entry for guard in guards for entry in guard.entries if entry.overlaps(start_ns, end_ns)
    }
    return tuple(sorted(found.values(), key=lambda b: (b.reservation.start_ns, b.reservation.id)))


def _guard_changes(plan: WritePlan) -> dict:
    """(resource, slot) -> {"bump": Guard or None, "set": {id: entry}, "remove": {ids}}: what every guard
    the plan touches must become so that it keeps listing exactly the bookings of its slot."""
    changes = {}

    def change(resource_id: str, index: int) -> dict:
        return changes.setdefault((resource_id, index), {"bump": None, "set": {}, "remove": set()})

    def slots(booking) -> set:
        return set() if booking.pooled else {(booking.reservation.resource_id, i) for i in layout.slots_of(booking)}

    for bump in plan.guards:
        change(bump.resource_id, bump.guard.index)["bump"] = bump.guard
    for booking in plan.create:
        for key in slots(booking):
            change(*key)["set"][booking.reservation.id] = layout.guard_entry(booking)
    for before, after in plan.change:
        old, new = slots(before), slots(after)
        for key in old - new:
            change(*key)["remove"].add(before.reservation.id)
        refreshed = layout.guard_entry(before) != layout.guard_entry(after)
        for key in new:
            if key not in old or refreshed or changes.get(key, {}).get("bump") is not None:
                change(*key)["set"][after.reservation.id] = layout.guard_entry(after)
    for booking in plan.remove:
        for key in slots(booking):
            change(*key)["remove"].add(booking.reservation.id)
    for resource_id, index, reservation_id in plan.stale_entries:
        change(resource_id, index)["remove"].add(reservation_id)
    return changes


def _guard_actions(plan: WritePlan) -> list:
    """One Update per guard: a bump conditioned on the version read, its list of bookings kept true
    (or `dense` once it would list more than GUARD_LISTED), removals of bookings that left its slot."""
    actions = []
    for (resource_id, index), change in sorted(_guard_changes(plan).items()):
        key = layout.guard_key(plan.tenant, resource_id, index)
        bump, sets = change["bump"], change["set"]
        removes = sorted(change["remove"] - set(sets))
        if bump is not None and bump.version == 0:
            dense = len(sets) > layout.GUARD_LISTED
            actions.append(
                {
                    "Update": {
                        "Key": key,
                        "UpdateExpression": "SET ver = :one, busy = :busy, dense = :dense",
                        "ConditionExpression": "attribute_not_exists(ver)",
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":dense": {"BOOL": dense},
                            ":busy": {"M": {} if dense else sets},
                        },
                    }
                }
            )
            continue
        names, values, assignments, conditions = {}, {}, [], []
        if bump is not None:
            conditions.append("ver = :read")
            values[":read"], values[":next"] = {"N": str(bump.version)}, {"N": str(bump.version + 1)}
            assignments.append("ver = :next")
            listed = {entry.reservation.id for entry in bump.entries}
            if bump.dense or len(listed | set(sets)) > layout.GUARD_LISTED:
                values[":true"], values[":empty"] = {"BOOL": True}, {"M": {}}
                assignments += ["dense = :true", "busy = :empty"]  # a dense guard lists nothing: readers query
                sets, removes = {}, []
        for number, (reservation_id, entry) in enumerate(sorted(sets.items())):
            names[f"#s{number}"], values[f":s{number}"] = reservation_id, entry
            assignments.append(f"busy.#s{number} = :s{number}")
        for number, reservation_id in enumerate(removes):
            names[f"#r{number}"] = reservation_id
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(assignments) if assignments else "",
                "REMOVE " + ", ".join(f"busy.#r{number}" for number in range(len(removes))) if removes else "",
            )
            if part
        )
        if not expression:
            continue
        update = {"Key": key, "UpdateExpression": expression}
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
        if names:
            update["ExpressionAttributeNames"] = names
        if values:
            update["ExpressionAttributeValues"] = values
        actions.append({"Update": update})
    return actions


def _bucket_action(tenant: str, change) -> dict:
    """Counters of a pool bucket: created with their first units, or added to within the limit."""
    key = layout.bucket_key(tenant, change.resource_id, change.index)
    start, _ = change.shape.bucket_span(change.index)
    if change.create:
        item = {
            **key,
            "cap": {"N": str(change.cap)},
            **{layout.cell_attribute(start, cell): {"N": str(delta)} for cell, delta in change.deltas},
        }
        return _put(item, "attribute_not_exists(pk)")
    names, values, additions, conditions = {}, {}, [], []
    for number, (cell, delta) in enumerate(change.deltas):
        names[f"#c{number}"] = layout.cell_attribute(start, cell)
        values[f":d{number}"] = {"N": str(delta)}
        additions.append(f"#c{number} :d{number}")
        if delta > 0:
            values[f":l{number}"] = {"N": str(change.limit - delta)}
            conditions.append(f"(attribute_not_exists(#c{number}) OR #c{number} <= :l{number})")
    if conditions:
        values[":cap"] = {"N": str(change.cap)}
        conditions.insert(0, "cap = :cap")
    else:
        conditions.append("attribute_exists(pk)")
    return {
        "Update": {
            "Key": key,
            "UpdateExpression": "ADD " + ", ".join(additions),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def _recap_action(tenant: str, recap) -> dict:
    """A new capacity for a bucket; lowering it checks every cell of the bucket, present or not."""
    start, end = recap.shape.bucket_span(recap.index)
    names, conditions = {}, ["cap = :old"]
    values = {":old": {"N": str(recap.old_cap)}, ":new": {"N": str(recap.new_cap)}}
    if recap.new_cap < recap.old_cap:
        points = list(recap.shape.grid.points(start, end + recap.shape.step_ns + layout.DAY_NS))
        for number, (cell, cell_end) in enumerate(zip(points, points[1:])):
            if cell >= end:
                break
            if cell_end <= recap.from_ns:
                continue  # over already: the past keeps what it had
            names[f"#c{number}"] = layout.cell_attribute(start, cell)
            conditions.append(f"(attribute_not_exists(#c{number}) OR #c{number} <= :new)")
    action = {
        "Key": layout.bucket_key(tenant, recap.resource_id, recap.index),
        "UpdateExpression": "SET cap = :new",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
    }
    if names:
        action["ExpressionAttributeNames"] = names
    return {"Update": action}


def client_from_environment():
    """The DynamoDB client from botocore alone (cold start), with short time-outs inside Lambda's limit."""
    import botocore.session
    from botocore.config import Config

    config = Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=200,
        parameter_validation=False,
    )
    return botocore.session.get_session().create_client("dynamodb", config=config)


def store_from_environment() -> DynamoStore:
    return DynamoStore(os.environ["RESERVATION_TABLE"], client_from_environment())
