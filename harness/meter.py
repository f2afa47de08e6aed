"""Counting what DynamoDB does for us, by hooking botocore's events on the app's own client.

Two meters:

* CallCounter (v1, kept for the tests): round trips and items read per operation.
* Meter, the honest meter that every cost figure of bench/ comes from. For each DynamoDB call it
  records, and for any stretch of calls (one RPC, one run) it sums:

  calls       every botocore call of the metered clients (retries inside botocore are one call).
  rounds      sequential rounds: calls that overlap in time count as one round (the store issues a
              BatchGetItem and a Query at once). Each call's start and end are taken from botocore's
              events: from the moment the call is issued (before-parameter-build, where botocore
              starts building the request) to its answer (after-call); rounds are the groups of
              overlapping intervals. A call made by a task of a thread pool (the store issues its
              concurrent calls that way) is in flight from when the task was submitted, or from when
              the worker thread running it finished its previous task if that is later (a task queued
              behind others waits for a thread): on this loaded machine a worker thread can wake up
              milliseconds after in-process moto answered the call issued beside it, which would
              otherwise split one round in two. Every call is also held open for `overlap_s` (0.5 ms)
              at its before-call, as the network would.
  waves       the calls on the critical path: the longest chain of calls each of which had to wait for
              the previous one, following what waits for what rather than the clock: calls of one
              thread follow each other; a pool task follows what its submitting thread had finished
              when it submitted it, and the worker slot it runs in (a pool runs at most max_workers
              tasks at once: a task takes the slot that became free first, counting calls, as if each
              call blocked its thread for one round trip); a thread that took a task's result follows
              that task. In-process moto serialises every call under the GIL, so timing alone cannot
              tell how many round trips a fan-out of a hundred calls would take on DynamoDB; waves
              can: it is the number of round-trip latencies a caller waits, given the threads the
              store really has (more than `rounds` when a round has more calls than threads, or when
              a read needs a second page).
  items read  GetItem 1 if found; BatchGetItem the items returned; Query/Scan the items evaluated
              (ScannedCount).
  RRU         read request units from the sizes of the items read (DynamoDB's rules): a strongly
              consistent read costs 1 RRU per started 4 KB of each item (GetItem, BatchGetItem: each
              key asked costs at least 1, found or not); an eventually consistent one half of that
              (every index Query is eventually consistent); a Query or Scan sums the sizes of the items
              it evaluated before rounding up to 4 KB (minimum 1 unit, or 0.5). When a filter dropped
              items, the dropped ones are assumed to be the size of the average returned one. A
              ConditionCheck in a transaction is a transactional read: 2 RRU per started 4 KB of the
              item checked.
  items written  every item a write names (ConditionChecks excluded).
  WRU (table) 1 write request unit per started KB of the larger of the item before and after the
              write (a deleted item: its size before), x2 in TransactWriteItems. The images are read
              around the call, uncounted: by default with strongly consistent reads through the
              metered client; `images` may read them another way (bench.common reads in-process moto's
              items directly, which is much faster).
  index writes for every written item and every global secondary index of infra/table.json, the
              write the index takes: the item enters the index (it gains both key attributes: a put),
              leaves it (a delete), changes its index keys (a delete and a put), or stays with other
              projected values (an update in place; a KEYS_ONLY index whose keys did not change takes
              none). An index entry's size is its projected attributes (ALL: the whole item;
              KEYS_ONLY: the table's and the index's keys) plus DynamoDB's 100 bytes of overhead;
              each index write costs 1 WRU per started KB of the entry (the larger of before and after
              for an update), at the standard rate, not doubled for a transaction (shown apart, so
              that a reader who assumes otherwise can double it).
  by kind     write units (table + index) by the kind of item written (chalicelib.layout.kind_of:
              reservation, booking, guard, bucket, definition, request, user, tenant, event), so that
              e.g. the change event's own cost can be shown apart.
  failed      a call DynamoDB refused (a cancelled transaction, a failed condition) counts as a call
              and a round; the items it named were not changed and no write units are counted for it.
  modelled ms DynamoDB time of the critical path (as for waves) with an assumed latency per call (5 ms for
              a read, 15 ms for a write): what a Lambda would wait, used for the GB-s estimate.
"""

