"""A model of DynamoDB for throughput: harness.fake_store.FakeStore with DynamoDB's latencies and its
per-item transaction conflicts, counting rounds and the write units each partition key takes.

What is modelled:
* latency: every read the store is asked for is one round of `read_s` (5 ms), as chalicelib.dynamo
  does it: a reserve's BatchGetItem, then, only if a guard it read is dense (lists no bookings), the
  Query of the bookings around the window; every commit one round of `write_s` (15 ms).
* transaction conflicts: a transaction that touches an item (pk, sk) another in-flight transaction
  touches is refused (TransactionConflict, after its round trip) and nothing of it is written;
  otherwise its conditions are checked and it is applied at the end of its round trip, atomically
  (FakeStore's conditions are chalicelib.dynamo's). Reads see what is committed.
* write units per partition key: every action of chalicelib.dynamo._actions(plan) of a committed
  transaction costs 2 WCU per started KB of its item in its pk (Put: the item; Update: its key and the
  values it sets; Delete: the item deleted; ConditionCheck: no write); every index entry a Put or Delete
  makes costs 1 WCU per started KB in the index's partition (harness.meter.index_writes). Each is
  stamped with the commit's time, so that the busiest partition's WCU in any 1-second window can be
  told (DynamoDB allows a partition key 1,000 WCU/s).

Not modelled: throttling (the WCU are counted, never refused), network jitter, retries inside botocore.
"""

import bisect
import collections
import threading
import time

from chalicelib import dynamo, layout
from chalicelib.ports import (
    StaleWrite,
)
from harness.fake_store import FakeStore
from harness.meter import index_writes, item_size, table_gsis

PARTITION_WCU_PER_SECOND = 1000


