"""Fuzzed requests against every route and both codecs: never a 5xx, always a Connect error body
with a fitting code, and a refused request writes nothing.

HYPOTHESIS_PROFILE=large (see docs/testing.md) runs ten times as many examples.
"""
import json
import struct

import botocore.exceptions
import botocore.session
import pytest
from chalice.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

import app
from chalicelib.api import METHODS
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.store import BY_RESOURCE, BY_USER
from harness.moto import ROOT, moto_table, scan_all
from tests.helpers import PATH
from tests.hypothesis_profiles import SCALE

CONNECT_CODES = {"canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
                 "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
                 "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"}
# what a caller's own bad input may get; internal/unavailable/unknown would mean we broke
CALLER_CODES = {"invalid_argument", "not_found", "failed_precondition", "already_exists", "unimplemented"}
# (a path outside /reservation.ReservationService/<method> is answered by API Gateway itself: 403)
METHOD_NAMES = sorted(METHODS) + ["nope", "Reserve", "reserve%00"]
CONTENT_TYPES = ["application/proto", "application/json", "application/connect+proto", "application/connect+json",
                 "text/plain", "application/json; charset=utf-8", ""]
# What must never reach a caller: AWS error text (botocore's exception names and phrasing, DynamoDB's
# error codes), the tables and indexes, the item layout, tracebacks and paths of our own code.
LEAK_MARKERS = sorted({
    "Traceback", 'File "', "botocore", "boto3", "moto", "An error occurred (", "when calling the", "amazonaws.com",
    "chalicelib", "site-packages", str(ROOT), "RSV#", "SLOT#", "REQ#", "USR#", BY_RESOURCE[0], BY_USER[0],
    "ValidationException", "AccessDeniedException", "UnrecognizedClientException",
    *(stage["environment_variables"]["RESERVATION_TABLE"]
      for stage in json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"].values()),
    "my-reservation-local",
    *(name for name, value in vars(botocore.exceptions).items()
      if isinstance(value, type) and value.__module__ == "botocore.exceptions"),
    *(shape.name for shape in botocore.session.get_session().get_service_model("dynamodb").error_shapes),
})


def leaks(message: str, sent: bytes) -> list:
    """The markers of internals in an error message, leaving out what the caller sent itself
    (an unknown field named "DYNAMODB" or an id "RSV#x" may well be echoed back)."""
    said, sent_text = message.lower(), sent.decode("utf-8", "replace").lower()
    return [marker for marker in LEAK_MARKERS if marker.lower() in said and marker.lower() not in sent_text]

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", "room-1", "\x00", "\u202e", "😀" * 40, "a" * 129, "a" * 5000, "RSV#x", "00000000-0000-4000-8000-000000000000"])
instants = st.integers(min_value=-2**63, max_value=2**63 - 1) | st.sampled_from(
    [-62135596800, -62135596801, 253402300799, 253402300800, 0, 1_795_000_000])
nanos = st.integers(min_value=-2**31, max_value=2**31 - 1) | st.sampled_from([0, 999_999_999, 1_000_000_000, -1])
timestamps = st.builds(lambda s, n: {"seconds": s, "nanos": n}, instants, nanos)
statuses = st.integers(min_value=-2**31, max_value=2**31 - 1) | st.sampled_from([0, 1, 2, 3, 4])
reservations = st.fixed_dictionaries({}, optional={
    "id": texts, "user_id": texts, "resource_id": texts, "note": texts, "status": statuses,
    "start": timestamps, "end": timestamps})
queries = st.fixed_dictionaries({}, optional={
    "user_id": texts, "resource_id": texts, "status": statuses, "start": timestamps, "end": timestamps,
    "page_size": st.integers(min_value=-2**31, max_value=2**31 - 1), "page_token": texts, "desc": st.booleans()})
MESSAGES = {
    "reserve": st.fixed_dictionaries({}, optional={"reservation": reservations, "request_id": texts}),
    "confirm": st.fixed_dictionaries({}, optional={"id": texts}),
    "cancel": st.fixed_dictionaries({}, optional={"id": texts}),
    "get": st.fixed_dictionaries({}, optional={"id": texts}),
    "update": st.fixed_dictionaries({}, optional={"id": texts, "status": statuses, "note": texts}),
    "Query": queries,
    "filter": st.fixed_dictionaries({}, optional={"query": queries}),
}


def _proto(method: str, fields: dict) -> bytes:
    message = METHODS[method].request_type()
    try:
        from google.protobuf import json_format
        json_format.ParseDict(fields, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, OverflowError):
        return b""
    return message.SerializeToString()


@st.composite
def requests(draw):
    """(method, content type, body): well-typed messages, mangled bytes and plain garbage."""
    method = draw(st.sampled_from(METHOD_NAMES))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    kind = draw(st.sampled_from(["message", "json", "bytes", "truncated"]))
    if method in MESSAGES and kind in ("message", "truncated"):
        body = _proto(method, draw(MESSAGES[method]))
        if kind == "truncated" and body:
            body = body[:draw(st.integers(min_value=0, max_value=len(body) - 1))]
    elif method in MESSAGES and kind == "json":
        body = json.dumps(draw(MESSAGES[method] | st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
            max_leaves=10)), default=str).encode()
    else:
        body = draw(st.binary(max_size=400))
    if content_type.startswith("application/connect") and draw(st.booleans()):
        body = struct.pack(">BI", draw(st.sampled_from([0, 1, 2, 255])), len(body)) + body
    return method, content_type, body