import collections
import concurrent.futures
import dataclasses
import json
import math
import pathlib
import threading
import time

from chalicelib import layout

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_TEMPLATE = ROOT / "infra" / "table.json"
INDEX_ENTRY_OVERHEAD = 100  # bytes DynamoDB adds to every index entry
READ_MS, WRITE_MS = 5.0, 15.0
WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


class CallCounter:
    """Round trips and items read per DynamoDB operation, for one botocore client.

    Items read: Query/Scan items evaluated (ScannedCount, or Count when moto
    leaves it out), GetItem 1 when found, BatchGetItem the items returned.
    """

    def __init__(self, client):
        self.client = client
        self.calls = collections.Counter()
        self.items_read = 0

    def __enter__(self) -> "CallCounter":
        self.client.meta.events.register("after-call.dynamodb", self._count)
        return self

    def __exit__(self, *exc) -> None:
        self.client.meta.events.unregister("after-call.dynamodb", self._count)

    def reset(self) -> None:
        self.calls.clear()
        self.items_read = 0

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    def _count(self, parsed, model, **_) -> None:
        operation = model.name
        self.calls[operation] += 1
        if operation in ("Query", "Scan"):
            self.items_read += parsed.get("ScannedCount") or parsed.get("Count", 0)
        elif operation == "GetItem":
            self.items_read += 1 if "Item" in parsed else 0
        elif operation == "BatchGetItem":
            self.items_read += sum(len(items) for items in parsed.get("Responses", {}).values())


# ---- item sizes (DynamoDB's rules) ----------------------------------------------------------------


def attribute_size(value: dict) -> float:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in inner)
    return len(inner)


def item_size(item) -> float:
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


def write_units(size: float) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: float) -> int:
    return max(1, math.ceil(size / 4096))


# ---- indexes -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gsi:
    name: str
    hash_key: str
    range_key: str
    projection: str  # ALL or KEYS_ONLY

    def entry(self, item: dict | None) -> dict | None:
        """The item's entry in this index (None: not in it, a key attribute is missing)."""
        if not item or self.hash_key not in item or (self.range_key and self.range_key not in item):
            return None
        if self.projection == "ALL":
            return item
        names = ("pk", "sk", self.hash_key, self.range_key)
        return {name: item[name] for name in names if name and name in item}

    def keys(self, entry: dict) -> tuple:
        return (json.dumps(entry[self.hash_key], sort_keys=True), json.dumps(entry.get(self.range_key), sort_keys=True))


def table_gsis(template: pathlib.Path = TABLE_TEMPLATE) -> tuple:
    properties = json.loads(template.read_text())["Resources"]["ReservationTable"]["Properties"]
    found = []
    for index in properties.get("GlobalSecondaryIndexes", []):
        schema = {key["KeyType"]: key["AttributeName"] for key in index["KeySchema"]}
        found.append(
            Gsi(index["IndexName"], schema["HASH"], schema.get("RANGE", ""), index["Projection"]["ProjectionType"])
        )
    return tuple(found)


def entry_size(entry: dict) -> float:
    return item_size(entry) + INDEX_ENTRY_OVERHEAD


@dataclasses.dataclass(frozen=True)
class IndexWrite:
    index: str
    what: str  # put (enters), delete (leaves), update (in place)
    size: float
    wru: int


def index_writes(before: dict | None, after: dict | None, gsis: tuple) -> list:
    """The writes every index takes when an item goes from `before` to `after` (None: absent)."""
    writes = []
    for gsi in gsis:
        old, new = gsi.entry(before), gsi.entry(after)
        if old is None and new is None:
            continue
        if old is None:
            writes.append(IndexWrite(gsi.name, "put", entry_size(new), write_units(entry_size(new))))
        elif new is None:
            writes.append(IndexWrite(gsi.name, "delete", entry_size(old), write_units(entry_size(old))))
        elif gsi.keys(old) != gsi.keys(new):
            writes.append(IndexWrite(gsi.name, "delete", entry_size(old), write_units(entry_size(old))))
            writes.append(IndexWrite(gsi.name, "put", entry_size(new), write_units(entry_size(new))))
        elif old != new:
            size = max(entry_size(old), entry_size(new))
            writes.append(IndexWrite(gsi.name, "update", size, write_units(size)))
    return writes


