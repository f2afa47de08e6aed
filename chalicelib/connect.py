"""The Connect protocol (connectrpc.com/docs/protocol) over plain HTTP request/response.

Turns (method, headers, body bytes, authenticated principal) into a call of
chalicelib.api and the answer back into (status, headers, body bytes). Unary
calls use application/proto or application/json; server streams use
application/connect+proto or +json with 5-byte envelopes and an end-of-stream
message. Lambda behind API Gateway cannot stream, so a server stream's
envelopes are sent as one body (`listen` is a long poll there). gzip is
accepted and answered both ways. JSON is strict: UTF-8 only, no field given
twice (under either of its names), enums by name or number, never as a
numeric string.
"""

import base64
import dataclasses
import gzip
import json
import struct
import zlib
from collections.abc import Mapping

from google.protobuf import descriptor as pb_descriptor
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from .api import METHODS, CallContext, ReservationApi, error_details, long_poll
from .errors import Code, ServiceError, internal
from .tenancy import caller_from

MAX_BODY_BYTES = 1024 * 1024  # compressed or not; requests are small
COMPRESS_FROM_BYTES = 1024  # smaller answers are not worth gzip's CPU time
ENVELOPE_COMPRESSED = 0x01
ENVELOPE_END_STREAM = 0x02
ENVELOPE_HEADER = struct.Struct(">BI")
SUPPORTED_ENCODINGS = ("gzip", "identity")
HTTP_STATUS = {
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


@dataclasses.dataclass
class HttpAnswer:
    status: int
    headers: dict
    body: bytes


class ProtocolError(ServiceError):
    """A request that is not well-formed Connect; `http_status` overrides the code's usual one."""

    def __init__(self, code: Code, message: str, http_status: int = 0, headers: Mapping | None = None):
        super().__init__(code, message)
        self.http_status = http_status or HTTP_STATUS[code]
        self.headers = dict(headers or {})


class ProtoCodec:
    name = "proto"

    @staticmethod
    def decode(payload: bytes, message_type):
        message = message_type()
        try:
            message.ParseFromString(payload)
        except (DecodeError, RecursionError, ValueError):
            raise ProtocolError(Code.INVALID_ARGUMENT, "body: not valid protobuf") from None
        return message

    @staticmethod
    def encode(message) -> bytes:
        return message.SerializeToString()


class JsonCodec:
    name = "json"

    @staticmethod
    def decode(payload: bytes, message_type):
        full_name = message_type.DESCRIPTOR.full_name
        try:
            text = payload.decode("utf-8")
            document = json.loads(text, object_pairs_hook=_no_duplicate_keys) if text else {}
            if not isinstance(document, dict):
                raise json_format.ParseError("expected a JSON object")
            _check_strict(document, message_type.DESCRIPTOR, "")
            message = message_type()
            json_format.ParseDict(document, message)
        except UnicodeDecodeError:
            raise ProtocolError(Code.INVALID_ARGUMENT, "body: JSON must be UTF-8") from None
        except (json_format.ParseError, RecursionError, ValueError) as error:
            raise ProtocolError(Code.INVALID_ARGUMENT, f"body: not valid JSON for {full_name} ({error})") from None
        return message

    @staticmethod
    def encode(message) -> bytes:
        """UTF-8, not \\u escapes: a page of non-ASCII notes stays the size the page budget counts."""
        return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()


UNARY_CODECS = {"application/proto": ProtoCodec, "application/json": JsonCodec}
STREAM_CODECS = {"application/connect+proto": ProtoCodec, "application/connect+json": JsonCodec}


def _no_duplicate_keys(pairs: list) -> dict:
    document = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"field {key!r} given twice")
        document[key] = value
    return document


