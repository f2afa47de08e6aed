"""The Connect protocol (connectrpc.com/docs/protocol) over plain HTTP request/response.

Turns (method, headers, body bytes) into a call of chalicelib.api and the
answer back into (status, headers, body bytes). Unary calls use
application/proto or application/json; server streams use
application/connect+proto or +json with 5-byte envelopes and an end-of-stream
message. Lambda behind API Gateway cannot stream, so a server stream's
envelopes are sent as one body. gzip is accepted and answered both ways.
"""
import base64
import dataclasses
import gzip
import json
import struct
import zlib
from typing import Mapping

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from .api import METHODS, ReservationApi, error_details
from .errors import Code, ServiceError, internal

MAX_BODY_BYTES = 1024 * 1024  # compressed or not; reservations are small
COMPRESS_FROM_BYTES = 1024  # smaller answers are not worth gzip's CPU time
UNARY_TYPES = {"application/proto": "proto", "application/json": "json"}
STREAM_TYPES = {"application/connect+proto": "proto", "application/connect+json": "json"}
ENVELOPE_COMPRESSED = 0x01
ENVELOPE_END_STREAM = 0x02
ENVELOPE_HEADER = struct.Struct(">BI")
SUPPORTED_ENCODINGS = ("gzip", "identity")


@dataclasses.dataclass
class HttpAnswer:
    status: int
    headers: dict
    body: bytes


class ProtocolError(ServiceError):
    """A request that is not well-formed Connect; `http_status` overrides the code's usual one."""

    def __init__(self, code: Code, message: str, http_status: int = 0, headers: Mapping = None):
        super().__init__(code, message)
        self.http_status = http_status or code.http_status
        self.headers = dict(headers or {})


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
        raise ProtocolError(Code.UNIMPLEMENTED, f"unsupported compression {encoding!r}; use gzip or identity",
                            headers={"Accept-Encoding": ", ".join(SUPPORTED_ENCODINGS)})
    return encoding == "gzip"


def _decode(codec: str, payload: bytes, message_type):
    message = message_type()
    try:
        if codec == "proto":
            message.ParseFromString(payload)
        else:
            document = json.loads(payload) if payload else {}
            if not isinstance(document, dict):
                raise json_format.ParseError("expected a JSON object")
            json_format.ParseDict(document, message)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as error:
        problem = "not valid protobuf" if codec == "proto" else f"not valid JSON for {message_type.DESCRIPTOR.full_name}"
        detail = f" ({error})" if codec == "json" else ""
        raise ProtocolError(Code.INVALID_ARGUMENT, f"body: {problem}{detail}") from None
    return message


def _encode(codec: str, message) -> bytes:
    if codec == "proto":
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def error_json(error: ServiceError) -> dict:
    body = {"code": error.code.connect_name, "message": error.message}
    details = error_details(error)
    if details:
        body["details"] = [{
            "type": detail.DESCRIPTOR.full_name,
            "value": base64.b64encode(detail.SerializeToString()).decode().rstrip("="),
            "debug": json_format.MessageToDict(detail),
        } for detail in details]
    return body


def _unary_error(error: ServiceError) -> HttpAnswer:
    headers = {"Content-Type": "application/json"}
    headers.update(getattr(error, "headers", {}))
    status = getattr(error, "http_status", error.code.http_status)
    return HttpAnswer(status, headers, json.dumps(error_json(error)).encode())