# ---- what one call did ---------------------------------------------------------------------------


@dataclasses.dataclass
class ItemWrite:
    pk: str
    sk: str
    kind: str
    action: str  # Put, Update, Delete, ConditionCheck (transactions) or the operation
    before_size: float
    after_size: float
    wru: float  # table
    rru: float  # ConditionCheck only
    index: list  # of IndexWrite

    @property
    def index_wru(self) -> int:
        return sum(write.wru for write in self.index)


@dataclasses.dataclass
class Call:
    operation: str
    started: float
    ended: float = 0.0
    ok: bool = True
    error: str = ""
    items_read: int = 0
    rru: float = 0.0
    writes: list = dataclasses.field(default_factory=list)  # of ItemWrite
    overhead: float = 0.0  # seconds the meter itself spent around the call (reading images)
    base_depth: int = 0  # calls on the critical path before this one (see waves)
    base_ms: float = 0.0  # modelled DynamoDB time on the critical path before this one

    @property
    def modelled_ms(self) -> float:
        return WRITE_MS if self.operation in WRITE_OPERATIONS else READ_MS


def _rounds(calls: list) -> int:
    """Groups of calls overlapping in time (a call starting after every earlier one ended opens a round)."""
    rounds, horizon = 0, None
    for call in sorted(calls, key=lambda c: c.started):
        if horizon is None or call.started > horizon:
            rounds += 1
            horizon = call.ended
        else:
            horizon = max(horizon, call.ended)
    return rounds


def _critical_path(calls: list) -> tuple:
    """(calls on the critical path of the stretch, its modelled ms): see waves."""
    first = min(call.base_depth for call in calls)
    first_ms = min(call.base_ms for call in calls)
    return (
        max(call.base_depth + 1 for call in calls) - first,
        max(call.base_ms + call.modelled_ms for call in calls) - first_ms,
    )


def _busy_seconds(calls: list) -> float:
    """Time during which at least one call was in flight."""
    total, current = 0.0, None
    for call in sorted(calls, key=lambda c: c.started):
        if current is None or call.started > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [call.started, call.ended]
        else:
            current[1] = max(current[1], call.ended)
    if current is not None:
        total += current[1] - current[0]
    return total


@dataclasses.dataclass
class Usage:
    """What a stretch of calls cost (see the module docstring for every figure)."""

    calls: int = 0
    failed: int = 0
    rounds: int = 0
    waves: int = 0
    max_in_flight: int = 0
    items_read: int = 0
    items_written: int = 0
    rru: float = 0.0
    wru_table: float = 0.0
    wru_index: float = 0.0
    index_writes: int = 0
    wru_by_kind: dict = dataclasses.field(default_factory=dict)
    operations: dict = dataclasses.field(default_factory=dict)
    largest_item_written: float = 0.0  # bytes
    db_seconds: float = 0.0  # wall time with a call in flight (moto's, here)
    meter_seconds: float = 0.0  # time the meter spent reading images around the calls
    modelled_ms: float = 0.0

    @property
    def wru(self) -> float:
        return self.wru_table + self.wru_index

    def kind_wru(self, kind: str) -> float:
        return self.wru_by_kind.get(kind, 0.0)

    @classmethod
    def of(cls, calls: list) -> "Usage":
        usage = cls(calls=len(calls), failed=sum(not call.ok for call in calls))
        if not calls:
            return usage
        usage.rounds = _rounds(calls)
        usage.waves, usage.modelled_ms = _critical_path(calls)
        usage.db_seconds = _busy_seconds(calls)
        points = sorted([(c.started, 1) for c in calls] + [(c.ended, -1) for c in calls], key=lambda p: (p[0], p[1]))
        level = 0
        for _, step in points:
            level += step
            usage.max_in_flight = max(usage.max_in_flight, level)
        by_kind, operations = collections.Counter(), collections.Counter()
        for call in calls:
            operations[call.operation] += 1
            usage.meter_seconds += call.overhead
            usage.items_read += call.items_read
            usage.rru += call.rru
            for write in call.writes:
                usage.rru += write.rru
                if write.action == "ConditionCheck":
                    continue
                usage.items_written += 1
                usage.wru_table += write.wru
                usage.wru_index += write.index_wru
                usage.index_writes += len(write.index)
                by_kind[write.kind] += write.wru + write.index_wru
                usage.largest_item_written = max(usage.largest_item_written, write.before_size, write.after_size)
        usage.wru_by_kind, usage.operations = dict(by_kind), dict(operations)
        return usage


