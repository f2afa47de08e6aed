"""Fuzzed requests against all 16 RPCs, both codecs, unary and streaming: never a 5xx, always a
Connect error with a caller's code and no internals, and a refused request writes nothing.

Requests are drawn from the request messages' descriptors (every field of every RPC, nested
messages, maps, enums, out-of-range Timestamps and Durations), then sent as protobuf, as JSON
(mutated: a field given twice under one or both of its names, an enum as a numeric string, a value
of the wrong type, an unknown field), truncated, or as plain garbage. Page tokens and cursors come
from real answers (as they are, truncated, a character changed), from random bytes, and re-signed
with the deployment's key around garbage (a payload that is not JSON, a position that is not a
string, the right query's digest around a position the service never makes).

About 3,000 drawn requests, 2,400 of random bytes and 300 forged tokens in the ci profile;
HYPOTHESIS_PROFILE=large (see docs/testing.md) runs ten times as many.
"""

import base64
import hashlib
import hmac
import json
import random
import struct

import botocore.exceptions
import botocore.session
import pytest
from chalice.test import Client
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

import app
from chalicelib import api as api_module
from chalicelib import connect, layout, paging
from chalicelib.api import METHODS
from chalicelib.availability import SLOT_POSITION
from chalicelib.feed import _digest as feed_digest
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Status
from chalicelib.ports import Scope
from chalicelib.query import QuerySpec
from chalicelib.runtime import default_api
from harness.moto import LOCAL_ENVIRONMENT, ROOT, moto_table, scan_all
from tests.helpers import PATH, stamp
from tests.hypothesis_profiles import SCALE

# what a caller's own bad input may get; internal/unavailable/unknown would mean we broke
CALLER_CODES = {
    "invalid_argument",
    "not_found",
    "failed_precondition",
    "already_exists",
    "unimplemented",
    "out_of_range",
    "permission_denied",
}
STREAMING = sorted(name for name, method in METHODS.items() if method.server_streaming)
METHOD_NAMES = [*sorted(METHODS), "nope", "Reserve", "reserve%00"]
UNARY_TYPES = ["application/proto", "application/json", "application/json; charset=utf-8"]
STREAM_TYPES = ["application/connect+proto", "application/connect+json"]
OTHER_TYPES = ["text/plain", "application/grpc", ""]
TOKEN_FIELDS = ("page_token", "after")
SECRET = LOCAL_ENVIRONMENT["PAGE_TOKEN_SECRET"]
# What must never reach a caller: AWS error text (botocore's exception names and phrasing, DynamoDB's
# error codes and request words), the tables, indexes and item keys, the page-token key, tracebacks
# and paths of our own code.
LEAK_MARKERS = sorted(
    {
        "Traceback",
        'File "',
        "botocore",
        "boto3",
        "moto",
        "An error occurred (",
        "when calling the",
        "amazonaws.com",
        "chalicelib",
        "site-packages",
        str(ROOT),
        "RSV#",
        "RES#",
        "REQ#",
        "USR#",
        "EVR#",
        "TEN#",
        "G#000",
        "B#000",
        layout.BY_USER,
        layout.BY_TENANT,
        layout.EVENTS_BY_USER,
        layout.EVENTS_BY_TENANT,
        "start_key",
        "hexp",
        "ConditionExpression",
        "TransactItems",
        "CancellationReasons",
        "LastEvaluatedKey",
        "ExclusiveStartKey",
        "ValidationException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        SECRET,
        *(
            stage["environment_variables"]["RESERVATION_TABLE"]
            for stage in json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"].values()
        ),
        "my-reservation-local",
        *(
            name
            for name, value in vars(botocore.exceptions).items()
            if isinstance(value, type) and value.__module__ == "botocore.exceptions"
        ),
        *(shape.name for shape in botocore.session.get_session().get_service_model("dynamodb").error_shapes),
    }
)


def leaks(message: str, sent: bytes) -> list:
    """The markers of internals in an error message, leaving out what the caller sent itself
    (an unknown field named "DYNAMODB" or an id "RSV#x" may well be echoed back)."""
    said, sent_text = message.lower(), sent.decode("utf-8", "replace").lower()
    return [marker for marker in LEAK_MARKERS if marker.lower() in said and marker.lower() not in sent_text]


