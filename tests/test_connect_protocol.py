"""The Connect protocol as real clients and API Gateway use it, through the Chalice app."""
import base64
import gzip
import json

import pytest

import app
from chalicelib.connect import MAX_BODY_BYTES
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.store import DynamoStore
from harness.moto import TABLE, scan_all
from tests.helpers import PATH, reservation

RESERVE = pb.ReserveRequest(reservation=reservation())


def reserve_body(**fields) -> bytes:
    return pb.ReserveRequest(reservation=reservation(**fields)).SerializeToString()


def error_of(status_headers_body):
    status, headers, body = status_headers_body
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


@pytest.mark.parametrize("accept", [None, "*/*", "application/proto", "application/json"])
def test_binary_answers_whatever_the_accept_header(call, accept):
    headers = {"content-type": "application/proto"}
    if accept:
        headers["accept"] = accept
    status, answer_headers, body = call.raw("reserve", reserve_body(resource=f"r-{accept}"), headers)
    assert status == 200
    assert answer_headers["Content-Type"] == "application/proto"
    assert pb.ReserveResponse.FromString(body).reservation.id


def test_json_clients_without_accept_header(call):
    body = json.dumps({"reservation": {"userId": "u", "resourceId": "r", "start": "2026-12-01T10:00:00Z",
                                       "end": "2026-12-01T10:20:00.5Z"}}).encode()
    status, headers, answer = call.raw("reserve", body, {"content-type": "application/json; charset=utf-8"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    made = json.loads(answer)["reservation"]
    assert (made["start"], made["end"], made["status"]) == ("2026-12-01T10:00:00Z", "2026-12-01T10:20:00.500Z",
                                                           "PENDING")


def api_gateway_event(body: bytes, content_type="application/proto", base64_encoded=True) -> dict:
    """A REST API proxy event as API Gateway sends it when the body is a binary media type."""
    return {
        "resource": f"{PATH}{{method}}", "path": PATH + "reserve", "httpMethod": "POST",
        "headers": {"Content-Type": content_type, "Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"method": "reserve"}, "stageVariables": None,
        "requestContext": {"resourcePath": f"{PATH}{{method}}", "httpMethod": "POST", "stage": "api",
                           "identity": {"sourceIp": "10.0.0.1"}, "path": "/api" + PATH + "reserve"},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def test_api_gateway_proxy_event_with_base64_body(dynamodb):
    answer = app.app(api_gateway_event(reserve_body()), None)
    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is True
    made = pb.ReserveResponse.FromString(base64.b64decode(answer["body"])).reservation
    assert made.resource_id == "room-1"
    conflict = app.app(api_gateway_event(reserve_body(user="bob")), None)
    assert conflict["statusCode"] == 400
    assert json.loads(base64.b64decode(conflict["body"]))["code"] == "failed_precondition"


def test_api_gateway_json_event(dynamodb):
    body = json.dumps({"reservation": {"userId": "u", "resourceId": "r", "start": "2026-12-01T10:00:00Z",
                                       "end": "2026-12-01T11:00:00Z"}}).encode()
    answer = app.app(api_gateway_event(body, "application/json"), None)
    assert answer["statusCode"] == 200
    assert json.loads(base64.b64decode(answer["body"]))["reservation"]["resourceId"] == "r"


def test_gzip_both_ways(call):
    long_note = "n" * 3000
    body = gzip.compress(reserve_body(note=long_note))
    status, headers, answer = call.raw("reserve", body, {"content-type": "application/proto",
                                                         "content-encoding": "gzip", "accept-encoding": "gzip, br"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    made = pb.ReserveResponse.FromString(gzip.decompress(answer)).reservation
    assert made.note == long_note
    # small answers and clients that do not ask for gzip get identity
    status, headers, answer = call.raw("get", pb.GetRequest(id=made.id).SerializeToString(),
                                       {"content-type": "application/proto"})
    assert "Content-Encoding" not in headers
    assert pb.GetResponse.FromString(answer).reservation.note == long_note


def test_unsupported_compression_is_unimplemented(call, dynamodb):
    status, error = error_of(call.raw("reserve", reserve_body(), {"content-type": "application/proto",
                                                                  "content-encoding": "snappy"}))
    assert (status, error["code"]) == (501, "unimplemented")
    assert scan_all(dynamodb) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "", "application/connect+proto"])
def test_wrong_content_type_is_415(call, dynamodb, content_type):
    headers = {"content-type": content_type} if content_type else {}
    status, error = error_of(call.raw("reserve", reserve_body(), headers))
    assert status == 415 and error["code"] == "invalid_argument"
    assert "content-type" in error["message"]
    assert scan_all(dynamodb) == []


def test_unknown_method_is_404_unimplemented(call):
    status, error = error_of(call.raw("book", reserve_body(), {"content-type": "application/proto"}))
    assert (status, error["code"]) == (404, "unimplemented") and "book" in error["message"]


def test_other_http_methods_are_405(call):
    answer = call.client.http.get(PATH + "get")
    assert answer.status_code == 405 and json.loads(answer.body)["code"] == "unimplemented"
    assert answer.headers["Allow"] == "POST"


@pytest.mark.parametrize("content_type,body,expected", [
    ("application/proto", b"\xff\xff\xff\xff", "not valid protobuf"),
    ("application/proto", b"\x0a\x05\x12", "not valid protobuf"),
    ("application/json", b"{not json", "not valid JSON"),
    ("application/json", b'{"reservation": 5}', "not valid JSON"),
    ("application/json", b'{"reservaton": {}}', "not valid JSON"),
    ("application/json", b"\xff\xfe", "not valid JSON"),
    ("application/json", b"[]", "not valid JSON"),
])
def test_garbage_bodies_are_invalid_argument_and_write_nothing(call, dynamodb, content_type, body, expected):
    status, error = error_of(call.raw("reserve", body, {"content-type": content_type}))
    assert (status, error["code"]) == (400, "invalid_argument")
    assert error["message"].startswith("body: " + expected)
    assert scan_all(dynamodb) == []


def test_empty_body_is_an_empty_request(call, dynamodb):
    for content_type in ("application/proto", "application/json"):
        status, error = error_of(call.raw("reserve", b"", {"content-type": content_type}))
        assert (status, error["code"], error["message"]) == (400, "invalid_argument", "reservation: is required")
    assert scan_all(dynamodb) == []


def test_oversized_bodies_and_gzip_bombs_are_refused(call, dynamodb):
    huge = reserve_body(note="x" * (MAX_BODY_BYTES + 10))
    status, error = error_of(call.raw("reserve", huge, {"content-type": "application/proto"}))
    assert (status, error["code"]) == (400, "invalid_argument") and "limit" in error["message"]
    bomb = gzip.compress(b"\x00" * (50 * MAX_BODY_BYTES))
    assert len(bomb) < MAX_BODY_BYTES
    status, error = error_of(call.raw("reserve", bomb, {"content-type": "application/proto",
                                                        "content-encoding": "gzip"}))
    assert (status, error["code"]) == (400, "invalid_argument") and "limit" in error["message"]
    assert scan_all(dynamodb) == []


def test_unexpected_failures_are_internal_without_internals(call, monkeypatch):
    def broken(self, reservation_id):
        raise RuntimeError(f"table {self.table_name} exploded at line 42")

    monkeypatch.setattr(DynamoStore, "get", broken)
    status, error = error_of(call.raw("get", pb.GetRequest(id="0" * 8 + "-0000-4000-8000-" + "0" * 12)
                                      .SerializeToString(), {"content-type": "application/proto"}))
    assert (status, error) == (500, {"code": "internal", "message": "internal error"})


def test_dynamodb_errors_become_unavailable_without_aws_text(call, dynamodb):
    dynamodb.update_table(TableName=TABLE, DeletionProtectionEnabled=False)  # as infra/ deploys it: protected
    dynamodb.delete_table(TableName=TABLE)
    status, error = error_of(call.raw("reserve", reserve_body(), {"content-type": "application/proto"}))
    assert (status, error) == (503, {"code": "unavailable", "message": "storage is temporarily unavailable; retry"})