_THREAD = threading.local()  # per thread: depth and ms of the critical path so far; a pool task's start
_ORIGINAL_SUBMIT = concurrent.futures.ThreadPoolExecutor.submit
_ORIGINAL_RESULT = concurrent.futures.Future.result
_TRACKING = [0]


def _path() -> tuple:
    return getattr(_THREAD, "depth", 0), getattr(_THREAD, "ms", 0.0)


def _follow(depth: int, ms: float) -> None:
    """The current thread now comes after a chain of `depth` calls taking `ms`."""
    current_depth, current_ms = _path()
    _THREAD.depth, _THREAD.ms = max(current_depth, depth), max(current_ms, ms)


_SLOTS_LOCK = threading.Lock()


def _tracked_submit(self, fn, /, *args, **kwargs):
    """A pool task follows what its submitter had finished; and, since the pool runs at most
    max_workers tasks at once, it takes the worker slot that became free first (list scheduling in
    call counts: on DynamoDB each call of a task would block its thread for a round trip)."""
    submitted, (depth, ms) = time.perf_counter(), _path()
    done = {}
    with _SLOTS_LOCK:
        if not hasattr(self, "_meter_slots"):
            self._meter_slots = [[0, 0.0, False] for _ in range(self._max_workers)]  # free after depth, ms; busy

    def task():
        with _SLOTS_LOCK:
            slot = min((s for s in self._meter_slots if not s[2]), key=lambda s: (s[0], s[1]))
            slot[2] = True
        _THREAD.depth, _THREAD.ms, _THREAD.started = depth, ms, submitted
        _follow(slot[0], slot[1])
        try:
            return fn(*args, **kwargs)
        finally:
            done["depth"], done["ms"] = _path()
            with _SLOTS_LOCK:
                slot[0], slot[1], slot[2] = done["depth"], done["ms"], False
            _THREAD.started = None

    future = _ORIGINAL_SUBMIT(self, task)
    future._meter_done = done
    return future


def _tracked_result(self, timeout=None):
    try:
        return _ORIGINAL_RESULT(self, timeout)
    finally:
        done = getattr(self, "_meter_done", None)
        if done and "depth" in done:
            _follow(done["depth"], done["ms"])


def _track_submissions(on: bool) -> None:
    """While any Meter is active, thread-pool tasks carry when and after what they were submitted."""
    _TRACKING[0] += 1 if on else -1
    tracking = _TRACKING[0] > 0
    concurrent.futures.ThreadPoolExecutor.submit = _tracked_submit if tracking else _ORIGINAL_SUBMIT
    concurrent.futures.Future.result = _tracked_result if tracking else _ORIGINAL_RESULT


