"""A small typed Python client for my-reservation: Connect over HTTP, stdlib only (+ botocore to sign).

    from rsvp.client import ReservationClient
    client = ReservationClient("http://127.0.0.1:8000")
    made = client.reserve(resource_id="room-1", user_id="alice", start=datetime(...), end=datetime(...))
    for reservation in client.query(resource_id="room-1"):   # walks every page
        ...
    for event in client.listen(resource_id="room-1"):        # the change feed, as it happens
        ...

Retries (bounded, jittered) only on retryable codes and lost connections.
reserve always carries a request id (made here unless given), so its retries
can never book twice, not even after an UNKNOWN answer ("may have been made").
A retried cancel whose first answer was lost may answer NOT_FOUND. With
`sign=True` requests are SigV4-signed for the IAM-protected prod stage
(botocore's signer, default credential chain). `tenant` and `acting_user` send
x-tenant-id (trusted by the local server only) and x-acting-user.
"""

import base64
import dataclasses
import datetime
import http.client
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb

RETRYABLE_CODES = {"unavailable", "aborted", "deadline_exceeded", "resource_exhausted"}
HTTP_FALLBACK_CODES = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
# Wire names come from the generated descriptors, so that a value added to the proto shows up here by itself.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReservationService"].full_name  # "reservation.ReservationService"
STATUS_NAMES = {value.name: value.number for value in pb.ReservationStatus.DESCRIPTOR.values}
STATUS_BY_NUMBER = {number: name for name, number in STATUS_NAMES.items()}
# the statuses a caller can ask for (0, UNKNOWN, means "the default" or "unchanged")
SETTABLE_STATUSES = tuple(name for name, number in STATUS_NAMES.items() if number != 0)


def status_name(number: int) -> str:
    """The name of a status number; the number itself for one newer than this client."""
    return STATUS_BY_NUMBER.get(number, str(number))