# ---- the service under fuzz, with a little data and real tokens ---------------------------------------


class Fuzzed:
    """The Chalice app in process over moto (the dev stage's environment), seeded, with real tokens."""

    WRITES = frozenset({"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})

    def __init__(self, client: Client, dynamodb):
        self.client, self.dynamodb = client, dynamodb
        self.ids, self.tokens = [], {}
        self.writes = 0  # DynamoDB writes that succeeded (a transaction applies all or nothing)
        default_api().reservations.store.client.meta.events.register("after-call.dynamodb", self._count)
        self.seed()
        self.table = scan_all(dynamodb)

    def _count(self, http_response, model, **_) -> None:
        if model.name in self.WRITES and http_response.status_code == 200:
            self.writes += 1

    def post(self, method: str, body: bytes, headers: dict):
        self.writes_before = self.writes
        return self.client.http.post(PATH + method, headers=headers, body=body)

    def wrote(self) -> bool:
        """Whether the last request wrote anything (a successful DynamoDB write call)."""
        return self.writes != self.writes_before

    def call(self, method: str, request):
        answer = self.post(method, request.SerializeToString(), {"content-type": "application/proto"})
        assert answer.status_code == 200, (method, answer.body)
        return METHODS[method].response_type.FromString(answer.body)

    def seed(self) -> None:
        step = pb.Resource().step
        step.FromSeconds(900)
        self.call(
            "define_resource",
            pb.DefineResourceRequest(resource=pb.Resource(id="lot-1", capacity=3, step=step, labels={"kind": "lot"})),
        )
        self.call("define_resource", pb.DefineResourceRequest(resource=pb.Resource(id="room-1", name="Room 1")))
        for number in range(3):
            made = self.call(
                "reserve",
                pb.ReserveRequest(
                    reservation=pb.Reservation(
                        resource_id="room-1", user_id="alice", start=stamp(60 * number), end=stamp(60 * number + 30)
                    )
                ),
            )
            self.ids.append(made.reservation.id)
        self.call(
            "reserve",
            pb.ReserveRequest(
                reservation=pb.Reservation(resource_id="lot-1", user_id="bob", start=stamp(0), end=stamp(60), units=2)
            ),
        )
        self.tokens = {
            "filter": self.call(
                "filter", pb.FilterRequest(query=pb.QueryRequest(resource_id="room-1", page_size=1))
            ).next_page_token,
            "list_resources": self.call("list_resources", pb.ListResourcesRequest(page_size=1)).next_page_token,
            "find_slots": self.call(
                "find_slots",
                pb.FindSlotsRequest(
                    resource_ids=["room-1"], start=stamp(0), end=stamp(600), duration={"seconds": 1800}, limit=1
                ),
            ).next_page_token,
            "changes": self.call("changes", pb.ChangesRequest(page_size=1)).cursor,
        }
        assert all(self.tokens.values()), self.tokens

    def unchanged(self) -> bool:
        return scan_all(self.dynamodb) == self.table

    def rescan(self) -> None:
        self.table = scan_all(self.dynamodb)


@pytest.fixture(scope="module")
def fuzzed():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_module, "LONG_POLL_SECONDS", 0.0)  # a listen answers after one read, not 15 s
        with moto_table() as dynamodb:
            with Client(app.app) as client:
                yield Fuzzed(client, dynamodb)


# ---- requests drawn from the descriptors ---------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "",
        "room-1",
        "lot-1",
        "alice",
        "\x00",
        "\u202e",
        "Room-x-\u00e9",
        "Room-x-e\u0301",
        " room-1",
        "ｒoom",
        "😀" * 40,
        "a" * 129,
        "a" * 5000,
        "RSV#x",
        "T#t#RES#room-1",
        "00000000-0000-4000-8000-000000000000",
        "default",
        "t2",
    ]
)
INT_RANGES = {FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1)}
seconds = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from(
    [-62135596800, -62135596801, 253402300799, 253402300800, 0, 1_795_000_000, 1_796_083_200, 315_576_000_001]
)
SEEDED_DAY = stamp(0).seconds
nanos = st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.sampled_from([0, 999_999_999, 1_000_000_000, -1])


