"""The Connect protocol as real clients and API Gateway use it, through the Chalice app on moto.

Also what of issue 12 only the HTTP stack shows: strict JSON, the tenancy headers, page tokens signed
with the deployment's key but carrying no position, small conflicts, failures without internals, and
the attack sequence with two tenants and two users."""

import base64
import gzip
import hashlib
import hmac
import json
import struct

import pytest
from botocore.exceptions import ClientError

import app
from chalicelib import connect, paging
from chalicelib.connect import MAX_BODY_BYTES
from chalicelib.dynamo import DynamoStore
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from harness import bulk
from harness.moto import TABLE, scan_all
from tests.helpers import BASE_TIME, PATH, encode, reservation

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
    body = json.dumps(
        {
            "reservation": {
                "userId": "u",
                "resourceId": "r",
                "start": "2026-12-01T10:00:00Z",
                "end": "2026-12-01T10:20:00.5Z",
            }
        }
    ).encode()
    status, headers, answer = call.raw("reserve", body, {"content-type": "application/json; charset=utf-8"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    made = json.loads(answer)["reservation"]
    assert (made["start"], made["end"], made["status"]) == (
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:20:00.500Z",
        "PENDING",
    )


def api_gateway_event(body: bytes, content_type="application/proto", base64_encoded=True) -> dict:
    """A REST API proxy event as API Gateway sends it when the body is a binary media type."""
    return {
        "resource": f"{PATH}{{method}}",
        "path": PATH + "reserve",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type, "Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"method": "reserve"},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": f"{PATH}{{method}}",
            "httpMethod": "POST",
            "stage": "api",
            "identity": {"sourceIp": "10.0.0.1"},
            "path": "/api" + PATH + "reserve",
        },
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
    body = json.dumps(
        {
            "reservation": {
                "userId": "u",
                "resourceId": "r",
                "start": "2026-12-01T10:00:00Z",
                "end": "2026-12-01T11:00:00Z",
            }
        }
    ).encode()
    answer = app.app(api_gateway_event(body, "application/json"), None)
    assert answer["statusCode"] == 200
    assert json.loads(base64.b64decode(answer["body"]))["reservation"]["resourceId"] == "r"


def test_gzip_both_ways(call):
    long_note = "n" * 3000
    body = gzip.compress(reserve_body(note=long_note))
    status, headers, answer = call.raw(
        "reserve",
        body,
        {"content-type": "application/proto", "content-encoding": "gzip", "accept-encoding": "gzip, br"},
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    made = pb.ReserveResponse.FromString(gzip.decompress(answer)).reservation
    assert made.note == long_note
    # small answers and clients that do not ask for gzip get identity
    status, headers, answer = call.raw(
        "get", pb.GetRequest(id=made.id).SerializeToString(), {"content-type": "application/proto"}
    )
    assert "Content-Encoding" not in headers
    assert pb.GetResponse.FromString(answer).reservation.note == long_note


def test_unsupported_compression_is_unimplemented(call, dynamodb):
    status, error = error_of(
        call.raw("reserve", reserve_body(), {"content-type": "application/proto", "content-encoding": "snappy"})
    )
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


@pytest.mark.parametrize(
    "content_type,body,expected",
    [
        ("application/proto", b"\xff\xff\xff\xff", "not valid protobuf"),
        ("application/proto", b"\x0a\x05\x12", "not valid protobuf"),
        ("application/json", b"{not json", "not valid JSON"),
        ("application/json", b'{"reservation": 5}', "not valid JSON"),
        ("application/json", b'{"reservaton": {}}', "not valid JSON"),
        ("application/json", b"\xff\xfe", "JSON must be UTF-8"),
        ("application/json", b"[]", "not valid JSON"),
    ],
)
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
    status, error = error_of(
        call.raw("reserve", bomb, {"content-type": "application/proto", "content-encoding": "gzip"})
    )
    assert (status, error["code"]) == (400, "invalid_argument") and "limit" in error["message"]
    assert scan_all(dynamodb) == []


def test_unexpected_failures_are_internal_without_internals(call, monkeypatch):
    def broken(self, tenant, reservation_id):
        raise RuntimeError(f"table {self.table_name} exploded at line 42")

    monkeypatch.setattr(DynamoStore, "get", broken)
    status, error = error_of(
        call.raw(
            "get",
            pb.GetRequest(id="0" * 8 + "-0000-4000-8000-" + "0" * 12).SerializeToString(),
            {"content-type": "application/proto"},
        )
    )
    assert (status, error) == (500, {"code": "internal", "message": "internal error"})


def test_dynamodb_errors_become_unavailable_without_aws_text(call, dynamodb):
    dynamodb.update_table(TableName=TABLE, DeletionProtectionEnabled=False)  # as infra/ deploys it: protected
    dynamodb.delete_table(TableName=TABLE)
    status, error = error_of(call.raw("reserve", reserve_body(), {"content-type": "application/proto"}))
    assert (status, error) == (503, {"code": "unavailable", "message": "storage is temporarily unavailable; retry"})


# ---- issue 12: what only the HTTP stack shows (the rules themselves: tests/unit) -----------------------

JSON_HEADERS = {"content-type": "application/json"}
WINDOW = {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}
FOREIGN_ID = "00000000-0000-4000-8000-000000000000"


def json_call(call, method: str, document, headers=None):
    """(status, answer document) of a unary Connect JSON call through the Chalice app."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    status, _, answer = call.raw(method, body, {**JSON_HEADERS, **(headers or {})})
    return status, json.loads(answer)


def stream_body(document) -> bytes:
    payload = document if isinstance(document, bytes) else json.dumps(document).encode()
    return struct.pack(">BI", 0, len(payload)) + payload


def read_stream(body: bytes) -> tuple:
    """(messages, end-of-stream document) of a Connect JSON server stream."""
    messages, end, offset = [], None, 0
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        chunk = json.loads(body[offset + 5 : offset + 5 + length])
        offset += 5 + length
        if flags & 0x02:
            end = chunk
        else:
            messages.append(chunk)
    assert end is not None
    return messages, end


def json_stream(call, method: str, document, headers=None) -> tuple:
    status, answer_headers, body = call.raw(
        method, stream_body(document), {"content-type": "application/connect+json", **(headers or {})}
    )
    assert status == 200 and answer_headers["Content-Type"] == "application/connect+json"
    return read_stream(body)


class Direct:
    """Connect calls through chalicelib.connect.handle, with the tenant header that only the local
    server trusts (TENANT_SOURCE=header). chalice.test.Client would put the dev stage's
    TENANT_SOURCE=default back for every request; handle() is what both the Chalice route and the
    local server call."""

    def __call__(self, method: str, document, tenant: str = "", acting: str = "") -> tuple:
        answer = connect.handle(
            default_api(),
            method,
            "POST",
            self._headers("application/json", tenant, acting),
            json.dumps(document).encode(),
        )
        return answer.status, json.loads(answer.body)

    def stream(self, method: str, document, tenant: str = "") -> tuple:
        answer = connect.handle(
            default_api(), method, "POST", self._headers("application/connect+json", tenant, ""), stream_body(document)
        )
        assert answer.status == 200
        return read_stream(answer.body)

    @staticmethod
    def _headers(content_type: str, tenant: str, acting: str) -> dict:
        headers = {"content-type": content_type}
        if tenant:
            headers["x-tenant-id"] = tenant
        if acting:
            headers["x-acting-user"] = acting
        return headers


@pytest.fixture
def direct(dynamodb, monkeypatch):
    monkeypatch.setenv("TENANT_SOURCE", "header")
    return Direct()


def booking(user="u", resource="room-1", **extra) -> dict:
    return {"reservation": {"userId": user, "resourceId": resource, **WINDOW, **extra}}


# strict JSON


@pytest.mark.parametrize(
    "method,body,problem",
    [
        (
            "reserve",
            b'{"reservation": {"user_id": "u", "userId": "v", "resourceId": "r", "start": "2026-12-01T10:00:00Z",'
            b' "end": "2026-12-01T11:00:00Z"}}',
            "reservation.user_id given twice",
        ),
        (
            "reserve",
            b'{"reservation": {"userId": "u", "resourceId": "r", "start": "2026-12-01T10:00:00Z",'
            b' "end": "2026-12-01T11:00:00Z"}, "request_id": "a", "requestId": "a"}',
            "request_id given twice",
        ),
        ("filter", b'{"query": {"resourceId": "r", "resource_id": "r"}}', "query.resource_id given twice"),
        ("get", b'{"id": "' + FOREIGN_ID.encode() + b'", "id": "' + FOREIGN_ID.encode() + b'"}', "'id' given twice"),
        ("update", b'{"id": "' + FOREIGN_ID.encode() + b'", "status": "2"}', "status: '2' is not a value"),
        (
            "reserve",
            b'{"reservation": {"userId": "u", "resourceId": "r", "status": "1", "start": "2026-12-01T10:00:00Z",'
            b' "end": "2026-12-01T11:00:00Z"}}',
            "reservation.status: '1' is not a value",
        ),
        ("filter", b'{"query": {"status": "3"}}', "query.status: '3' is not a value"),
    ],
)
def test_lenient_json_is_invalid_argument_and_writes_nothing(call, dynamodb, method, body, problem):
    status, error = json_call(call, method, body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert problem in error["message"]
    assert scan_all(dynamodb) == []


def test_enums_by_name_or_number_are_still_accepted(call):
    for number, status in enumerate(("PENDING", 2, "BLOCKED"), start=1):
        answer = json_call(call, "reserve", booking(resource=f"r{number}", status=status))
        assert answer[0] == 200 and answer[1]["reservation"]["status"] in ("PENDING", "CONFIRMED", "BLOCKED")


def test_lenient_json_in_a_stream_ends_it_with_invalid_argument(call):
    messages, end = json_stream(call, "Query", b'{"userId": "a", "user_id": "a"}')
    assert messages == [] and end["error"]["code"] == "invalid_argument"
    assert "user_id given twice" in end["error"]["message"]


@pytest.mark.parametrize(
    "encoding,content_type",
    [
        ("utf-16", "application/json"),
        ("utf-16-le", "application/json"),
        ("utf-16-be", "application/json"),
        ("utf-32", "application/json"),
        ("latin-1", "application/json"),
        ("cp1252", "application/json"),
        ("utf-16", "application/json; charset=utf-16"),
    ],
)
def test_json_that_is_not_utf8_is_invalid_argument(call, dynamodb, encoding, content_type):
    text = json.dumps(booking(user="zoë", note="café"), ensure_ascii=False)
    status, _, body = call.raw("reserve", text.encode(encoding), {"content-type": content_type})
    error = json.loads(body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert scan_all(dynamodb) == []
    assert json_call(call, "reserve", text.encode())[0] == 200  # the same document in UTF-8 is fine


# who calls: tenant and acting user


def test_x_tenant_id_selects_the_tenant(direct):
    made = {}
    for tenant in ("team-a", "team-b", ""):  # "": no header, the default tenant of the seed and old data
        status, answer = direct("reserve", booking(), tenant=tenant)
        assert status == 200, answer
        made[tenant] = answer["reservation"]["id"]
    for tenant, own in made.items():
        status, page = direct("filter", {"query": {"resourceId": "room-1"}}, tenant=tenant)
        assert [r["id"] for r in page["reservations"]] == [own]
        assert direct("get", {"id": own}, tenant=tenant)[0] == 200
        for other in set(made.values()) - {own}:
            assert direct("get", {"id": other}, tenant=tenant) == (
                404,
                {"code": "not_found", "message": f"reservation {other} not found"},
            )


@pytest.mark.parametrize(
    "tenant", ["Team-A", "team#a", "-team", "_team", "a" * 64, "équipe", "team a", "T#x#RES#room-1", "team/a", "team.a"]
)
def test_a_malformed_tenant_id_is_invalid_argument(direct, dynamodb, tenant):
    status, error = direct("reserve", booking(), tenant=tenant)
    assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("x-tenant-id")
    assert scan_all(dynamodb) == []


def test_naming_a_tenant_where_tenants_do_not_come_from_headers_is_permission_denied(call, dynamodb):
    """The dev stage (TENANT_SOURCE=default, as chalice.test.Client applies it) serves the default tenant only."""
    for method, document in (
        ("reserve", booking()),
        ("get", {"id": FOREIGN_ID}),
        ("filter", {"query": {}}),
        ("list_resources", {}),
    ):
        status, error = json_call(call, method, document, {"x-tenant-id": "team-a"})
        assert (status, error["code"]) == (403, "permission_denied"), (method, error)
    assert scan_all(dynamodb) == []
    assert json_call(call, "reserve", booking())[0] == 200


def test_x_acting_user_limits_changes_to_that_user(call):
    alice = {"x-acting-user": "alice"}
    bobs = json_call(call, "reserve", booking(user="bob"))[1]["reservation"]
    status, error = json_call(call, "reserve", booking(user="bob", resource="room-2"), alice)
    assert (status, error["code"]) == (403, "permission_denied")
    for method, document in (
        ("update", {"id": bobs["id"], "note": "mine now"}),
        ("confirm", {"id": bobs["id"]}),
        ("cancel", {"id": bobs["id"]}),
        ("reschedule", {"id": bobs["id"], "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"}),
    ):
        status, error = json_call(call, method, document, alice)
        assert (status, error["code"]) == (403, "permission_denied"), (method, error)
    assert json_call(call, "get", {"id": bobs["id"]}) == (200, {"reservation": bobs})
    status, own = json_call(call, "reserve", booking(user="alice", resource="room-2"), alice)
    assert status == 200
    for method, document in (
        ("update", {"id": own["reservation"]["id"], "note": "ok"}),
        ("confirm", {"id": own["reservation"]["id"]}),
        (
            "reschedule",
            {"id": own["reservation"]["id"], "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T11:00:00Z"},
        ),
        ("cancel", {"id": own["reservation"]["id"]}),
    ):
        assert json_call(call, method, document, alice)[0] == 200, method
    for malformed in (" alice", "alice\n", "a" * 129, "ａlice"):
        status, error = json_call(call, "reserve", booking(user=malformed.strip()), {"x-acting-user": malformed})
        assert (status, error["code"]) == (400, "invalid_argument") and error["message"].startswith("x-acting-user")


# page tokens signed with the deployment's key but carrying no position


def signed(payload: bytes) -> str:
    """A token as chalicelib.paging makes them (16 bytes of HMAC-SHA256, then the payload), with its key."""
    mac = hmac.new(paging._key(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def payload_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))[16:]


# (method, request with the token, where the token is refused, streams?)
TOKEN_CALLS = {
    "filter": (lambda token: {"query": {"resourceId": "room-1", "pageSize": 1, "pageToken": token}}, "page_token"),
    "Query": (lambda token: {"resourceId": "room-1", "pageSize": 1, "pageToken": token}, "page_token"),
    "list_resources": (lambda token: {"pageSize": 1, "pageToken": token}, "page_token"),
    "find_slots": (
        lambda token: {"resourceIds": ["room-1"], **WINDOW, "duration": "600s", "limit": 1, "pageToken": token},
        "page_token",
    ),
    "changes": (lambda token: {"resourceId": "room-1", "pageSize": 1, "after": token}, "after"),
    "listen": (lambda token: {"resourceId": "room-1", "after": token}, "after"),
}
STREAMS = {"Query", "listen"}


def token_call(call, method: str, token: str) -> tuple:
    """(status or 200 of a stream, the error document or None, the answer) of a call carrying `token`."""
    request, _ = TOKEN_CALLS[method]
    if method in STREAMS:
        messages, end = json_stream(call, method, request(token))
        return (200, end.get("error"), (messages, end))
    status, answer = json_call(call, method, request(token))
    return status, (answer if status != 200 else None), answer


@pytest.fixture
def paged(call):
    """Two reservations and two resources: every paged call has a second page, hence a genuine token."""
    for resource in ("room-1", "room-2"):
        assert json_call(call, "define_resource", {"resource": {"id": resource}})[0] == 200
    for hour in (8, 9):
        assert (
            json_call(
                call,
                "reserve",
                {
                    "reservation": {
                        "userId": "u",
                        "resourceId": "room-1",
                        "start": f"2026-12-01T0{hour}:00:00Z",
                        "end": f"2026-12-01T0{hour}:30:00Z",
                    }
                },
            )[0]
            == 200
        )
    return call


def genuine_token(call, method: str) -> str:
    _status, _, answer = token_call(call, method, "")
    if method == "Query":
        return answer[1]["metadata"]["next-page-token"][0]
    return answer.get("nextPageToken") or answer.get("cursor")


@pytest.mark.parametrize("method", [m for m in TOKEN_CALLS if m != "listen"])
def test_a_token_re_signed_with_the_key_is_accepted(paged, method):
    """The control of the next tests: tokens built here are what the service makes."""
    token = genuine_token(paged, method)
    assert token and signed(payload_of(token)) == token
    status, error, _ = token_call(paged, method, token)
    assert (status, error) == (200, None)


NOT_POSITIONS = [
    b"5",
    b"[1, 2]",
    b"not json",
    b"",
    b'"p"',
    b"null",
    b"{}",
    b'{"p": 5, "q": "x"}',
    b'{"p": ["a"], "q": "x"}',
    b'{"p": "a", "q": 7}',
    b"\xff\xfe{",
]


@pytest.mark.parametrize("method", list(TOKEN_CALLS))
def test_a_signed_token_whose_payload_is_not_a_position_is_invalid_argument(paged, method):
    for payload in NOT_POSITIONS:
        status, error, _ = token_call(paged, method, signed(payload))
        assert error is not None and error["code"] == "invalid_argument", (payload, status, error)
        assert status in (200, 400) and error["message"].startswith(TOKEN_CALLS[method][1])


@pytest.mark.parametrize("method", [m for m in TOKEN_CALLS if m != "listen"])
def test_a_signed_token_of_the_right_query_whose_position_is_garbage_is_invalid_argument(paged, method):
    """Issue 12: "any malformed token is invalid_argument, never 500", also one signed with the deployment's
    key (the issue's prod stage once signed with a built-in key). `changes` and `find_slots` answered 500 here
    (int() of the position) until chalicelib.paging checked a position's shape."""
    fields = json.loads(payload_of(genuine_token(paged, method)))
    answers = {}
    for position in ("garbage", "", "#", "-1#x", "99999999999999999999999999#x", "1" * 21 + "#"):
        status, error, _ = token_call(paged, method, signed(json.dumps({**fields, "p": position}).encode()))
        answers[position] = (status, error and error["code"])
    if method == "list_resources":  # its position is a resource id: any text is one
        assert all(status == 200 for status, _ in answers.values()), answers
    else:
        assert set(answers.values()) <= {(400, "invalid_argument"), (200, "invalid_argument")}, answers


# conflicts stay small, failures tell nothing of the insides


def test_a_conflict_over_60_reservations_lists_10_and_counts_all(call, dynamodb):
    start = int(BASE_TIME.timestamp()) * 10**9
    bulk.load(dynamodb, TABLE, bulk.items_of(bulk.back_to_back("room-1", 60, start, 60 * 10**9, users=7)))
    for codec in ("proto", "json"):
        wanted = pb.ReserveRequest(reservation=reservation(start=-5, end=65))
        status, _headers, body = call.raw("reserve", encode(wanted, codec), {"content-type": f"application/{codec}"})
        error = json.loads(body)
        assert (status, error["code"]) == (400, "failed_precondition")
        (detail,) = error["details"]
        value = detail["value"] + "=" * (-len(detail["value"]) % 4)
        conflict = pb.ReservationConflict.FromString(base64.b64decode(value))
        assert (len(conflict.conflicts), conflict.total) == (10, 60)
        assert [c.start.ToSeconds() for c in conflict.conflicts] == [start // 10**9 + 60 * n for n in range(10)]
        assert error["message"].endswith("and 50 more") and error["message"].count("[") == 10
        assert len(body) < 4096


FAILURES = {
    "table gone": None,
    "access denied": (
        "AccessDeniedException",
        f"User: arn:aws:sts::123456789012:assumed-role/my-reservation-dev/x "
        f"is not authorized to perform: dynamodb:Query on resource: "
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
    ),
    "throttled": ("ProvisionedThroughputExceededException", f"Throughput exceeded for table {TABLE}"),
}
EVERY_CALL = {
    "reserve": booking(),
    "get": {"id": FOREIGN_ID},
    "confirm": {"id": FOREIGN_ID},
    "update": {"id": FOREIGN_ID, "note": "n"},
    "cancel": {"id": FOREIGN_ID},
    "reschedule": {"id": FOREIGN_ID, **WINDOW},
    "filter": {"query": {"resourceId": "room-1"}},
    "Query": {},
    "define_resource": {"resource": {"id": "room-1"}},
    "get_resource": {"id": "room-1"},
    "list_resources": {"labels": {"a": "b"}},
    "delete_resource": {"id": "room-1"},
    "availability": {"resourceIds": ["room-1"], **WINDOW},
    "find_slots": {"labels": {"a": "b"}, **WINDOW, "duration": "600s"},
    "changes": {},
    "listen": {"userId": "u"},
}


class Failing:
    """A DynamoDB client whose every call fails as AWS answers it."""

    def __init__(self, client, code: str, message: str):
        self.exceptions = client.exceptions
        self.error = ClientError({"Error": {"Code": code, "Message": message}}, "Query")

    def __getattr__(self, name):
        def call(**arguments):
            raise self.error

        return call


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_dynamodb_failure_never_leaks_table_names_or_aws_text(call, dynamodb, monkeypatch, failure):
    if FAILURES[failure] is None:
        dynamodb.update_table(TableName=TABLE, DeletionProtectionEnabled=False)
        dynamodb.delete_table(TableName=TABLE)
    else:
        monkeypatch.setattr(default_api().reservations.store, "client", Failing(dynamodb, *FAILURES[failure]))
    unavailable = {"code": "unavailable", "message": "storage is temporarily unavailable; retry"}
    for method, document in EVERY_CALL.items():
        if method in STREAMS:
            messages, end = json_stream(call, method, document)
            assert (messages, end) == ([], {"error": unavailable}), method
        else:
            assert json_call(call, method, document) == (503, unavailable), method


# the attack of issue 12, over HTTP: two tenants, two users


def test_the_attack_sequence_of_issue_12_sees_nothing_of_the_victim(direct):
    victim, attacker = "team-a", "team-b"
    secret_note = "board meeting: the merger"
    assert direct("define_resource", {"resource": {"id": "room-1", "labels": {"floor": "3"}}}, victim)[0] == 200
    status, made = direct("reserve", {**booking(user="alice", note=secret_note), "requestId": "req-1"}, victim)
    assert status == 200
    secret = made["reservation"]
    seen = []  # every answer the attacker gets

    def attack(method, document, acting=""):
        status, answer = direct(method, document, attacker, acting)
        seen.append(answer)
        return status, answer

    # the same resource id, window and request id are the attacker's own: no conflict, no replay
    status, own = attack("reserve", {**booking(user="mallory"), "requestId": "req-1"})
    assert status == 200 and own["reservation"]["id"] != secret["id"]
    status, conflict = attack("reserve", booking(user="mallory", resource="room-1"))
    assert status == 400 and conflict["code"] == "failed_precondition"
    assert own["reservation"]["id"] in conflict["message"]
    # the victim's id, learned elsewhere, is as unknown as an id nobody ever made
    for method, document in (
        ("get", {"id": "{}"}),
        ("update", {"id": "{}", "status": "BLOCKED", "note": "x"}),
        ("confirm", {"id": "{}"}),
        ("cancel", {"id": "{}"}),
        ("reschedule", {"id": "{}", "start": "2026-12-01T12:00:00Z", "end": "2026-12-01T13:00:00Z"}),
    ):
        ask = {key: value.format(secret["id"]) if value == "{}" else value for key, value in document.items()}
        unknown = {key: value.format(FOREIGN_ID) if value == "{}" else value for key, value in document.items()}
        answer = attack(method, ask)
        assert answer == (404, {"code": "not_found", "message": f"reservation {secret['id']} not found"}), method
        assert direct(method, unknown, attacker) == (
            404,
            {"code": "not_found", "message": f"reservation {FOREIGN_ID} not found"},
        )
    # listing, feeds, resources and free time show the attacker's own data only
    for query in ({}, {"userId": "alice"}, {"resourceId": "room-1"}):
        status, page = attack("filter", {"query": query})
        assert status == 200 and [r["id"] for r in page.get("reservations", [])] in ([], [own["reservation"]["id"]])
    messages, end = direct.stream("Query", {}, attacker)
    seen.append(messages)
    assert [m["id"] for m in messages] == [own["reservation"]["id"]] and "error" not in end
    for scope in ({}, {"userId": "alice"}, {"resourceId": "room-1"}):
        status, page = attack("changes", scope)
        assert status == 200
        assert {e["reservation"]["id"] for e in page.get("events", []) if "reservation" in e} <= {
            own["reservation"]["id"]
        }
    assert attack("list_resources", {}) == (200, {})
    assert attack("list_resources", {"labels": {"floor": "3"}}) == (200, {})
    assert attack("get_resource", {"id": "room-1"})[0] == 404
    status, free = attack(
        "availability", {"resourceIds": ["room-1"], "start": "2026-12-01T11:00:00Z", "end": "2026-12-01T12:00:00Z"}
    )
    assert status == 200 and "busy" not in free["resources"][0]
    # a second user of the victim's own tenant, acting for itself, cannot change or cancel it either
    for method, document in (("update", {"id": secret["id"], "note": "x"}), ("cancel", {"id": secret["id"]})):
        assert direct(method, document, victim, acting="mallory")[1]["code"] == "permission_denied"
    # nothing of the victim in anything the attacker saw, and the victim's reservation is as it was
    transcript = json.dumps(seen)
    assert secret_note not in transcript and "alice" not in transcript.replace('"userId": "alice"', "")
    assert direct("get", {"id": secret["id"]}, victim) == (200, {"reservation": secret})
    assert [r["id"] for r in direct("filter", {"query": {}}, victim)[1]["reservations"]] == [secret["id"]]