def handle(api: ReservationApi, method_name: str, http_method: str, headers: Mapping, body: bytes) -> HttpAnswer:
    """Serve one Connect call. `headers` must have lowercase names."""
    method = METHODS.get(method_name)
    try:
        if method is None:
            raise ProtocolError(Code.UNIMPLEMENTED, f"unknown method {method_name!r}", http_status=404)
        if http_method != "POST":
            raise ProtocolError(Code.UNIMPLEMENTED, f"{http_method} is not supported; Connect calls use POST",
                                http_status=405, headers={"Allow": "POST"})
        version = headers.get("connect-protocol-version", "1")
        if version != "1":
            raise ProtocolError(Code.INVALID_ARGUMENT, f"connect-protocol-version: unsupported {version!r}")
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
        media_type = _media_type(headers)
        accepted = STREAM_TYPES if method.server_streaming else UNARY_TYPES
        if media_type not in accepted:
            raise ProtocolError(Code.INVALID_ARGUMENT,
                                f"content-type: {media_type or 'none'} is not supported; use {' or '.join(accepted)}",
                                http_status=415, headers={"Accept-Post": ", ".join(accepted)})
    except ServiceError as error:
        return _unary_error(error)
    codec = accepted[media_type]
    if method.server_streaming:
        return _serve_stream(api, method, codec, headers, body)
    return _serve_unary(api, method, codec, headers, body)


def _serve_unary(api, method, codec: str, headers: Mapping, body: bytes) -> HttpAnswer:
    try:
        if _check_encoding(headers.get("content-encoding", "")):
            body = _gunzip(body)
        response = method.call(api, _decode(codec, body, method.request_type))
    except ServiceError as error:
        return _unary_error(error)
    except Exception as exception:
        return _unary_error(internal(exception))
    payload = _encode(codec, response)
    answer_headers = {"Content-Type": f"application/{codec}"}
    if len(payload) >= COMPRESS_FROM_BYTES and _accepts_gzip(headers.get("accept-encoding", "")):
        payload = gzip.compress(payload, compresslevel=5)
        answer_headers["Content-Encoding"] = "gzip"
    return HttpAnswer(200, answer_headers, payload)


def _unwrap_envelope(body: bytes, compressed_allowed: bool) -> bytes:
    if len(body) < ENVELOPE_HEADER.size:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: a streaming request needs one 5-byte envelope")
    flags, length = ENVELOPE_HEADER.unpack_from(body)
    payload = body[ENVELOPE_HEADER.size:]
    if length != len(payload) or flags & ~ENVELOPE_COMPRESSED:
        raise ProtocolError(Code.INVALID_ARGUMENT, "body: malformed envelope")
    if flags & ENVELOPE_COMPRESSED:
        if not compressed_allowed:
            raise ProtocolError(Code.INVALID_ARGUMENT, "body: compressed envelope without connect-content-encoding")
        payload = _gunzip(payload)
    return payload


def _envelope(flags: int, payload: bytes, gzip_it: bool) -> bytes:
    if gzip_it and len(payload) >= COMPRESS_FROM_BYTES:
        payload = gzip.compress(payload, compresslevel=5)
        flags |= ENVELOPE_COMPRESSED
    return ENVELOPE_HEADER.pack(flags, len(payload)) + payload


def _serve_stream(api, method, codec: str, headers: Mapping, body: bytes) -> HttpAnswer:
    """Errors of a stream travel in the end-of-stream message, always with HTTP 200."""
    gzip_answer = _accepts_gzip(headers.get("connect-accept-encoding", ""))
    answer_headers = {"Content-Type": f"application/connect+{codec}"}
    if gzip_answer:
        answer_headers["Connect-Content-Encoding"] = "gzip"
    chunks = []
    end = {}
    try:
        compressed = _check_encoding(headers.get("connect-content-encoding", ""))
        request = _decode(codec, _unwrap_envelope(body, compressed), method.request_type)
        stream = method.call(api, request)
        for message in stream:
            chunks.append(_envelope(0, _encode(codec, message), gzip_answer))
        trailers = getattr(stream, "trailers", None)
        if trailers:
            end["metadata"] = {name: [value] for name, value in trailers.items()}
    except ServiceError as error:
        end["error"] = error_json(error)
    except Exception as exception:
        end["error"] = error_json(internal(exception))
    chunks.append(_envelope(ENVELOPE_END_STREAM, json.dumps(end).encode(), gzip_answer))
    return HttpAnswer(200, answer_headers, b"".join(chunks))