def check_base_url(url: str) -> str:
    """`url` if it can be the service's base URL (http[s]://host[:port][/prefix]), else ValueError("bad URL ...")."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError as error:
        raise ValueError(f"bad URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        hint = f" (did you mean 'http://{url}'?)" if "://" not in url and url else ""
        raise ValueError(f"bad URL {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT][/PATH]{hint}")
    return url


class _KeptConnectionClosed(Exception):
    """A kept-alive connection the server had closed: the request did not reach it."""


class ReservationError(Exception):
    """A failed call: `code` is the Connect code ("failed_precondition", "not_found", ...).

    `conflict` is the ReservationConflict detail of a reserve or reschedule that did not fit
    (`conflicts` its listed windows); `maybe_made` the id of a reservation that may exist
    after an UNKNOWN answer.
    """

    def __init__(self, code: str, message: str, conflict=None, maybe_made: str = ""):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.conflict = conflict
        self.conflicts = tuple(conflict.conflicts) if conflict is not None else ()
        self.maybe_made = maybe_made


def timestamp(moment) -> Timestamp:
    """A Timestamp from an aware datetime (naive ones are refused: their zone is a guess)."""
    if isinstance(moment, Timestamp):
        return moment
    if moment.tzinfo is None:
        raise ValueError("datetimes must carry a time zone")
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(datetime.UTC))
    return stamp


def duration(length) -> Duration:
    """A Duration from a timedelta (or a Duration)."""
    if isinstance(length, Duration):
        return length
    value = Duration()
    value.FromTimedelta(length)
    return value


# the rules of a resource that are lengths of time (google.protobuf.Duration fields of Resource)
RULE_DURATIONS = tuple(
    field.name for field in pb.Resource.DESCRIPTOR.fields if field.message_type is Duration.DESCRIPTOR
)


def resource(
    resource_id: str, name: str = "", labels: dict | None = None, capacity: int = 0, time_zone: str = "", **rules
) -> pb.Resource:
    """A Resource message; rules are timedeltas named as in the proto (step, max_duration, hold_for, ...)."""
    unknown = set(rules) - set(RULE_DURATIONS)
    if unknown:
        raise TypeError(f"unknown rules {sorted(unknown)}; rules are {', '.join(RULE_DURATIONS)}")
    message = pb.Resource(id=resource_id, name=name, labels=labels or {}, capacity=capacity, time_zone=time_zone)
    for rule, length in rules.items():
        if length is not None:
            getattr(message, rule).CopyFrom(duration(length))
    return message


def _unpadded_b64(value: str) -> bytes:
    """Connect sends base64 without padding."""
    return base64.b64decode(value + "=" * (-len(value) % 4))


@dataclasses.dataclass
class ReservationClient:
    base_url: str = "http://127.0.0.1:8000"
    timeout: float = 10.0
    use_json: bool = False
    sign: bool = False
    region: str | None = None
    max_attempts: int = 4
    tenant: str | None = None
    acting_user: str | None = None
    _connections: threading.local = dataclasses.field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )  # each thread's connection to the service, kept alive between its calls

    def __post_init__(self):
        check_base_url(self.base_url)
        if self.sign:
            try:
                import botocore.auth  # noqa: F401
            except ImportError:
                raise ImportError("signing needs botocore: pip install 'my-reservation-tools[client]'") from None

    def reserve(
        self,
        resource_id: str,
        user_id: str,
        start,
        end,
        status: str | None = None,
        note: str = "",
        request_id: str | None = None,
        units: int = 0,
        hold_for=None,
    ) -> pb.Reservation:
        """`status` None leaves it to the service (PENDING); `hold_for` (a timedelta) makes it a hold."""
        wanted = pb.Reservation(
            resource_id=resource_id,
            user_id=user_id,
            start=timestamp(start),
            end=timestamp(end),
            status=STATUS_NAMES[status.upper()] if status else 0,
            note=note,
            units=units,
        )
        request = pb.ReserveRequest(reservation=wanted, request_id=request_id or str(uuid.uuid4()))
        if hold_for is not None:
            request.hold_for.CopyFrom(duration(hold_for))
        # with a request id, a retry after "unknown" (it may have been made) is safe: it cannot book twice
        return self._call("reserve", request, pb.ReserveResponse, also_retry={"unknown"}).reservation

    def reschedule(self, reservation_id: str, start, end, resource_id: str = "") -> pb.Reservation:
        request = pb.RescheduleRequest(
            id=reservation_id, start=timestamp(start), end=timestamp(end), resource_id=resource_id
        )
        return self._call("reschedule", request, pb.RescheduleResponse).reservation

    def define_resource(self, resource_id: str, **fields) -> pb.Resource:
        """Create or change a resource: fields as in rsvp.client.resource()."""
        request = pb.DefineResourceRequest(resource=resource(resource_id, **fields))
        return self._call("define_resource", request, pb.DefineResourceResponse).resource

    def get_resource(self, resource_id: str) -> pb.Resource:
        return self._call("get_resource", pb.GetResourceRequest(id=resource_id), pb.GetResourceResponse).resource

    def list_resources(self, labels: dict | None = None, page_size: int = 0) -> Iterator[pb.Resource]:
        """Every resource carrying `labels`, in id order, page after page."""
        token = ""
        while True:
            page = self._call(
                "list_resources",
                pb.ListResourcesRequest(labels=labels or {}, page_size=page_size, page_token=token),
                pb.ListResourcesResponse,
            )
            yield from page.resources
            token = page.next_page_token
            if not token:
                return

    def delete_resource(self, resource_id: str) -> pb.Resource:
        return self._call(
            "delete_resource", pb.DeleteResourceRequest(id=resource_id), pb.DeleteResourceResponse
        ).resource

    def availability(
        self, start, end, resource_ids=(), labels: dict | None = None, units: int = 0
    ) -> pb.AvailabilityResponse:
        request = pb.AvailabilityRequest(
            resource_ids=list(resource_ids),
            labels=labels or {},
            start=timestamp(start),
            end=timestamp(end),
            units=units,
        )
        return self._call("availability", request, pb.AvailabilityResponse)

    def find_slots(
        self, start, end, length, resource_ids=(), labels: dict | None = None, units: int = 0, limit: int = 0
    ) -> Iterator[pb.Slot]:
        """Bookable (resource, start) slots of `length` (a timedelta), in start order, page after page."""
        token = ""
        while True:
            request = pb.FindSlotsRequest(
                resource_ids=list(resource_ids),
                labels=labels or {},
                start=timestamp(start),
                end=timestamp(end),
                duration=duration(length),
                units=units,
                limit=limit,
                page_token=token,
            )
            page = self._call("find_slots", request, pb.FindSlotsResponse)
            yield from page.slots
            token = page.next_page_token
            if not token:
                return

    def changes(
        self, after: str = "", resource_id: str = "", user_id: str = "", page_size: int = 0
    ) -> pb.ChangesResponse:
        """One page of the change feed after the cursor `after` ("": from the oldest kept event)."""
        request = pb.ChangesRequest(resource_id=resource_id, user_id=user_id, after=after, page_size=page_size)
        return self._call("changes", request, pb.ChangesResponse)

    def listen(self, after: str = "", resource_id: str = "", user_id: str = "") -> "Listener":
        """Change events as they happen, forever (an iterator; see Listener): `after` "" means from now.
        Each event's cursor (and Listener.cursor) is where to resume after a crash."""
        return Listener(self, pb.ListenRequest(resource_id=resource_id, user_id=user_id, after=after))

    def confirm(self, reservation_id: str) -> pb.Reservation:
        return self._call("confirm", pb.ConfirmRequest(id=reservation_id), pb.ConfirmResponse).reservation

    def update(self, reservation_id: str, status: str | None = None, note: str | None = None) -> pb.Reservation:
        request = pb.UpdateRequest(id=reservation_id, status=STATUS_NAMES[status.upper()] if status else 0)
        if note is not None:
            request.note = note
        return self._call("update", request, pb.UpdateResponse).reservation

    def cancel(self, reservation_id: str) -> pb.Reservation:
        return self._call("cancel", pb.CancelRequest(id=reservation_id), pb.CancelResponse).reservation

    def get(self, reservation_id: str) -> pb.Reservation:
        return self._call("get", pb.GetRequest(id=reservation_id), pb.GetResponse).reservation

    def query_page(self, page_token: str = "", page_size: int = 0, **filters) -> pb.FilterResponse:
        """One page: filters are user_id, resource_id, status (name), start, end (datetimes), desc."""
        query = pb.QueryRequest(
            page_token=page_token,
            page_size=page_size,
            user_id=filters.get("user_id", ""),
            resource_id=filters.get("resource_id", ""),
            desc=filters.get("desc", False),
            status=STATUS_NAMES[filters["status"].upper()] if filters.get("status") else 0,
        )
        for bound in ("start", "end"):
            if filters.get(bound) is not None:
                getattr(query, bound).CopyFrom(timestamp(filters[bound]))
        return self._call("filter", pb.FilterRequest(query=query), pb.FilterResponse)

    def query(self, page_size: int = 0, **filters) -> Iterator[pb.Reservation]:
        """Every match, page after page, in start order."""
        token = ""
        while True:
            page = self.query_page(token, page_size, **filters)
            yield from page.reservations
            token = page.next_page_token
            if not token:
                return

    # ---- transport -----------------------------------------------------------

    def _call(self, method: str, request, response_type, also_retry: frozenset = frozenset()):
        return self._retrying(lambda: self._once(method, request, response_type), also_retry)

    def _retrying(self, call, also_retry=frozenset()):
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except ReservationError as error:
                if (error.code not in RETRYABLE_CODES and error.code not in also_retry) or attempt == self.max_attempts:
                    raise
            time.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))

    def _url(self, method: str) -> str:
        return f"{self.base_url.rstrip('/')}/{SERVICE_NAME}/{method}"

    def _headers(self, url: str, body: bytes, content_type: str) -> dict:
        headers = {"Content-Type": content_type, "Connect-Protocol-Version": "1"}
        if self.tenant:
            headers["x-tenant-id"] = self.tenant
        if self.acting_user:
            headers["x-acting-user"] = self.acting_user
        return self._signed(url, body, headers) if self.sign else headers

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._connections, "connection", None)
        if connection is None:
            parts = urllib.parse.urlsplit(self.base_url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            connection = self._connections.connection = kind(parts.hostname, parts.port)
        return connection

    def _post(self, method: str, body: bytes, content_type: str, timeout: float) -> bytes:
        """One POST on this thread's kept-alive connection (a new TCP connection per call cost the client and
        the server a third of a call). A kept connection the server has closed meanwhile fails before the
        server reads the request: that one failure is tried again at once on a new connection."""
        url = self._url(method)
        headers = self._headers(url, body, content_type)
        path = urllib.parse.urlsplit(url).path
        try:
            return self._exchange(path, body, headers, timeout)
        except _KeptConnectionClosed:
            return self._exchange(path, body, headers, timeout)  # on a new connection: its failures are final

    def _exchange(self, path: str, body: bytes, headers: dict, timeout: float) -> bytes:
        connection = self._connection()
        kept = connection.sock is not None
        connection.timeout = timeout
        if kept:
            connection.sock.settimeout(timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        except (OSError, http.client.HTTPException) as failure:
            connection.close()
            if kept and isinstance(failure, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                raise _KeptConnectionClosed() from failure
            raise ReservationError("unavailable", f"cannot reach {self.base_url}: {failure}") from None
        if answer.will_close:
            connection.close()
        if answer.status != 200:
            raise _error_of(answer.status, payload)
        return payload

    def _once(self, method: str, request, response_type):
        content_type = "application/json" if self.use_json else "application/proto"
        body = json_format.MessageToJson(request).encode() if self.use_json else request.SerializeToString()
        payload = self._post(method, body, content_type, self.timeout)
        response = response_type()
        if self.use_json:
            json_format.Parse(payload, response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(payload)
        return response

    def _signed(self, url: str, body: bytes, headers: dict) -> dict:
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = botocore.session.get_session()
        aws_request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(
            session.get_credentials(), "execute-api", self.region or session.get_config_variable("region")
        ).add_auth(aws_request)
        return dict(aws_request.headers.items())


def _error_of(http_status: int, body: bytes) -> ReservationError:
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    return _error_from_json(error, http_status)


def _error_from_json(error, http_status: int) -> ReservationError:
    try:
        code, message = error["code"], error.get("message", "")
    except (KeyError, TypeError, AttributeError):
        return ReservationError(HTTP_FALLBACK_CODES.get(http_status, "unknown"), f"HTTP {http_status}")
    conflict, maybe_made = None, ""
    for detail in error.get("details", []):
        if detail.get("type") == pb.ReservationConflict.DESCRIPTOR.full_name:
            conflict = pb.ReservationConflict.FromString(_unpadded_b64(detail["value"]))
        elif detail.get("type") == pb.OutcomeUnknown.DESCRIPTOR.full_name:
            maybe_made = pb.OutcomeUnknown.FromString(_unpadded_b64(detail["value"])).reservation_id
    return ReservationError(code, message, conflict, maybe_made)


END_STREAM = 0x02


class Listener:
    """The change feed as it happens: iterate it for ChangeEvents (it reconnects from its cursor after a
    lost connection or a long poll's end, retrying as the client does). `cursor` is where to resume:
    the last event's, or the one the server last handed out. `close()` ends the stream and returns
    the events that arrived meanwhile; after it, `cursor` says exactly where to resume. (Before the
    first event or end of a long poll, a reconnect from an empty `after` starts from "now" again.)

    The stream's body is read as it comes, with no read timeout between events (`make serve` and
    gRPC keep a listen open while nothing happens); TCP keepalive notices a peer that went away."""

    def __init__(self, client: ReservationClient, request):
        self.client, self.request, self.cursor = client, request, request.after
        self._answer = self._socket = self._connection = None
        self._buffer = b""
        self._closed = False
        self._events = self._run()

    def __iter__(self):
        return self

    def __next__(self) -> pb.ChangeEvent:
        return next(self._events)

    def connect(self) -> "Listener":
        """Open the stream now (iterating opens it otherwise): events from here on are not missed."""
        if self._answer is None:
            self._open()
        return self

    def _run(self):
        failures = 0
        while not self._closed:
            try:
                if self._answer is None:
                    self._open()
                for event in self._stream():
                    failures = 0
                    yield event
            except ReservationError as error:
                self._disconnect()
                failures += 1
                if error.code not in RETRYABLE_CODES or failures >= self.client.max_attempts:
                    raise
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2**failures)))
            else:  # a clean end (a long poll's): go on from its cursor
                self._disconnect()
                failures = 0

    def _open(self) -> None:
        request = pb.ListenRequest()
        request.CopyFrom(self.request)
        request.after = self.cursor
        body = request.SerializeToString()
        body = struct.pack(">BI", 0, len(body)) + body
        url = self.client._url("listen")
        parts = urllib.parse.urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._connection = kind(parts.hostname, parts.port, timeout=self.client.timeout)
        self._buffer = b""
        try:
            self._connection.connect()
            self._socket = self._connection.sock
            self._connection.request(
                "POST", parts.path, body, self.client._headers(url, body, "application/connect+proto")
            )
            self._answer = self._connection.getresponse()
            if self._answer.status != 200:
                raise _error_of(self._answer.status, self._answer.read())
            self._socket.settimeout(None)  # events may be hours apart
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
                if hasattr(socket, option):
                    self._socket.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        except (OSError, http.client.HTTPException) as failure:
            self._disconnect()
            raise ReservationError("unavailable", f"cannot reach {self.client.base_url}: {failure}") from None
        except ReservationError:
            self._disconnect()
            raise

    def _stream(self):
        """The events of the open stream until its end, each moving the cursor past it as it is read."""
        while True:
            flags, chunk = self._envelope()
            if flags & END_STREAM:
                self._end(chunk)
                return
            event = pb.ChangeEvent.FromString(chunk)
            self.cursor = event.cursor
            yield event

    def _envelope(self) -> tuple:
        """(flags, payload) of the next envelope of the stream."""
        while True:
            if len(self._buffer) >= 5:
                flags, length = struct.unpack(">BI", self._buffer[:5])
                if len(self._buffer) >= 5 + length:
                    chunk, self._buffer = self._buffer[5 : 5 + length], self._buffer[5 + length :]
                    return flags, chunk
            try:
                data = self._answer.read1(65536)
            except (OSError, http.client.HTTPException) as failure:
                raise ReservationError("unavailable", f"the stream broke: {failure}") from None
            if not data:
                raise ReservationError("unavailable", "the stream ended without its end message")
            self._buffer += data

    def _end(self, chunk: bytes) -> None:
        end = json.loads(chunk or b"{}")
        if "error" in end:
            raise _error_from_json(end["error"], 200)
        self.cursor = end.get("metadata", {}).get("cursor", [self.cursor])[0]

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._answer is not None:
            self._answer.close()
        self._answer = self._socket = self._connection = None

    def close(self, wait: float = 3.0) -> list:
        """Ends the stream: tells the server (closing the sending half of the connection: the server
        then ends the stream with its cursor), reads what it still sends for up to `wait` seconds and
        returns the events among it. Without such an answer `cursor` stays the last event's.
        Called while another thread iterates it, it only asks the server to end: that iteration stops
        with the server's end (and returns [] here)."""
        self._closed = True
        try:
            self._events.close()
        except ValueError:  # being iterated in another thread
            try:
                self._socket.shutdown(socket.SHUT_WR)
            except (AttributeError, OSError):
                pass
            return []
        events = []
        if self._answer is not None:
            try:
                self._socket.shutdown(socket.SHUT_WR)
                self._socket.settimeout(wait)
                events.extend(self._stream())
            except Exception:
                pass
            finally:
                self._disconnect()
        return events
