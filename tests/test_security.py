"""Security properties of the code itself, shown on what actually reaches DynamoDB (moto).

Expressions are built in places (numbered placeholders for labels and pool cells), so "every expression
is a literal" no longer holds; instead every call the service makes is recorded, with caller values
chosen to look like expression syntax and like other items' keys.
"""

import re

import pytest

from chalicelib import validate
from chalicelib.api import CallContext
from chalicelib.errors import Code, ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Caller
from chalicelib.runtime import default_api
from harness.moto import TABLE
from ops import checker
from tests.test_checker import at, draft, workload

# every caller value carries MARK, which no expression of the code contains
MARK = "zq"
HOSTILE_RESOURCES = ["room) OR attribute_exists(pk) OR (#zq", "T#zq#RES#room", ":zq", "RSV#zq", "#zq.x"]
HOSTILE_USERS = [":zq OR size(note) > :n", "T#zq", "#zq"]
HOSTILE_LABELS = {"#zq": ":zq0", "zq.b": "x = :zq", "zq) OR (dk": "#zq0"}
EXPRESSION_SYNTAX = re.compile(r"[A-Za-z0-9_#:(),.<>= ]+")


class Recorder:
    """Every DynamoDB call's parameters, as the service passes them to botocore."""

    def __init__(self, client):
        self.client = client
        self.calls = []

    def __enter__(self):
        self.client.meta.events.register("provide-client-params.dynamodb", self._record)
        return self

    def __exit__(self, *exc):
        self.client.meta.events.unregister("provide-client-params.dynamodb", self._record)

    def _record(self, params, model, **_):
        self.calls.append((model.name, params))


def requests_of(params: dict):
    """Each single request of a call: itself, or each action of a transaction."""
    if "TransactItems" in params:
        for action in params["TransactItems"]:
            yield next(iter(action.values()))
    else:
        yield params


def hostile_workload(api, context: CallContext) -> None:
    for number, resource in enumerate(HOSTILE_RESOURCES):
        user = HOSTILE_USERS[number % len(HOSTILE_USERS)]
        api.define_resource(pb.DefineResourceRequest(resource=pb.Resource(id=resource, labels=HOSTILE_LABELS)), context)
        made = api.reserve(
            pb.ReserveRequest(
                reservation=draft(resource, 8, 9, user=user, note=") OR (zq"), request_id=":zq" + resource
            ),
            context,
        ).reservation
        api.get(pb.GetRequest(id=made.id), context)
        api.update(pb.UpdateRequest(id=made.id, note="#zq = :zq"), context)
        api.reschedule(pb.RescheduleRequest(id=made.id, start=at(10), end=at(11)), context)
        for query in (
            pb.QueryRequest(resource_id=resource, start=at(0)),
            pb.QueryRequest(user_id=user, start=at(0)),
            pb.QueryRequest(start=at(0)),
        ):
            api.filter(pb.FilterRequest(query=query), context)
        api.changes(pb.ChangesRequest(resource_id=resource), context)
        api.changes(pb.ChangesRequest(user_id=user), context)
    api.list_resources(pb.ListResourcesRequest(labels=HOSTILE_LABELS), context)
    api.availability(pb.AvailabilityRequest(labels=HOSTILE_LABELS, start=at(0), end=at(23)), context)
    api.find_slots(
        pb.FindSlotsRequest(resource_ids=HOSTILE_RESOURCES, start=at(0), end=at(23), duration={"seconds": 3600}),
        context,
    )


@pytest.fixture
def recorded(dynamodb):
    api = default_api()
    with Recorder(api.reservations.store.client) as recorder:
        hostile_workload(api, CallContext(Caller("t-1")))
        tenant_calls = list(recorder.calls)
        workload(api, "t-2")  # every other path: pools, holds, moves, capacity changes...
        api.reservations.sweep_expired()
    assert checker.check(dynamodb, TABLE) == []
    return {"all": recorder.calls, "t-1": tenant_calls}


def test_caller_values_never_become_expression_syntax(recorded):
    expressions = 0
    for operation, params in recorded["all"]:
        for request in requests_of(params):
            names = request.get("ExpressionAttributeNames", {})
            values = request.get("ExpressionAttributeValues", {})
            for field, expression in request.items():
                if not field.endswith("Expression"):
                    continue
                expressions += 1
                assert EXPRESSION_SYNTAX.fullmatch(expression), (operation, field, expression)
                assert MARK not in expression.lower(), (operation, field, expression)
                assert set(re.findall(r"#\w+", expression)) <= set(names), (operation, expression)
                assert set(re.findall(r":\w+", expression)) <= set(values), (operation, expression)
    assert expressions > 200


def test_a_tenants_calls_only_touch_its_own_keys(recorded):
    """Every key a call of tenant t-1 reads or writes is under T#t-1#; every index partition it asks is its own."""
    checked = []

    def check_pk(value: str, where):
        assert value.startswith("T#t-1#"), where
        checked.append(value)

    assert {operation for operation, _ in recorded["t-1"]} >= {"TransactWriteItems", "BatchGetItem", "GetItem", "Query"}
    for operation, params in recorded["t-1"]:
        for request in requests_of(params):
            for item in [request.get("Key"), request.get("Item")] + [
                key for table in request.get("RequestItems", {}).values() for key in table.get("Keys", [])
            ]:
                if item:
                    check_pk(item["pk"]["S"], (operation, item))
            condition = request.get("KeyConditionExpression")
            if condition:
                attribute, placeholder = re.match(r"(\w+) = (:\w+)", condition).groups()
                value = request["ExpressionAttributeValues"][placeholder]["S"]
                if attribute == "pk":
                    check_pk(value, (operation, condition))
                else:
                    assert value == "t-1" or value.startswith("t-1#"), (operation, condition, value)
    assert len(checked) > 100


def test_reservation_ids_cannot_name_other_items():
    """Reservation ids must be canonical UUIDs, so no id can address a booking, guard, user or request item."""
    for forged in (
        "x#RSV",
        "RES#room-1",
        "../RSV",
        "00000000-0000-4000-8000-000000000000#",
        " 0",
        "",
        "T#other#RSV#00000000-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-00000000000A",
    ):
        with pytest.raises(ServiceError) as raised:
            validate.reservation_id(forged)
        assert raised.value.code is Code.INVALID_ARGUMENT, forged