class Meter:
    """The honest meter over one or more botocore DynamoDB clients (see the module docstring).

        with Meter(client) as meter:
            api.reserve(...)
            usage = meter.take()      # what happened since the last take()

    Item images around writes are read with the metered client itself; those reads are not counted.
    """

    def __init__(
        self, *clients, overlap_s: float = 0.0005, gsis: tuple | None = None, images=None, count_writes: bool = True
    ):
        self.clients = clients
        self.overlap_s = overlap_s
        self.images = images or self._images  # images(table, keys) -> {(pk, sk): item}
        self.count_writes = count_writes
        self.gsis = table_gsis() if gsis is None else gsis
        self.lock = threading.Lock()
        self.calls = []
        self.local = threading.local()

    def __enter__(self) -> "Meter":
        _track_submissions(True)
        for client in self.clients:
            events = client.meta.events
            events.register("before-parameter-build.dynamodb", self._parameters)
            events.register("before-call.dynamodb", self._before)
            events.register("after-call.dynamodb", self._after)
            events.register("after-call-error.dynamodb", self._after_error)
        return self

    def __exit__(self, *exc) -> None:
        _track_submissions(False)
        for client in self.clients:
            events = client.meta.events
            events.unregister("before-parameter-build.dynamodb", self._parameters)
            events.unregister("before-call.dynamodb", self._before)
            events.unregister("after-call.dynamodb", self._after)
            events.unregister("after-call-error.dynamodb", self._after_error)

    def take(self) -> Usage:
        """The usage of the calls made since the last take() (or since the start), and forget them."""
        with self.lock:
            calls, self.calls = self.calls, []
        return Usage.of(calls)

    def discard(self) -> None:
        with self.lock:
            self.calls = []

    # ---- hooks ----------------------------------------------------------------------------------

    def _peeking(self) -> bool:
        return getattr(self.local, "peeking", False)

    def _parameters(self, params, model, context, **_):
        if self._peeking():
            return
        issued = time.perf_counter()
        task = getattr(_THREAD, "started", None)
        if task is not None:  # the first call of a pool task: in flight since the task could start
            issued, _THREAD.started = min(issued, task), None
        context["meter"] = {"operation": model.name, "params": params, "issued": issued, "path": _path()}

    def _before(self, model, context, **_):
        state = context.get("meter")
        if state is None or self._peeking():
            return
        entered = time.perf_counter()
        params = state["params"]
        state["writes"] = self._named_writes(model.name, params) if self.count_writes else []
        if state["writes"]:
            state["table"] = self._table_of(model.name, params)
            state["before"] = self.images(state["table"], [w[0] for w in state["writes"]])
        overhead = time.perf_counter() - entered
        # the call is in flight from when it was issued; the meter's own reading does not count
        call = state["call"] = Call(model.name, state["issued"] + overhead)
        call.overhead = overhead
        call.base_depth, call.base_ms = state["path"]
        if self.overlap_s:
            time.sleep(self.overlap_s)

    def _after(self, parsed, model, context, http_response=None, **_):
        state = context.get("meter")
        if state is None or "call" not in state or self._peeking():
            return
        call = state["call"]
        call.ended = time.perf_counter()
        _follow(call.base_depth + 1, call.base_ms + call.modelled_ms)
        status = getattr(http_response, "status_code", 200)
        if status >= 300:
            call.ok = False
            call.error = parsed.get("Error", {}).get("Code", str(status))
        params = state["params"]
        self._count_reads(call, model.name, params, parsed)
        if call.ok and state["writes"]:
            after = self.images(state["table"], [w[0] for w in state["writes"]])
            self._count_writes(call, state["writes"], state["before"], after)
        elif state["writes"]:  # a refused transaction: its ConditionChecks were read all the same
            self._count_writes(
                call, [w for w in state["writes"] if w[1] == "ConditionCheck"], state["before"], state["before"]
            )
        call.overhead += time.perf_counter() - call.ended
        with self.lock:
            self.calls.append(call)

    def _after_error(self, context, **_):
        state = context.get("meter")
        if state is None or "call" not in state or self._peeking():
            return
        call = state["call"]
        call.ended = time.perf_counter()
        _follow(call.base_depth + 1, call.base_ms + call.modelled_ms)
        call.ok, call.error = False, "no answer"
        with self.lock:
            self.calls.append(call)

    # ---- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _count_reads(call: Call, operation: str, params: dict, parsed: dict) -> None:
        if operation == "GetItem":
            item = parsed.get("Item")
            call.items_read = 1 if item else 0
            units = read_units(item_size(item))
            call.rru = units if params.get("ConsistentRead") else units / 2
        elif operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                found = parsed.get("Responses", {}).get(table, [])
                unprocessed = len(parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
                missing = len(request["Keys"]) - unprocessed - len(found)
                units = sum(read_units(item_size(item)) for item in found) + max(0, missing)
                call.items_read += len(found)
                call.rru += units if request.get("ConsistentRead") else units / 2
        elif operation in ("Query", "Scan"):
            items = parsed.get("Items", [])
            scanned = parsed.get("ScannedCount", len(items))
            size = sum(item_size(item) for item in items)
            if scanned > len(items):
                size += (scanned - len(items)) * (size / len(items) if items else 0)
            call.items_read = scanned
            units = read_units(size)
            consistent = params.get("ConsistentRead") and "IndexName" not in params
            call.rru = units if consistent else units / 2

    # ---- writes ---------------------------------------------------------------------------------

    @staticmethod
    def _table_of(operation: str, params: dict) -> str:
        if operation == "TransactWriteItems":
            return next(iter(params["TransactItems"][0].values()))["TableName"]
        if operation == "BatchWriteItem":
            return next(iter(params["RequestItems"]))
        return params["TableName"]

    @staticmethod
    def _named_writes(operation: str, params: dict) -> list:
        """(key, action, factor) of every item a write names."""

        def key_of(body):
            item = body.get("Key") or body["Item"]
            return {"pk": item["pk"], "sk": item["sk"]}

        if operation == "TransactWriteItems":
            return [(key_of(body), action, 2) for entry in params["TransactItems"] for action, body in entry.items()]
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(key_of(params), operation, 1)]
        if operation == "BatchWriteItem":
            found = []
            for requests in params["RequestItems"].values():
                for request in requests:
                    body = request.get("PutRequest") or request.get("DeleteRequest")
                    found.append((key_of(body), "BatchWriteItem", 1))
            return found
        return []

    def _images(self, table: str, keys: list) -> dict:
        """(pk, sk) -> item now (absent: missing), read without being counted, 100 keys per batch."""
        client = self.clients[0]
        images, unique = {}, list({layout.pair(key): key for key in keys}.values())
        self.local.peeking = True
        try:
            for first in range(0, len(unique), 100):
                pending = {table: {"Keys": unique[first : first + 100], "ConsistentRead": True}}
                while pending:
                    answer = client.batch_get_item(RequestItems=pending)
                    for item in answer["Responses"].get(table, []):
                        images[(item["pk"]["S"], item["sk"]["S"])] = item
                    pending = answer.get("UnprocessedKeys") or {}
        finally:
            self.local.peeking = False
        return images

    def _count_writes(self, call: Call, writes: list, before: dict, after: dict) -> None:
        for key, action, factor in writes:
            pair = layout.pair(key)
            old, new = before.get(pair), after.get(pair)
            old_size, new_size = item_size(old), item_size(new)
            kind = layout.kind_of(key)
            if action == "ConditionCheck":
                call.writes.append(
                    ItemWrite(pair[0], pair[1], kind, action, old_size, old_size, 0, 2 * read_units(old_size), [])
                )
                continue
            call.writes.append(
                ItemWrite(
                    pair[0],
                    pair[1],
                    kind,
                    action,
                    old_size,
                    new_size,
                    factor * write_units(max(old_size, new_size)),
                    0,
                    index_writes(old, new, self.gsis),
                )
            )


