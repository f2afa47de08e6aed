"""The consistency checker finds every kind of broken invariant, and nothing in a healthy table."""
import pytest

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from chalicelib.slots import slots_touched
from rsvp import checker
from harness.moto import TABLE
from tests.helpers import reservation

DAY = 24 * 60


@pytest.fixture
def table(dynamodb):
    """A healthy table: reservations long and short, a confirmed one, a request id, a cancellation."""
    api = default_api()
    made = [api.reserve(pb.ReserveRequest(reservation=reservation(start=n * 60, end=n * 60 + 30))).reservation
            for n in range(3)]
    made.append(api.reserve(pb.ReserveRequest(reservation=reservation(resource="hall", user="bob", start=0,
                                                                      end=20 * DAY), request_id="r-1")).reservation)
    api.confirm(pb.ConfirmRequest(id=made[0].id))
    api.cancel(pb.CancelRequest(id=made[1].id))
    return {"client": dynamodb, "made": made}


def key(reservation_id: str) -> dict:
    return {"pk": {"S": f"RSV#{reservation_id}"}, "sk": {"S": "RSV"}}


def test_a_healthy_table_has_no_problems(table):
    assert checker.check(table["client"], TABLE) == []
    assert checker.main(["--table", TABLE]) == 0


def only(kind: str, problems: list) -> list:
    assert problems, "the checker found nothing"
    assert all(problem.startswith(kind) for problem in problems), problems
    return problems


def test_overlap_is_reported(table):
    client, first = table["client"], table["made"][0]
    item = client.get_item(TableName=TABLE, Key=key(first.id))["Item"]
    item.update(key("00000000-0000-4000-8000-000000000000"), id={"S": "00000000-0000-4000-8000-000000000000"},
                start_key={"S": item["start_key"]["S"].split("#")[0] + "#00000000-0000-4000-8000-000000000000"})
    client.put_item(TableName=TABLE, Item=item)  # a second reservation on the same window, without claims
    problems = checker.check(client, TABLE)
    assert any(p.startswith("overlap:") and first.id in p for p in problems)
    assert any(p.startswith("missing claim:") for p in problems)
    assert checker.main(["--table", TABLE]) == 1


def test_orphan_claims_are_reported(table):
    client, gone = table["client"], table["made"][3]
    client.delete_item(TableName=TABLE, Key=key(gone.id))
    problems = only("orphan claim:", checker.check(client, TABLE))
    touched = slots_touched(gone.start.ToNanoseconds(), gone.end.ToNanoseconds())
    assert len(problems) == len(touched) >= 5 and all(gone.id in p for p in problems)  # 20 days: 5 or 6 slots


def test_missing_claims_are_reported(table):
    client, long_one = table["client"], table["made"][3]
    slot = next(i for i in client.scan(TableName=TABLE)["Items"]
                if i["pk"]["S"] == "RES#hall" and long_one.id in i["claims"]["M"])
    client.update_item(TableName=TABLE, Key={"pk": slot["pk"], "sk": slot["sk"]}, UpdateExpression="REMOVE claims.#r",
                       ExpressionAttributeNames={"#r": long_one.id})
    assert only("missing claim:", checker.check(client, TABLE))


def test_index_disagreement_is_reported(table):
    client, first = table["client"], table["made"][0]
    client.update_item(TableName=TABLE, Key=key(first.id), UpdateExpression="SET start_key = :k",
                       ExpressionAttributeValues={":k": {"S": "000#" + first.id}})
    assert only("index:", checker.check(client, TABLE))
    client.update_item(TableName=TABLE, Key=key(first.id), UpdateExpression="REMOVE start_key")
    problems = only("index:", checker.check(client, TABLE))
    assert any(f"by_resource does not return reservation {first.id}" in p for p in problems)
    client.update_item(TableName=TABLE, Key=key(first.id), UpdateExpression="REMOVE user_id")
    assert any(p.startswith("unreadable reservation item") for p in checker.check(client, TABLE))


def test_short_lookback_is_reported(table):
    client = table["client"]
    client.update_item(TableName=TABLE, Key={"pk": {"S": "USR#bob"}, "sk": {"S": "USR"}},
                       UpdateExpression="SET longest = :one", ExpressionAttributeValues={":one": {"N": "1"}})
    assert only("short lookback:", checker.check(client, TABLE))


def test_bad_request_records_are_reported(table):
    client = table["client"]
    client.update_item(TableName=TABLE, Key={"pk": {"S": "REQ#r-1"}, "sk": {"S": "REQ"}},
                       UpdateExpression="SET reservation.#s = :s", ExpressionAttributeNames={"#s": "start"},
                       ExpressionAttributeValues={":s": {"N": "5"}})
    assert only("bad request record", checker.check(client, TABLE))
    client.update_item(TableName=TABLE, Key={"pk": {"S": "REQ#r-1"}, "sk": {"S": "REQ"}},
                       UpdateExpression="REMOVE reservation")
    assert only("bad request record", checker.check(client, TABLE))