def _mangled(token: str, draw) -> str:
    how = draw(st.sampled_from(["as is", "truncated", "changed", "appended"]))
    if how == "truncated":
        return token[: draw(st.integers(0, len(token) - 1))]
    if how == "changed":
        at = draw(st.integers(0, len(token) - 1))
        return token[:at] + draw(st.sampled_from("AZaz09-_=+/.")) + token[at + 1 :]
    if how == "appended":
        return token + draw(st.sampled_from(["A", "==", "x" * 50, "\x00"]))
    return token


def sign(payload: bytes) -> str:
    """A token made with the deployment's key around any payload (as a forger with the key could)."""
    mac = hmac.new(SECRET.encode(), payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


GARBAGE_PAYLOADS = st.binary(max_size=60) | st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b'"p"',
        b"{}",
        b'{"p": 1, "q": "x"}',
        b'{"p": ["a"], "q": "x"}',
        b'{"p": null, "q": "x"}',
        b'{"p": {"a": 1}, "q": "x"}',
        b'{"p": "x"}',
        b'{"q": "x"}',
        b'{"p": "x", "q": 7}',
        b"\xff\xfe{",
        b'{"p": "x", ',
    ]
)


@st.composite
def tokens(draw, real: dict):
    """A page token or cursor: a real one (maybe mangled), random bytes, or re-signed garbage."""
    kind = draw(st.sampled_from(["real", "random", "signed garbage", "text"]))
    if kind == "real":
        return _mangled(draw(st.sampled_from(sorted(value for key, value in real.items() if key != "ids"))), draw)
    if kind == "random":
        return base64.urlsafe_b64encode(draw(st.binary(max_size=80))).decode().rstrip("=")
    if kind == "signed garbage":
        return sign(draw(GARBAGE_PAYLOADS))
    return draw(texts)


RESOURCE_IDS = ["room-1", "lot-1", "room-9", "lot-9"]


def often(draw) -> bool:
    """True five times in six (hypothesis leans to the first choice, and shrinks towards it)."""
    return draw(st.sampled_from([True] * 5 + [False]))


PLAUSIBLE = {  # field name -> values that get a request past validation, into the rules and storage
    "resource_id": st.sampled_from(RESOURCE_IDS),
    "user_id": st.sampled_from(["alice", "bob", "carol"]),
    "note": st.sampled_from(["", "n", "x" * 10]),
    "name": st.sampled_from(["", "Lot 9"]),
    "request_id": st.sampled_from(["", "r1", "r2"]),
    "page_size": st.integers(0, 5),
    "limit": st.integers(0, 5),
    "units": st.integers(0, 2) | st.integers(0, 4),
    "capacity": st.integers(0, 4),
    "status": st.sampled_from([0, 0, 1, 2, 2, 3, 4]),
    "time_zone": st.sampled_from(["", "Europe/Paris"]),
}


def _plausible(field, container: str, draw, real: dict):
    """A valid-looking value for the field, or None when there is none to give."""
    if field.name == "id":
        if container == "Reservation":
            return ""
        if container in ("Resource", "GetResourceRequest", "DeleteResourceRequest"):
            return draw(st.sampled_from(RESOURCE_IDS))
        return draw(st.sampled_from(real["ids"]))
    if field.name == "resource_ids":
        return draw(st.lists(st.sampled_from(RESOURCE_IDS), max_size=3, unique=True))
    if field.name == "labels":
        return draw(st.sampled_from([{}, {"kind": "lot"}]))
    if field.name in TOKEN_FIELDS:
        return draw(st.sampled_from(["", *(value for key, value in real.items() if key != "ids")]))
    if field.message_type is not None and field.message_type.name == "Timestamp":
        return {"seconds": SEEDED_DAY + draw(st.integers(-4, 40)) * 900}
    if field.message_type is not None and field.message_type.name == "Duration":
        return {"seconds": draw(st.sampled_from([0, 900, 1800, 3600]))}
    strategy = PLAUSIBLE.get(field.name)
    return draw(strategy) if strategy is not None else None