# ---- money ---------------------------------------------------------------------------------------

# AWS on-demand list prices, USD (us-east-1)
API_GATEWAY_PER_MILLION = 3.50
LAMBDA_PER_MILLION = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667
LAMBDA_GB = 0.5
WRU_PER_MILLION = 0.625
RRU_PER_MILLION = 0.125


def usd_per_million(usage: Usage, handler_ms: float) -> float:
    """$ per million calls: API Gateway REST, Lambda requests and GB-s (512 MB, billed for the handler's
    own time plus the modelled DynamoDB time of its critical path), and the request units."""
    lambda_seconds = (handler_ms + usage.modelled_ms) / 1000
    return (
        API_GATEWAY_PER_MILLION
        + LAMBDA_PER_MILLION
        + LAMBDA_GB * lambda_seconds * LAMBDA_PER_GB_SECOND * 1e6
        + usage.wru * WRU_PER_MILLION
        + usage.rru * RRU_PER_MILLION
    )


PRICES = (
    f"API Gateway REST ${API_GATEWAY_PER_MILLION:.2f}/M, Lambda ${LAMBDA_PER_MILLION:.2f}/M + GB-s at "
    f"{LAMBDA_GB * 1024:.0f} MB (billed: handler time measured here + {READ_MS:.0f} ms per read call and "
    f"{WRITE_MS:.0f} ms per write call on the critical path), ${WRU_PER_MILLION}/M WRU, ${RRU_PER_MILLION}/M RRU"
)
