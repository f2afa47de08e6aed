"""DynamoDB work per RPC: round trips, items, capacity units, and a cost per million calls.

Counted by hooking botocore on the app's own client (against moto in process).
moto's consumed-capacity numbers are not real, so units are computed from item
sizes with DynamoDB's rules: a write unit per started KB of the larger of the
item before and after (x2 in a transaction); a strongly consistent read unit
per started 4 KB of each item (min 1), half that for index queries (eventually
consistent) over the summed size of the items read.

    python -m bench.dynamodb_cost
"""
import math
import uuid

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from devserver import bulk
from tests.conftest import TABLE, moto_table

from .events import reserve_request
from .reads import CallCounter

# AWS on-demand list prices, USD (us-east-1)
API_GATEWAY_PER_MILLION = 3.50
LAMBDA_PER_MILLION = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667
LAMBDA_GB = 0.5
WRU_PER_MILLION = 0.625
RRU_PER_MILLION = 0.125
ASSUMED_ROUND_TRIP_MS = 8  # in-region DynamoDB latency, for the Lambda duration estimate
ASSUMED_HANDLER_MS = 1


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
    return len(inner)


def item_size(item) -> float:
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


class CapacityMeter(CallCounter):
    """CallCounter (round trips, items read) plus items written and capacity units of each call."""

    def __init__(self, client, peek):
        super().__init__(client)
        self.peek = peek  # peek(key) -> the item now, read without being counted
        self.items_written = 0
        self.rru = self.wru = 0.0
        self._before = {}
        self._asked = 0

    def __enter__(self):
        self.client.meta.events.register("provide-client-params.dynamodb", self._before_call)
        return super().__enter__()

    def __exit__(self, *exc):
        self.client.meta.events.unregister("provide-client-params.dynamodb", self._before_call)
        super().__exit__(*exc)

    @staticmethod
    def _written_keys(operation: str, params: dict) -> list:
        if operation == "TransactWriteItems":
            actions = [next(iter(a.values())) for a in params["TransactItems"]]
            return [(a.get("Key") or {"pk": a["Item"]["pk"], "sk": a["Item"]["sk"]}, 2) for a in actions]
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or {"pk": params["Item"]["pk"], "sk": params["Item"]["sk"]}
            return [(key, 1)]
        return []

    def _before_call(self, params, model, **_):
        if model.name == "BatchGetItem":
            self._asked = sum(len(request["Keys"]) for request in params["RequestItems"].values())
        keys = self._written_keys(model.name, params)
        self._before = {(k["pk"]["S"], k["sk"]["S"]): (k, factor, item_size(self.peek(k))) for k, factor in keys}

    def _count(self, parsed, model, **_):
        super()._count(parsed, model)
        for key, factor, before in self._before.values():
            self.items_written += 1
            self.wru += factor * max(1, math.ceil(max(before, item_size(self.peek(key))) / 1024))
        self._before = {}
        if model.name == "GetItem":
            self.rru += max(1, math.ceil(item_size(parsed.get("Item")) / 4096))
        elif model.name == "BatchGetItem":
            found = [item for items in parsed["Responses"].values() for item in items]
            # every key asked for costs at least one unit, found or not
            self.rru += sum(max(1, math.ceil(item_size(i) / 4096)) for i in found) + self._asked - len(found)
        elif model.name in ("Query", "Scan"):
            self.rru += max(0.5, 0.5 * math.ceil(sum(item_size(i) for i in parsed["Items"]) / 4096))


def _scenarios(api) -> dict:
    """name -> callable making one call; each one leaves the table ready for the next."""
    made = {}

    def reserve(hours, request_id=""):
        def call():
            request = reserve_request(hours)
            request.reservation.resource_id = f"room-{uuid.uuid4().hex[:6]}"
            request.request_id = request_id and str(uuid.uuid4())
            made["last"] = api.reserve(request).reservation.id
        return call

    return {
        "reserve 1 h": reserve(1),
        "reserve 1 day": reserve(24),
        "reserve 14 days": reserve(14 * 24),
        "reserve 1 h + request id": reserve(1, "yes"),
        "confirm": lambda: api.confirm(pb.ConfirmRequest(id=made["last"])),
        "update note": lambda: api.update(pb.UpdateRequest(id=made["last"], note="moved")),
        "get": lambda: api.get(pb.GetRequest(id=made["last"])),
        "cancel": lambda: api.cancel(pb.CancelRequest(id=made["last"])),
        "filter page of 10": lambda: api.filter(pb.FilterRequest(query=pb.QueryRequest(
            resource_id="busy", start={"seconds": 1_795_000_000 + 1800}, page_size=10))),
    }


def run() -> dict:
    rows = {}
    with moto_table() as client:
        # a busy resource: 200 back-to-back hours, so slot items hold ~96 claims each
        bulk.load(client, TABLE, bulk.back_to_back("busy", 200, 1_795_000_000 * 10**9, 3600 * 10**9))
        api = default_api()
        app_client = api.service.store.client

        def peek(key):
            return client.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")

        for name, call in _scenarios(api).items():
            with CapacityMeter(app_client, peek) as meter:
                call()
            rows[name] = meter
    print(f"{'rpc':<26} {'trips':>5} {'read':>5} {'written':>7} {'RRU':>6} {'WRU':>6} {'$/M calls':>10}")
    costs = {}
    for name, meter in rows.items():
        lambda_seconds = (ASSUMED_HANDLER_MS + ASSUMED_ROUND_TRIP_MS * meter.round_trips) / 1000
        cost = (API_GATEWAY_PER_MILLION + LAMBDA_PER_MILLION + LAMBDA_GB * lambda_seconds * LAMBDA_PER_GB_SECOND * 1e6
                + meter.wru * WRU_PER_MILLION + meter.rru * RRU_PER_MILLION)
        costs[name] = {"round_trips": meter.round_trips, "items_read": meter.items_read,
                       "items_written": meter.items_written, "rru": meter.rru, "wru": meter.wru, "usd_per_million": cost}
        print(f"{name:<26} {meter.round_trips:>5} {meter.items_read:>5} {meter.items_written:>7} {meter.rru:>6.1f} "
              f"{meter.wru:>6.1f} {cost:>10.2f}")
    print(f"(Lambda {LAMBDA_GB * 1024:.0f} MB billed {ASSUMED_HANDLER_MS} ms + {ASSUMED_ROUND_TRIP_MS} ms per round "
          "trip; API Gateway REST $3.50/M dominates every row)")
    return costs


if __name__ == "__main__":
    run()
