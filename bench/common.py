"""What the benchmarks share: calling the API in process, measuring one call with the honest meter
(harness.meter), in-process moto made safe for threads, and printing tables.

Nothing here is a figure: each bench module says what it runs and prints what it measured.
"""

import contextlib
import statistics
import threading
import time

from chalicelib.api import DURATION_FIELDS, CallContext
from chalicelib.gen import reservation_pb2 as pb
from harness.meter import Meter, Usage, usd_per_million

CONTEXT = CallContext()
SECOND_NS = 10**9
MINUTE_S, HOUR_S, DAY_S = 60, 3600, 86400


def reservation(resource_id: str, user_id: str, start_s: float, end_s: float, **fields) -> pb.Reservation:
    """A Reservation message with start/end in (possibly fractional) seconds since the epoch."""
    start_ns, end_ns = round(start_s * SECOND_NS), round(end_s * SECOND_NS)
    return pb.Reservation(
        user_id=user_id,
        resource_id=resource_id,
        start={"seconds": start_ns // SECOND_NS, "nanos": start_ns % SECOND_NS},
        end={"seconds": end_ns // SECOND_NS, "nanos": end_ns % SECOND_NS},
        **fields,
    )


def reserve(
    api,
    resource_id: str,
    user_id: str,
    start_s: float,
    end_s: float,
    request_id: str = "",
    hold_s: float | None = None,
    **fields,
) -> pb.Reservation:
    request = pb.ReserveRequest(
        reservation=reservation(resource_id, user_id, start_s, end_s, **fields), request_id=request_id
    )
    if hold_s is not None:
        request.hold_for.seconds = int(hold_s)
    return api.reserve(request, CONTEXT).reservation


def timestamp(seconds: float) -> dict:
    return {"seconds": int(seconds), "nanos": round((seconds - int(seconds)) * SECOND_NS)}


# ---- one metered call ------------------------------------------------------------------------------


class Measured:
    """The usage of one call (or a few), its wall time, and the handler's own time (wall time less the
    time some DynamoDB call was in flight and the meter's own reading)."""

    def __init__(self, usage: Usage, wall_s: float, result=None):
        self.usage = usage
        self.wall_ms = wall_s * 1000
        self.handler_ms = max(0.0, (wall_s - usage.db_seconds - usage.meter_seconds) * 1000)
        self.result = result

    @property
    def usd_per_million(self) -> float:
        return usd_per_million(self.usage, self.handler_ms)


def measure(meter: Meter, call) -> Measured:
    meter.discard()
    began = time.perf_counter()
    result = call()
    wall = time.perf_counter() - began
    return Measured(meter.take(), wall, result)


# ---- in-process moto -------------------------------------------------------------------------------


def moto_images(region: str = "us-east-1"):
    """images(table, keys) for harness.meter.Meter reading in-process moto's items directly (no botocore)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]

    def plain(value) -> dict:
        if value.type == "M":
            return {"M": {name: plain(inner) for name, inner in value.value.items()}}
        if value.type == "L":
            return {"L": [plain(inner) for inner in value.value]}
        return {value.type: value.value}

    def images(table_name: str, keys: list) -> dict:
        table = backend.get_table(table_name)
        found = {}
        for key in keys:
            partition = table.items.get(DynamoType(key["pk"]))
            item = partition.get(DynamoType(key["sk"])) if isinstance(partition, dict) else None
            if item is not None:
                found[(key["pk"]["S"], key["sk"]["S"])] = {name: plain(value) for name, value in item.attrs.items()}
        return found

    return images


@contextlib.contextmanager
def one_call_at_a_time():
    """In-process moto applies one DynamoDB call at a time, as the embedded server does (moto's
    transactions are not thread-safe; DynamoDB applies each call atomically)."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request
    lock = threading.Lock()

    def serialized(self, request):
        with lock:
            return original(self, request)

    BotocoreStubber.process_request = serialized
    try:
        yield
    finally:
        BotocoreStubber.process_request = original


# ---- printing --------------------------------------------------------------------------------------


def table(headers: list, rows: list, aligns: str = "") -> None:
    """Print rows under headers, columns as wide as their widest cell (first column left-aligned).
    A row that is a plain string is printed as it is (a section title)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] if not isinstance(row, str) else row for row in rows]
    widths = [max(len(row[n]) for row in cells if not isinstance(row, str)) for n in range(len(headers))]
    aligns = aligns or "<" + ">" * (len(headers) - 1)
    for row in cells:
        if isinstance(row, str):
            print(row)
            continue
        print("  ".join(f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths)).rstrip())


def units(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def p(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list) -> float:
    return statistics.median(values)


def load_into_moto(table_name: str, items: list, region: str = "us-east-1") -> None:
    """Write items straight into in-process moto's table (what harness.bulk.load does through
    BatchWriteItem, twice as fast): bulk loading is setup, never measured."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
    for item in items:
        backend.put_item(table_name, item)


def define(api, resource_id: str, **fields) -> pb.Resource:
    """define_resource; durations given in seconds (max_duration=3600, step=900, ...)."""
    durations = {
        name: {"seconds": int(value), "nanos": round((value - int(value)) * SECOND_NS)}
        for name, value in fields.items()
        if name in DURATION_FIELDS
    }
    other = {name: value for name, value in fields.items() if name not in durations}
    return api.define_resource(
        pb.DefineResourceRequest(resource=pb.Resource(id=resource_id, **durations, **other)), CONTEXT
    ).resource


def bookings(
    resource_id: str,
    count: int,
    start_s: float,
    length_s: float,
    users: int = 1,
    pooled: bool = False,
    user_prefix: str = "user",
) -> list:
    """`count` back-to-back Booking values (model, for harness.bulk.items_of), ids made up."""
    import uuid

    from chalicelib.model import Booking, Reservation, Status

    start_ns, length_ns = round(start_s * SECOND_NS), round(length_s * SECOND_NS)
    return [
        Booking(
            Reservation(
                str(uuid.uuid4()),
                f"{user_prefix}{n % users}",
                resource_id,
                Status.CONFIRMED,
                start_ns + n * length_ns,
                start_ns + (n + 1) * length_ns,
            ),
            pooled=pooled,
        )
        for n in range(count)
    ]


# ---- DynamoDB answers recorded on moto, replayed without it ------------------------------------------


class Recording:
    """Records what DynamoDB (moto) answered to each call of a botocore client, then answers the same
    calls from the recording without reaching DynamoDB (botocore still builds and checks each request).

    A call is the same when its operation and parameters are. A Query never seen gets the answer of the
    last recorded Query of the same shape (parameters but the values of its conditions and its start
    key: the change feed's and delete_resource's bounds come from the clock); a write never seen
    succeeds with an empty answer (writes answer nothing the service reads); any other unknown call
    raises KeyError.
    """

    WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")

    def __init__(self, client):
        self.client = client
        self.answers = {}
        self.shapes = {}

    @staticmethod
    def _key(operation: str, params: dict) -> tuple:
        # repr, not json.dumps: a request is built the same way every time, and repr costs the timed calls
        # a few microseconds where json.dumps cost a tenth of a millisecond
        return operation, repr(params)

    def _stash(self, params, model, context, **_):
        context["recording"] = self._key(model.name, params)
        if model.name == "Query":
            shape = {
                name: value
                for name, value in params.items()
                if name not in ("ExpressionAttributeValues", "ExclusiveStartKey")
            }
            context["recording_shape"] = self._key(model.name, shape)

    def _record(self, parsed, model, context, **_):
        if "recording" in context and "Error" not in parsed:
            self.answers[context["recording"]] = parsed
            if "recording_shape" in context:
                self.shapes[context["recording_shape"]] = parsed

    def _replay(self, model, context, **_):
        from botocore.awsrequest import AWSResponse

        key = context.get("recording")
        if key in self.answers:
            return AWSResponse("http://canned", 200, {}, None), self.answers[key]
        if context.get("recording_shape") in self.shapes:
            return AWSResponse("http://canned", 200, {}, None), self.shapes[context["recording_shape"]]
        if model.name in self.WRITES:
            return AWSResponse("http://canned", 200, {}, None), {}
        raise KeyError(f"no recorded answer to {key[0]} {key[1][:200]}")

    @contextlib.contextmanager
    def recording(self):
        events = self.client.meta.events
        events.register("before-parameter-build.dynamodb", self._stash)
        events.register("after-call.dynamodb", self._record)
        try:
            yield self
        finally:
            events.unregister("before-parameter-build.dynamodb", self._stash)
            events.unregister("after-call.dynamodb", self._record)

    @contextlib.contextmanager
    def replaying(self):
        events = self.client.meta.events
        events.register("before-parameter-build.dynamodb", self._stash)
        events.register_first("before-call.dynamodb", self._replay)
        try:
            yield self
        finally:
            events.unregister("before-parameter-build.dynamodb", self._stash)
            events.unregister("before-call.dynamodb", self._replay)


def time_calls(call, count: int, budget_s: float = 2.0, at_least: int = 10) -> list:
    """Seconds of each of up to `count` calls (fewer, but `at_least`, when they pass `budget_s` in all)."""
    samples, began = [], time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
        if start - began > budget_s and len(samples) >= at_least:
            break
    return samples
