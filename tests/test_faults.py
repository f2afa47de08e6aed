"""Fault injection: DynamoDB fails at every call of every RPC, in every way; nothing breaks.

Each RPC then either succeeds or answers a retryable code, the table stays consistent, and a
client retry (same request id for reserve) ends with exactly the one reservation asked for.
"""
import uuid

import botocore.exceptions
import pytest
from botocore.exceptions import ClientError

from chalicelib.errors import ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from rsvp import checker
from harness.moto import TABLE
from tests.helpers import reservation

RETRYABLE = {"unavailable", "aborted"}


def _client_error(client, code: str, operation: str, reasons=None):
    response = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    if reasons:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    error_class = getattr(client.exceptions, code, None) or ClientError
    return error_class(response, operation)


FAULTS = {
    "throttled": lambda client, operation, arguments: _client_error(client, "ThrottlingException", operation),
    "server error": lambda client, operation, arguments: _client_error(client, "InternalServerError", operation),
    "timeout": lambda client, operation, arguments: botocore.exceptions.ReadTimeoutError(endpoint_url="x"),
    "transaction conflict": lambda client, operation, arguments: _client_error(
        client, "TransactionCanceledException", operation,
        ["TransactionConflict"] * len(arguments.get("TransactItems", [None]))),
}


class FaultyClient:
    """Wraps the boto3 client: call number `at` fails with `fault`. With `after_apply` the call is
    applied first and then its answer is lost ("lost answer"), or retried as botocore retries a
    timed-out call, the retry failing against the write it already made ("applied, then retried")."""

    def __init__(self, client, at: int, fault: str, after_apply: bool):
        self._client, self._at, self._fault, self._after_apply = client, at, fault, after_apply
        self.calls = 0
        self.exceptions = client.exceptions

    def __getattr__(self, name):
        operation = getattr(self._client, name)

        def call(**arguments):
            self.calls += 1
            if self.calls != self._at:
                return operation(**arguments)
            if self._after_apply:
                operation(**arguments)
                if self._fault == "applied, then retried":
                    return operation(**arguments)
                raise botocore.exceptions.ConnectionClosedError(endpoint_url="x")
            raise FAULTS[self._fault](self._client, name, arguments)
        return call


# DynamoDB calls each RPC makes when nothing fails (checked below): every one of them gets a fault
CALLS = {"reserve": 2, "confirm": 2, "update": 2, "cancel": 2, "get": 1, "filter": 2}


def _scenario(api, method: str, target: str):
    if method == "reserve":
        return api.reserve(pb.ReserveRequest(reservation=reservation(resource="faulty", start=6000, end=6060),
                                             request_id=target))
    if method == "filter":
        return api.filter(pb.FilterRequest(query=pb.QueryRequest(resource_id="faulty", start={"seconds": 1})))
    request = {"confirm": pb.ConfirmRequest, "update": pb.UpdateRequest, "cancel": pb.CancelRequest,
               "get": pb.GetRequest}[method](id=target)
    if method == "update":
        request.note = "changed"
    return getattr(api, method)(request)


CASES = [(method, fault, after_apply) for method in CALLS
         for fault, after_apply in [(name, False) for name in FAULTS]
         + [("lost answer", True), ("applied, then retried", True)]]


@pytest.mark.parametrize("method,fault,after_apply", CASES)
def test_every_call_of_every_rpc_can_fail(dynamodb, method, fault, after_apply):
    api = default_api()
    store = api.service.store
    real = store.client
    target = str(uuid.uuid4())  # reserve: the request id of every attempt
    for at in range(1, CALLS[method] + 1):
        existing = api.reserve(pb.ReserveRequest(reservation=reservation(
            resource="faulty", start=at * 60, end=at * 60 + 30))).reservation  # a fresh one per attempt
        if method != "reserve":
            target = existing.id
        store.client = FaultyClient(real, at=at, fault=fault, after_apply=after_apply)
        try:
            _scenario(api, method, target)
        except ServiceError as error:
            assert error.code.connect_name in RETRYABLE, (at, error.code, error.message)
        finally:
            store.client = real
        assert checker.check(real, TABLE) == [], (at, fault)
    if method == "reserve":  # the caller retries without faults: still exactly one reservation
        made = _scenario(api, "reserve", target).reservation
        assert _scenario(api, "reserve", target).reservation == made
        listed = api.filter(pb.FilterRequest(query=pb.QueryRequest(resource_id="faulty"))).reservations
        assert len(listed) == CALLS[method] + 1 and made.id in {r.id for r in listed}


def test_the_call_counts_are_what_each_rpc_makes(dynamodb):
    api = default_api()
    store = api.service.store
    real = store.client
    for number, method in enumerate(CALLS):
        existing = api.reserve(pb.ReserveRequest(reservation=reservation(
            resource="faulty", start=number * 60, end=number * 60 + 30))).reservation
        counting = FaultyClient(real, at=0, fault="", after_apply=False)
        store.client = counting
        try:
            _scenario(api, method, str(uuid.uuid4()) if method == "reserve" else existing.id)
        finally:
            store.client = real
        assert counting.calls == CALLS[method], method