def _value(field, draw, real: dict, depth: int, plausible: bool = False, container: str = ""):
    if plausible and often(draw):
        value = _plausible(field, container, draw, real)
        if value is not None:
            return value
    if field.message_type is not None:
        return _message_values(field.message_type, draw, real, depth + 1, plausible)
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.name in TOKEN_FIELDS:
            return draw(tokens(real))
        if field.name in ("id",) and draw(st.booleans()):
            return draw(st.sampled_from(real["ids"] + ["lot-1", "room-1"]))
        return draw(texts)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return draw(st.booleans())
    if field.type == FieldDescriptor.TYPE_ENUM:
        return draw(
            st.sampled_from([value.number for value in field.enum_type.values]) | st.integers(-(2**31), 2**31 - 1)
        )
    low, high = INT_RANGES[field.type]
    return draw(st.integers(low, high) | st.sampled_from([0, 1, 2, 3, -1, 100, 1000, 1001, 1_000_001]))


def _message_values(descriptor, draw, real: dict, depth: int, plausible: bool = False) -> dict:
    """Field name -> value (Timestamps and Durations as raw seconds and nanos) for some fields."""
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        if draw(st.booleans()):  # mostly near the seeded data, so that requests get past validation
            return {
                "seconds": SEEDED_DAY + draw(st.integers(-86400, 86400 * 3)) // 900 * 900
                if descriptor.name == "Timestamp"
                else draw(st.sampled_from([0, 900, 1800, 3600, 86400]))
            }
        return {"seconds": draw(seconds), "nanos": draw(nanos)}
    values = {}
    for field in descriptor.fields:
        if plausible and field.name in ("expires_at", "hold_for", "min_notice", "max_advance") and often(draw):
            continue  # what a valid-looking request mostly leaves out
        wanted = (
            (field.message_type is not None and field.message_type.name not in ("Duration",))
            or field.name in ("user_id", "resource_id", "id", "duration")
            or often(draw)
            if plausible
            else draw(st.booleans())
        )
        if depth > 3 or not wanted:
            continue
        if plausible and field.name in ("labels", "resource_ids") and often(draw):
            values[field.name] = _plausible(field, descriptor.name, draw, real)
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            values[field.name] = draw(st.dictionaries(texts, texts, max_size=3))
        elif field.is_repeated:
            values[field.name] = [_value(field, draw, real, depth) for _ in range(draw(st.integers(0, 3)))]
        else:
            values[field.name] = _value(field, draw, real, depth, plausible, descriptor.name)
    if (
        plausible
        and isinstance(values.get("start"), dict)
        and isinstance(values.get("end"), dict)
        and values["end"].get("seconds", 0) <= values["start"].get("seconds", 0) < 2**62
    ):
        values["end"] = {"seconds": values["start"].get("seconds", 0) + 900 * draw(st.integers(1, 8))}
    return values


def build(message, values: dict):
    """Set the drawn fields on a message directly (any int64/int32 a Timestamp can carry on the wire)."""
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                target[key] = item
        elif field.message_type is not None and field.is_repeated:
            for item in value:
                build(target.add(), item)
        elif field.message_type is not None:
            target.SetInParent()
            build(target, value)
        elif field.is_repeated:
            target.extend(value)
        else:
            setattr(message, name, value)
    return message


def _json_name(descriptor, name: str) -> str:
    return descriptor.fields_by_name[name].json_name


def _pairs_text(pairs: list) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


