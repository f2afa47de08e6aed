"""DynamoDB work per RPC: round trips, items, capacity units, and a cost per million calls.

Counted by hooking botocore on the app's own client (against moto in process).
moto's consumed-capacity numbers are not real, so units are computed from item
sizes with DynamoDB's rules: a write unit per started KB of the larger of the
item before and after (x2 in a transaction); a strongly consistent read unit
per started 4 KB of each item (min 1), half that for index queries (eventually
consistent) over the summed size of the items read.

    python -m bench.dynamodb_cost
"""
import uuid

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from harness import bulk
from harness.moto import TABLE, moto_table

from harness.lambda_events import reserve_request
from harness.meter import CapacityMeter

# AWS on-demand list prices, USD (us-east-1)
API_GATEWAY_PER_MILLION = 3.50
LAMBDA_PER_MILLION = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667
LAMBDA_GB = 0.5
WRU_PER_MILLION = 0.625
RRU_PER_MILLION = 0.125
ASSUMED_ROUND_TRIP_MS = 8  # in-region DynamoDB latency, for the Lambda duration estimate
ASSUMED_HANDLER_MS = 1


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