@pytest.fixture(scope="module")
def fuzz_client():
    with moto_table() as dynamodb:
        with Client(app.app) as client:
            yield client, dynamodb


@settings(max_examples=4000 * SCALE)
@given(requests())
def test_fuzzed_requests_get_connect_errors_and_write_nothing(fuzz_client, request_parts):
    client, dynamodb = fuzz_client
    method, content_type, body = request_parts
    before = scan_all(dynamodb)
    headers = {"content-type": content_type} if content_type else {}
    answer = client.http.post(PATH + method, headers=headers, body=body)
    assert answer.status_code < 500, (answer.status_code, answer.body[:300])
    if answer.headers.get("Content-Type", "").startswith("application/connect+"):
        _assert_stream_ends_properly(answer.body, method.encode() + body)
        return
    if answer.status_code == 200:
        return  # a well-formed call (e.g. a valid reserve, a get of a missing id is not 200)
    error = json.loads(answer.body)
    assert error["code"] in CALLER_CODES and isinstance(error["message"], str), error
    assert not leaks(error["message"], method.encode() + body), error
    assert scan_all(dynamodb) == before


def _assert_stream_ends_properly(body: bytes, sent: bytes):
    offset, end = 0, None
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        if flags & 0x02:
            end = json.loads(body[offset + 5:offset + 5 + length])
        offset += 5 + length
    assert offset == len(body) and end is not None
    if "error" in end:
        assert end["error"]["code"] in CALLER_CODES and not leaks(end["error"].get("message", ""), sent), end


@pytest.mark.parametrize("method", sorted(METHODS))
def test_random_bytes_on_every_route(fuzz_client, method):
    import random

    client, dynamodb = fuzz_client
    before = scan_all(dynamodb)
    generator = random.Random(method)
    for _ in range(300):
        body = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 200)))
        for content_type in ("application/proto", "application/json", "application/connect+proto"):
            answer = client.http.post(PATH + method, headers={"content-type": content_type}, body=body)
            assert answer.status_code < 500
    assert scan_all(dynamodb) == before or method == "reserve"


def test_a_valid_looking_request_can_still_be_made(fuzz_client):
    """The fuzz fixture is a working service: a proper reserve succeeds in it."""
    client, _ = fuzz_client
    request = pb.ReserveRequest(reservation=pb.Reservation(user_id="u", resource_id="fuzz-check",
                                                           start={"seconds": 10}, end={"seconds": 20}))
    answer = client.http.post(PATH + "reserve", headers={"content-type": "application/proto"},
                              body=request.SerializeToString())
    assert answer.status_code == 200


def test_the_leak_check_tells_internals_from_an_echo_of_the_caller(fuzz_client):
    """The clean run that once failed: the error echoes the caller's own unknown field name."""
    client, _ = fuzz_client
    body = b'{"DYNAMODB": null}'
    answer = client.http.post(PATH + "cancel", headers={"content-type": "application/json"}, body=body)
    error = json.loads(answer.body)
    assert error["code"] == "invalid_argument" and "DYNAMODB" in error["message"]
    assert leaks(error["message"], b"cancel" + body) == []
    aws = ("An error occurred (ConditionalCheckFailedException) when calling the TransactWriteItems operation: "
           "Transaction cancelled on table my-reservation-dev")
    assert {"ConditionalCheckFailedException", "my-reservation-dev", "An error occurred ("} <= set(leaks(aws, b""))
    assert leaks('Traceback (most recent call last):\n  File "/x/chalicelib/store.py"', b"") != []
    assert leaks("reservation RSV#abc not found", b'{"id": "abc"}') == ["RSV#"]