@st.composite
def json_bodies(draw, message, mutate: bool = True):
    """The message as JSON, mutated: a field twice, an enum as a numeric string, a wrong type, an unknown field."""
    try:
        document = json_format.MessageToDict(message)
    except (json_format.Error, ValueError, TypeError):  # a Timestamp or Duration out of range: not in JSON
        document = {}
    mutation = (
        draw(st.sampled_from(["none", "duplicate", "numeric enum", "wrong type", "unknown field"]))
        if mutate
        else "none"
    )
    descriptor, holder = message.DESCRIPTOR, document
    nested = [
        field
        for field in descriptor.fields
        if field.json_name in document
        and field.message_type is not None
        and not field.message_type.full_name.startswith("google.protobuf.")
        and not field.message_type.GetOptions().map_entry
    ]
    if nested and draw(st.booleans()):  # mutate inside reservation / query / resource
        field = draw(st.sampled_from(nested))
        descriptor, holder = field.message_type, document[field.json_name]
    if mutation == "duplicate":
        field = draw(st.sampled_from(list(descriptor.fields)))
        value = holder.get(field.json_name, draw(st.sampled_from(["x", 1, True])))
        names = draw(
            st.sampled_from(
                [(field.name, field.name), (field.json_name, field.json_name), (field.name, field.json_name)]
            )
        )
        pairs = [(key, json.dumps(item)) for key, item in holder.items() if key != field.json_name]
        pairs += [(names[0], json.dumps(value)), (names[1], json.dumps(value))]
        text = _pairs_text(pairs)
        if holder is document:
            return text.encode(), True
        outer = [(key, json.dumps(item) if item is not holder else text) for key, item in document.items()]
        return _pairs_text(outer).encode(), True
    if mutation == "numeric enum":
        enums = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_ENUM]
        if enums:
            field = draw(st.sampled_from(enums))
            holder[field.json_name] = str(draw(st.sampled_from([0, 1, 2, 3, 4])))
            return json.dumps(document).encode(), True
    if mutation == "wrong type" and holder:
        key = draw(st.sampled_from(sorted(holder)))
        holder[key] = draw(st.sampled_from([None, [], {}, "x", 1.5, -1, True, "2026-13-01T00:00:00Z", "1e3s"]))
    if mutation == "unknown field":
        holder[draw(st.sampled_from(["DYNAMODB", "pk", "tenant", "x_tenant_id", "__proto__"]))] = "x"
        return json.dumps(document).encode(), True
    return json.dumps(document).encode(), False


@st.composite
def requests(draw, real: dict):
    """(method, headers, body, refused for sure): well-typed messages, mutated JSON, truncated
    protobuf, garbage; streaming methods mostly with streaming content types."""
    method = draw(st.sampled_from(METHOD_NAMES))
    streaming = method in STREAMING
    family = STREAM_TYPES if streaming else UNARY_TYPES
    content_type = draw(
        st.sampled_from(family)
        if draw(st.integers(0, 4))
        else st.sampled_from(UNARY_TYPES + STREAM_TYPES + OTHER_TYPES)
    )
    kind = draw(st.sampled_from(["plausible"] * 3 + ["message", "message", "truncated", "garbage"]))
    surely_refused = False
    if method in METHODS and kind != "garbage":
        message = build(
            METHODS[method].request_type(),
            _message_values(METHODS[method].request_type.DESCRIPTOR, draw, real, 0, plausible=kind == "plausible"),
        )
        if "json" in content_type:
            body, surely_refused = draw(json_bodies(message, kind != "plausible" or not often(draw)))
        else:
            body = message.SerializeToString()
        if kind == "truncated" and body:
            body = body[: draw(st.integers(0, len(body) - 1))]
            surely_refused = False
    else:
        body = draw(st.binary(max_size=300))
    if content_type.startswith("application/connect") and draw(st.integers(0, 5)):
        body = struct.pack(">BI", draw(st.sampled_from([0, 0, 0, 1, 2, 255])), len(body)) + body
    headers = {"content-type": content_type} if content_type else {}
    if draw(st.integers(0, 9)) == 0:
        headers[draw(st.sampled_from(["x-tenant-id", "x-acting-user"]))] = draw(
            st.sampled_from(["t2", "default", "", "T2", "../x", "a" * 80, "alice", "bob"])
        )
    return method, headers, body, surely_refused