def _check_strict(document: dict, descriptor, path: str) -> None:
    """What protobuf's JSON parser lets through and the service refuses: a field under both its
    names, an enum as a numeric string. Recurses into nested messages, lists and maps."""
    seen = {}
    for key, value in document.items():
        field = descriptor.fields_by_name.get(key) or next((f for f in descriptor.fields if f.json_name == key), None)
        if field is None:
            continue  # unknown fields are refused by the parser itself
        if field.name in seen:
            raise ValueError(f"field {path}{field.name} given twice (as {seen[field.name]!r} and {key!r})")
        seen[field.name] = key
        values = value if isinstance(value, list) else [value]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            values = list(value.values()) if isinstance(value, dict) else []
            field = value_field
        for item in values:
            if (
                field.type == pb_descriptor.FieldDescriptor.TYPE_ENUM
                and isinstance(item, str)
                and field.enum_type.values_by_name.get(item) is None
            ):
                raise ValueError(f"{path}{field.name}: {item!r} is not a value of {field.enum_type.name}")
            if (
                field.message_type is not None
                and isinstance(item, dict)
                and not field.message_type.full_name.startswith("google.protobuf.")
            ):
                _check_strict(item, field.message_type, f"{path}{field.name}.")


def _media_type(headers: Mapping) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _accepts_gzip(header_value: str) -> bool:
    return "gzip" in [part.split(";")[0].strip().lower() for part in header_value.split(",")]


def _gunzip(data: bytes) -> bytes:
    """Decompress at most MAX_BODY_BYTES: a small gzip bomb must not fill memory."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: not valid gzip") from None
    if len(out) > MAX_BODY_BYTES:
        raise _too_large()
    if not inflater.eof:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: truncated gzip")
    return out


def _too_large() -> ProtocolError:
    return ProtocolError(Code.INVALID_ARGUMENT, f"body: larger than the limit of {MAX_BODY_BYTES} bytes")


def _check_encoding(encoding: str) -> bool:
    """True when the body is gzip; unsupported encodings fail as Connect asks (unimplemented)."""
    encoding = encoding.strip().lower() or "identity"
    if encoding not in SUPPORTED_ENCODINGS:
        raise ProtocolError(
            Code.UNIMPLEMENTED,
            f"unsupported compression {encoding!r}; use gzip or identity",
            headers={"Accept-Encoding": ", ".join(SUPPORTED_ENCODINGS)},
        )
    return encoding == "gzip"


def error_json(error: ServiceError) -> dict:
    body = {"code": error.code.value, "message": error.message}
    details = error_details(error)
    if details:
        body["details"] = [
            {
                "type": detail.DESCRIPTOR.full_name,
                "value": base64.b64encode(detail.SerializeToString()).decode().rstrip("="),
                "debug": json_format.MessageToDict(detail),
            }
            for detail in details
        ]
    return body


def _unary_error(error: ServiceError) -> HttpAnswer:
    headers = {"Content-Type": "application/json"}
    headers.update(getattr(error, "headers", {}))
    status = getattr(error, "http_status", HTTP_STATUS[error.code])
    return HttpAnswer(status, headers, json.dumps(error_json(error)).encode())


def _checked(method_name: str, http_method: str, headers: Mapping, body: bytes) -> tuple:
    """(method, codec) of a well-formed Connect call, or ProtocolError."""
    method = METHODS.get(method_name)
    if method is None:
        raise ProtocolError(Code.UNIMPLEMENTED, f"unknown method {method_name!r}", http_status=404)
    if http_method != "POST":
        raise ProtocolError(
            Code.UNIMPLEMENTED,
            f"{http_method} is not supported; Connect calls use POST",
            http_status=405,
            headers={"Allow": "POST"},
        )
    version = headers.get("connect-protocol-version", "1")
    if version != "1":
        raise ProtocolError(Code.INVALID_ARGUMENT, f"connect-protocol-version: unsupported {version!r}")
    if len(body) > MAX_BODY_BYTES:
        raise _too_large()
    media_type = _media_type(headers)
    accepted = STREAM_CODECS if method.server_streaming else UNARY_CODECS
    if media_type not in accepted:
        raise ProtocolError(
            Code.INVALID_ARGUMENT,
            f"content-type: {media_type or 'none'} is not supported; use {' or '.join(accepted)}",
            http_status=415,
            headers={"Accept-Post": ", ".join(accepted)},
        )
    return method, accepted[media_type]


def handle(
    api: ReservationApi, method_name: str, http_method: str, headers: Mapping, body: bytes, principal: str | None = None
) -> HttpAnswer:
    """Serve one Connect call whole (a server stream as one body: Lambda). `headers` must have
    lowercase names; `principal` is the caller's authenticated identity (an IAM ARN on AWS), if any."""
    try:
        method, codec = _checked(method_name, http_method, headers, body)
    except ServiceError as error:
        return _unary_error(error)
    if method.server_streaming:
        answer_headers, chunks = stream_chunks(api, method, codec, headers, body, principal)
        return HttpAnswer(200, answer_headers, b"".join(chunks))
    return _serve_unary(api, method, codec, headers, body, principal)


