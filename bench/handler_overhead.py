"""Handler overhead: time per RPC inside the Lambda process, DynamoDB answered by canned replies.

Covers what we add to every call: API Gateway event to Chalice, Connect decode, validation,
the service rules, building DynamoDB requests, parsing their answers and encoding the reply.

    python -m bench.handler_overhead [--calls 2000]
"""
import argparse
import statistics
import time
import uuid

from chalicelib.api import ReservationApi
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Reservation, Status
from chalicelib.service import ReservationService
from chalicelib.store import DynamoStore, bulk_items

from harness.lambda_events import proxy_event, reserve_request


class CannedDynamoDB:
    """Stands in for the boto3 client: every call succeeds with a fixed, realistic answer."""

    class exceptions:  # noqa: N801 - the shape of a boto3 client
        class ConditionalCheckFailedException(Exception):
            pass

        class TransactionCanceledException(Exception):
            pass

    def __init__(self, page: int = 10):
        start = 1_795_000_000 * 10**9
        self.reservations = [Reservation(str(uuid.uuid4()), "alice", "room-1", Status.PENDING,
                                         start + n * 3600 * 10**9, start + (n + 1) * 3600 * 10**9) for n in range(page)]
        items = bulk_items(self.reservations)
        self.reservation_items = [item for item in items if item["sk"]["S"] == "RSV"]

    def batch_get_item(self, RequestItems):
        return {"Responses": {name: [] for name in RequestItems}}

    def transact_write_items(self, TransactItems):
        return {}

    def get_item(self, TableName, Key, ConsistentRead):
        if Key["pk"]["S"].startswith("RSV#"):
            return {"Item": self.reservation_items[0]}
        return {}

    def put_item(self, **_):
        return {}

    def query(self, **_):
        return {"Items": self.reservation_items, "Count": len(self.reservation_items)}


def calls(fake: CannedDynamoDB) -> dict:
    existing = fake.reservations[0].id
    window = pb.QueryRequest(resource_id="room-1", page_size=10)
    return {
        "reserve": proxy_event("reserve", reserve_request()),
        "confirm": proxy_event("confirm", pb.ConfirmRequest(id=existing)),
        "update": proxy_event("update", pb.UpdateRequest(id=existing, note="moved")),
        "cancel": proxy_event("cancel", pb.CancelRequest(id=existing)),
        "get": proxy_event("get", pb.GetRequest(id=existing)),
        "filter (10)": proxy_event("filter", pb.FilterRequest(query=window)),
    }


def run(count: int = 2000) -> dict:
    import app
    from chalicelib import runtime

    fake = CannedDynamoDB()
    runtime.default_api.cache_clear()
    api = ReservationApi(ReservationService(DynamoStore("t", fake)))
    original = app.default_api
    app.default_api = lambda: api
    results = {}
    try:
        for name, event in calls(fake).items():
            samples = []
            for _ in range(count):
                began = time.perf_counter()
                answer = app.app(event, None)
                samples.append(time.perf_counter() - began)
                assert answer["statusCode"] == 200, (name, answer)
            samples.sort()
            results[name] = (statistics.median(samples) * 1000, samples[int(len(samples) * 0.99)] * 1000)
    finally:
        app.default_api = original
    print(f"{'rpc':<12} {'p50 ms':>7} {'p99 ms':>7}   (goal: p50 <= 1 ms)")
    for name, (p50, p99) in results.items():
        print(f"{name:<12} {p50:>7.3f} {p99:>7.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    run(parser.parse_args().calls)