def _check_answer(
    fuzzed: Fuzzed, method: str, headers: dict, body: bytes, answer, surely_refused: bool, scan: bool = True
) -> None:
    sent = method.encode() + body + json.dumps(headers).encode()
    assert answer.status_code < 500, (method, headers, body[:200], answer.status_code, answer.body[:300])
    if answer.headers.get("Content-Type", "").startswith("application/connect+") and answer.status_code == 200:
        end = _stream_end(answer.body)
        if "error" not in end:
            assert not surely_refused, ("accepted", method, body[:300])
            return
        error = end["error"]
    elif answer.status_code == 200:
        assert not surely_refused, ("accepted", method, body[:300])
        if scan:
            fuzzed.rescan()  # a valid call (a reserve, a define): it may have written
        return
    else:
        error = json.loads(answer.body)
    assert error["code"] in CALLER_CODES and isinstance(error["message"], str), (method, body[:200], error)
    assert not leaks(error["message"], sent), (error, leaks(error["message"], sent))
    assert not fuzzed.wrote(), ("a refused request wrote", method, body[:200], error)
    assert not scan or fuzzed.unchanged(), ("a refused request changed the table", method, body[:200], error)


def _stream_end(body: bytes) -> dict:
    offset, end = 0, None
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        if flags & 0x02:
            end = json.loads(body[offset + 5 : offset + 5 + length])
        offset += 5 + length
    assert offset == len(body) and end is not None, body[:200]
    return end


def _real(fuzzed: Fuzzed) -> dict:
    return {**fuzzed.tokens, "ids": list(fuzzed.ids)}


@settings(max_examples=3000 * SCALE)
@given(data=st.data())
def test_fuzzed_requests_get_connect_errors_and_write_nothing(fuzzed, data):
    method, headers, body, surely_refused = data.draw(requests(_real(fuzzed)))
    answer = fuzzed.post(method, body, headers)
    _check_answer(fuzzed, method, headers, body, answer, surely_refused, scan=False)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_random_bytes_on_every_route(fuzzed, method):
    generator = random.Random(method)
    fuzzed.rescan()
    for _ in range(50 * SCALE):
        body = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 200)))
        for content_type in ("application/proto", "application/json", "application/connect+proto"):
            headers = {"content-type": content_type}
            answer = fuzzed.post(method, body, headers)
            _check_answer(fuzzed, method, headers, body, answer, False, scan=False)
    assert fuzzed.unchanged() or method in ("reserve", "define_resource", "cancel")  # random bytes can be valid


# ---- duplicate JSON fields: every field of every request, under one name or both ----------------------


def _duplicates(descriptor, prefix=()):
    """(path to the holding object, field) for every field of a request, nested messages included."""
    for field in descriptor.fields:
        yield prefix, field
        if (
            field.message_type is not None
            and not field.message_type.GetOptions().map_entry
            and not field.message_type.full_name.startswith("google.protobuf.")
        ):
            yield from _duplicates(field.message_type, (*prefix, field.json_name))


def _sample(field):
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            return {"k": "v"}
        return {"Timestamp": "2026-12-01T00:00:00Z", "Duration": "60s"}.get(field.message_type.name, {})
    if field.is_repeated:
        return ["room-1"]
    return {FieldDescriptor.TYPE_STRING: "room-1", FieldDescriptor.TYPE_BOOL: True, FieldDescriptor.TYPE_ENUM: 1}.get(
        field.type, 1
    )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_field_given_twice_in_json_is_invalid_argument(fuzzed, method):
    streaming = method in STREAMING
    headers = {"content-type": "application/connect+json" if streaming else "application/json"}
    for path, field in _duplicates(METHODS[method].request_type.DESCRIPTOR):
        for first, second in {
            (field.name, field.name),
            (field.json_name, field.json_name),
            (field.name, field.json_name),
        }:
            value = json.dumps(_sample(field))
            text = _pairs_text([(first, value), (second, value)])
            for key in reversed(path):
                text = _pairs_text([(key, text)])
            body = text.encode()
            if streaming:
                body = struct.pack(">BI", 0, len(body)) + body
            answer = fuzzed.post(method, body, headers)
            _check_answer(fuzzed, method, headers, body, answer, True)
            error = _stream_end(answer.body)["error"] if streaming else json.loads(answer.body)
            assert error["code"] == "invalid_argument" and "twice" in error["message"], (method, text, error)