class ModelStore(FakeStore):
    def __init__(self, read_s: float = 0.005, write_s: float = 0.015):
        super().__init__()
        self.read_s, self.write_s = read_s, write_s
        self.gsis = table_gsis()
        self.flight_lock = threading.Lock()
        self.in_flight = collections.Counter()  # (pk, sk) -> in-flight transactions touching it
        self.counts = collections.Counter()  # reads, commits, conflicts, stale (conditions failed), committed
        self.partition_writes = []  # (time, "table"/index name, partition key, WCU)
        self._starts = {}  # (tenant, resource) -> sorted start keys
        self._by_start = {}  # (tenant, resource) -> {start key: Booking}
        self._local = threading.local()
        self.modelling = True  # False: no latency, no conflicts, nothing counted (to fill it up quickly)

    # ---- reads: one round each --------------------------------------------------------------

    def _round(self) -> None:
        if not self.modelling:
            return
        with self.flight_lock:
            self.counts["reads"] += 1
        time.sleep(self.read_s)

    def read_for_reserve(self, read):
        # FakeStore looks for the bookings around the window among all the resource's bookings; here only
        # among those a store of chalicelib.dynamo would read (newest first until one ends before the
        # window: stored exclusive bookings never overlap), found by bisection, so that a resource holding
        # thousands of bookings costs this Python model no more than it costs DynamoDB
        self._local.window = None if read.shape.pool else (read.padded_start_ns, read.padded_end_ns + read.lookback_ns)
        try:
            snapshot = super().read_for_reserve(read)
        finally:
            self._local.window = None
        self._round()  # the BatchGetItem
        if any(getattr(guard, "dense", True) for guard in snapshot.guards.values()):
            self._round()  # then, as chalicelib.dynamo does, the Query of the bookings (a dense guard lists none)
        return snapshot

    def _resource_bookings(self, tenant, resource_id):
        books = self._by_start.get((tenant, resource_id), {})
        starts = self._starts.get((tenant, resource_id), [])
        window = getattr(self._local, "window", None)
        if window is None:
            return [books[key] for key in starts]
        start_ns, end_ns = window
        found = []
        position = bisect.bisect_right(starts, layout.start_key_bound(end_ns))
        while position > 0:
            position -= 1
            booking = books[starts[position]]
            if booking.padded_end_ns <= start_ns:
                break
            found.append(booking)
        return found[::-1]

    def get(self, tenant, reservation_id):
        found = super().get(tenant, reservation_id)
        self._round()
        return found

    def read_definition(self, tenant, resource_id):
        found = super().read_definition(tenant, resource_id)
        self._round()
        return found

    def timelines(self, tenant, reads, item_budget):
        found = super().timelines(tenant, reads, item_budget)
        self._round()
        return found

    # ---- writes: one round, refused when an item is in another transaction ---------------------

    def commit(self, plan):
        if not self.modelling:
            return super().commit(plan)
        actions = dynamo._actions(plan)
        keys = {layout.pair(_key_of(action)) for _, action in actions}
        with self.flight_lock:
            self.counts["commits"] += 1
            conflict = any(self.in_flight[key] for key in keys)
            if not conflict:
                self.in_flight.update(keys)
        if conflict:
            time.sleep(self.write_s)
            with self.flight_lock:
                self.counts["conflicts"] += 1
            raise StaleWrite(frozenset({"conflict"}))
        try:
            time.sleep(self.write_s)
            try:
                super().commit(plan)
            except StaleWrite:
                with self.flight_lock:
                    self.counts["stale"] += 1
                raise
            self._record(plan, actions, time.monotonic())
        finally:
            with self.flight_lock:
                self.in_flight.subtract(keys)

    def _apply(self, plan):
        tenant = plan.tenant
        for booking in [*plan.remove, *(before for before, _ in plan.change)]:
            self._unindex(tenant, booking)
        super()._apply(plan)
        for booking in [*plan.create, *(after for _, after in plan.change)]:
            self._index(tenant, booking)

    def _index(self, tenant, booking):
        key = (tenant, booking.reservation.resource_id)
        start = layout.start_key(booking.reservation.start_ns, booking.reservation.id)
        starts = self._starts.setdefault(key, [])
        if start not in self._by_start.setdefault(key, {}):
            bisect.insort(starts, start)
        self._by_start[key][start] = booking

    def _unindex(self, tenant, booking):
        key = (tenant, booking.reservation.resource_id)
        start = layout.start_key(booking.reservation.start_ns, booking.reservation.id)
        if self._by_start.get(key, {}).pop(start, None) is not None:
            starts = self._starts[key]
            del starts[bisect.bisect_left(starts, start)]

    # ---- write units per partition --------------------------------------------------------------

    def _record(self, plan, actions, at: float) -> None:
        deleted = {}
        for booking in [*plan.remove, *(before for before, _ in plan.change)]:
            for item in (layout.reservation_item(plan.tenant, booking), layout.booking_item(plan.tenant, booking)):
                deleted[layout.pair(item)] = item
        found = []
        for _, action in actions:
            ((kind, body),) = action.items()
            pk = _key_of(action)["pk"]["S"]
            if kind == "Put":
                size, before, after = item_size(body["Item"]), None, body["Item"]
            elif kind == "Update":
                size = item_size(body["Key"]) + sum(
                    item_size({name[1:]: value}) for name, value in body.get("ExpressionAttributeValues", {}).items()
                )
                before = after = None
            elif kind == "Delete":
                before = deleted.get(layout.pair(body["Key"]))
                size, after = item_size(before or body["Key"]), None
            else:
                continue  # ConditionCheck: a read
            found.append((at, "table", pk, 2 * max(1, -(-int(size) // 1024))))
            if before is not None or after is not None:
                for write in index_writes(before, after, self.gsis):
                    entry = after if write.what != "delete" else before
                    gsi = next(g for g in self.gsis if g.name == write.index)
                    found.append(
                        (at, write.index, entry[gsi.hash_key].get("S") or entry[gsi.hash_key].get("N"), write.wru)
                    )
        with self.flight_lock:
            self.counts["committed"] += 1
            self.partition_writes += found

    def busiest(self, since: float = 0.0, where: str = "table") -> tuple:
        """(partition key, most WCU it took in one 1-second window) among `where` ("table" or "index")."""
        per_window = collections.Counter()
        with self.flight_lock:
            writes = list(self.partition_writes)
        for at, space, pk, wcu in writes:
            if at < since or (space == "table") != (where == "table"):
                continue
            per_window[(space, pk, int((at - since) // 1))] += wcu
        if not per_window:
            return "", 0
        (space, pk, _), wcu = per_window.most_common(1)[0]
        return (pk if space == "table" else f"{space}:{pk}"), wcu


def _key_of(action: dict) -> dict:
    body = next(iter(action.values()))
    item = body.get("Key") or body["Item"]
    return {"pk": item["pk"], "sk": item["sk"]}