def handle_streaming(
    api: ReservationApi, method_name: str, http_method: str, headers: Mapping, body: bytes, keep_going
) -> tuple:
    """For a server that can stream: (status, headers, iterator of body chunks sent as they come).
    `keep_going(seconds, events sent)` says how long a stream such as `listen` may stay open."""
    try:
        method, codec = _checked(method_name, http_method, headers, body)
    except ServiceError as error:
        answer = _unary_error(error)
        return answer.status, answer.headers, iter([answer.body])
    if not method.server_streaming:
        answer = _serve_unary(api, method, codec, headers, body, None)
        return answer.status, answer.headers, iter([answer.body])
    answer_headers, chunks = stream_chunks(api, method, codec, headers, body, None, keep_going)
    return 200, answer_headers, chunks


def _serve_unary(api, method, codec, headers: Mapping, body: bytes, principal: str | None) -> HttpAnswer:
    try:
        if _check_encoding(headers.get("content-encoding", "")):
            body = _gunzip(body)
        request = codec.decode(body, method.request_type)
        response = method.call(api, request, CallContext(caller_from(headers, principal)))
    except ServiceError as error:
        return _unary_error(error)
    except Exception as exception:
        return _unary_error(internal(exception))
    payload = codec.encode(response)
    answer_headers = {"Content-Type": f"application/{codec.name}"}
    if len(payload) >= COMPRESS_FROM_BYTES and _accepts_gzip(headers.get("accept-encoding", "")):
        payload = gzip.compress(payload, compresslevel=5)
        answer_headers["Content-Encoding"] = "gzip"
    return HttpAnswer(200, answer_headers, payload)


def _unwrap_envelope(body: bytes, compressed_allowed: bool) -> bytes:
    if len(body) < ENVELOPE_HEADER.size:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: a streaming request needs one 5-byte envelope")
    flags, length = ENVELOPE_HEADER.unpack_from(body)
    payload = body[ENVELOPE_HEADER.size :]
    if length != len(payload) or flags & ~ENVELOPE_COMPRESSED:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: malformed envelope")
    if flags & ENVELOPE_COMPRESSED:
        if not compressed_allowed:
            raise ProtocolError(Code.INVALID_ARGUMENT, "body: compressed envelope without connect-content-encoding")
        payload = _gunzip(payload)
    return payload


def envelope(flags: int, payload: bytes, gzip_it: bool) -> bytes:
    if gzip_it and len(payload) >= COMPRESS_FROM_BYTES:
        payload = gzip.compress(payload, compresslevel=5)
        flags |= ENVELOPE_COMPRESSED
    return ENVELOPE_HEADER.pack(flags, len(payload)) + payload


def stream_chunks(api, method, codec, headers: Mapping, body: bytes, principal: str | None, keep_going=long_poll):
    """(answer headers, iterator of envelope bytes) of a server stream: errors travel in the
    end-of-stream message. A server that can stream sends each chunk as it comes."""
    gzip_answer = _accepts_gzip(headers.get("connect-accept-encoding", ""))
    answer_headers = {"Content-Type": f"application/connect+{codec.name}"}
    if gzip_answer:
        answer_headers["Connect-Content-Encoding"] = "gzip"

    def chunks():
        end = {}
        try:
            compressed = _check_encoding(headers.get("connect-content-encoding", ""))
            request = codec.decode(_unwrap_envelope(body, compressed), method.request_type)
            stream = method.call(api, request, CallContext(caller_from(headers, principal), keep_going))
            for message in stream:
                yield envelope(0, codec.encode(message), gzip_answer)
            if stream.trailers:
                end["metadata"] = {name: [value] for name, value in stream.trailers.items()}
        except ServiceError as error:
            end["error"] = error_json(error)
        except Exception as exception:
            end["error"] = error_json(internal(exception))
        yield envelope(ENVELOPE_END_STREAM, json.dumps(end).encode(), gzip_answer)

    return answer_headers, chunks()