# ---- page tokens and cursors -----------------------------------------------------------------------------

START, END = stamp(0), stamp(600)
# Each RPC with a token, the request it is sent in, and the digest that request's tokens carry.
TOKEN_CALLS = {
    "filter": (
        lambda token: pb.FilterRequest(query=pb.QueryRequest(resource_id="room-1", page_size=1, page_token=token)),
        lambda: QuerySpec("default", resource_id="room-1", status=Status.UNKNOWN).digest(),
    ),
    "Query": (
        lambda token: pb.QueryRequest(user_id="alice", page_size=1, page_token=token),
        lambda: QuerySpec("default", user_id="alice", status=Status.UNKNOWN).digest(),
    ),
    "list_resources": (
        lambda token: pb.ListResourcesRequest(page_size=1, page_token=token),
        lambda: paging.query_digest("resources", "default", []),
    ),
    "find_slots": (
        lambda token: pb.FindSlotsRequest(
            resource_ids=["room-1"], start=START, end=END, duration={"seconds": 1800}, limit=1, page_token=token
        ),
        lambda: paging.query_digest(
            "slots", "default", ["room-1"], [], START.ToNanoseconds(), END.ToNanoseconds(), 1800 * 10**9, 1
        ),
    ),
    "changes": (lambda token: pb.ChangesRequest(after=token, page_size=1), lambda: feed_digest(Scope("default"))),
    "listen": (
        lambda token: pb.ListenRequest(resource_id="room-1", after=token),
        lambda: feed_digest(Scope("default", "room-1")),
    ),
}
# the positions each RPC's tokens hold (list_resources: any resource id)
SHAPES = {"find_slots": SLOT_POSITION, "list_resources": None}
POSITIONS = st.text(max_size=40) | st.sampled_from(
    [
        "",
        "x",
        "-1",
        "1e3",
        " 1",
        "0" * 21,
        "0" * 20,
        "0" * 22,
        "9" * 21,
        "0" * 21 + "#",
        "0" * 21 + "#x",
        "0" * 21 + "#x\n",
        "\u0663" * 21,
        "\u0663" * 21 + "#x",
        "0" * 21 + "#" + "a" * 5000,
        "abc#def",
        "99999999999999999999999999999#x",
        "-" + "9" * 21,
        "00000000000000000000a",
        "\x00" * 21,
    ]
)


@st.composite
def forged(draw, method: str):
    """A token for `method` signed with the deployment's key: garbage, or a position of any shape
    under the digest of the very request it is sent in."""
    _, digest = TOKEN_CALLS[method]
    if draw(st.booleans()):
        return sign(draw(GARBAGE_PAYLOADS)), True
    position = draw(POSITIONS)
    payload = json.dumps({"p": position, "q": digest()}, separators=(",", ":")).encode()
    shape = SHAPES.get(method, paging.POSITION)
    return sign(payload), shape is not None and not shape.fullmatch(position)


def test_the_right_digest_is_what_the_service_signs(fuzzed):
    """The forged tokens below carry the digests the service puts in its own tokens."""
    for method in ("filter", "list_resources", "changes", "find_slots"):
        token = fuzzed.tokens[method]
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))[16:]
        assert json.loads(raw)["q"] == TOKEN_CALLS[method][1](), method


@settings(max_examples=150 * SCALE)
@given(data=st.data())
def test_page_tokens_and_cursors_random_truncated_or_resigned_are_refused_cleanly(fuzzed, data):
    method = data.draw(st.sampled_from(sorted(TOKEN_CALLS)))
    request, _ = TOKEN_CALLS[method]
    if data.draw(st.booleans()):
        token, garbage = data.draw(forged(method))
    else:
        token, garbage = data.draw(tokens(_real(fuzzed))), False
    streaming = method in STREAMING
    body = request(token).SerializeToString()
    headers = {"content-type": "application/connect+proto" if streaming else "application/proto"}
    if streaming:
        body = struct.pack(">BI", 0, len(body)) + body
    answer = fuzzed.post(method, body, headers)
    _check_answer(fuzzed, method, headers, body, answer, False, scan=False)
    if garbage:  # a payload or position the service never makes: refused as such, never a page
        error = (
            _stream_end(answer.body).get("error")
            if streaming
            else (json.loads(answer.body) if answer.status_code != 200 else None)
        )
        assert error is not None and error["code"] == "invalid_argument", (method, token, error)


# ---- tenants as the local server takes them ------------------------------------------------------------


@settings(max_examples=200 * SCALE)
@given(
    method=st.sampled_from(sorted(METHODS)),
    tenant=texts | st.sampled_from(["t2", "T2", "t" * 63, "t" * 64]),
    acting=texts | st.sampled_from(["alice", "bob"]),
)
def test_tenant_and_acting_user_headers_of_the_local_server(fuzzed, monkeypatch, method, tenant, acting):
    """With TENANT_SOURCE=header (make serve) any x-tenant-id and x-acting-user is a tenant or a
    clean refusal, through the Connect layer the devserver and Lambda share."""
    monkeypatch.setenv("TENANT_SOURCE", "header")
    request = {
        "get": pb.GetRequest(id=fuzzed.ids[0]),
        "reserve": pb.ReserveRequest(
            reservation=pb.Reservation(resource_id="room-9", user_id="alice", start=stamp(0), end=stamp(30))
        ),
    }.get(method, METHODS[method].request_type())
    body = request.SerializeToString()
    streaming = method in STREAMING
    if streaming:
        body = struct.pack(">BI", 0, len(body)) + body
    headers = {
        "content-type": "application/connect+proto" if streaming else "application/proto",
        "x-tenant-id": tenant,
        "x-acting-user": acting,
    }
    fuzzed.writes_before = fuzzed.writes
    answer = connect.handle(default_api(), method, "POST", headers, body, None)
    assert answer.status < 500, (method, tenant, acting, answer.body[:300])
    if answer.status == 200 and not streaming:
        fuzzed.rescan()
        return
    error = _stream_end(answer.body).get("error") if streaming else json.loads(answer.body)
    if error is not None:
        assert error["code"] in CALLER_CODES, error
        assert not leaks(error["message"], body + tenant.encode() + acting.encode()), error
        assert not fuzzed.wrote()


# ---- the fixture works, and the leak check itself ----------------------------------------------------


def test_a_valid_looking_request_can_still_be_made(fuzzed):
    """The fuzz fixture is a working service: a proper reserve succeeds in it."""
    request = pb.ReserveRequest(
        reservation=pb.Reservation(user_id="u", resource_id="fuzz-check", start={"seconds": 10}, end={"seconds": 20})
    )
    answer = fuzzed.post("reserve", request.SerializeToString(), {"content-type": "application/proto"})
    assert answer.status_code == 200 and fuzzed.wrote()  # the write counter sees writes
    fuzzed.rescan()


def test_the_leak_check_tells_internals_from_an_echo_of_the_caller(fuzzed):
    """The clean run that once failed: the error echoes the caller's own unknown field name."""
    body = b'{"DYNAMODB": null}'
    answer = fuzzed.post("cancel", body, {"content-type": "application/json"})
    error = json.loads(answer.body)
    assert error["code"] == "invalid_argument" and "DYNAMODB" in error["message"]
    assert leaks(error["message"], b"cancel" + body) == []
    aws = (
        "An error occurred (ConditionalCheckFailedException) when calling the TransactWriteItems operation: "
        "Transaction cancelled on table my-reservation-dev"
    )
    assert {"ConditionalCheckFailedException", "my-reservation-dev", "An error occurred ("} <= set(leaks(aws, b""))
    assert leaks('Traceback (most recent call last):\n  File "/x/chalicelib/dynamo.py"', b"") != []
    assert leaks("reservation RSV#abc not found", b'{"id": "abc"}') == ["RSV#"]
    assert leaks(f"key {SECRET}", b"") == [SECRET]
