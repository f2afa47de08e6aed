"""A small typed Python client for my-reservation: Connect over HTTP, stdlib only (+ botocore to sign).

    from rsvp.client import ReservationClient
    client = ReservationClient("http://127.0.0.1:8000")
    made = client.reserve(resource_id="room-1", user_id="alice", start=datetime(...), end=datetime(...))
    for reservation in client.query(resource_id="room-1"):   # walks every page
        ...

Retries (bounded, jittered) only on retryable codes and lost connections.
reserve always carries a request id (made here unless given), so its retries
can never book twice. A retried cancel whose first answer was lost may answer
NOT_FOUND. With `sign=True` requests are SigV4-signed for the IAM-protected
prod stage (botocore's signer, default credential chain).
"""
import base64
import dataclasses
import datetime
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Iterator, Optional

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb

RETRYABLE_CODES = {"unavailable", "aborted", "deadline_exceeded", "resource_exhausted"}
HTTP_FALLBACK_CODES = {400: "internal", 401: "unauthenticated", 403: "permission_denied", 404: "unimplemented",
                       429: "unavailable", 502: "unavailable", 503: "unavailable", 504: "unavailable"}
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
        parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError as error:
        raise ValueError(f"bad URL {url!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        hint = f" (did you mean 'http://{url}'?)" if "://" not in url and url else ""
        raise ValueError(f"bad URL {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT][/PATH]{hint}")
    return url


class ReservationError(Exception):
    """A failed call: `code` is the Connect code ("failed_precondition", "not_found", ...)."""

    def __init__(self, code: str, message: str, conflicts: tuple = ()):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.conflicts = conflicts  # ReservationWindow messages, for failed_precondition on reserve


def timestamp(moment) -> Timestamp:
    """A Timestamp from an aware datetime (naive ones are refused: their zone is a guess)."""
    if isinstance(moment, Timestamp):
        return moment
    if moment.tzinfo is None:
        raise ValueError("datetimes must carry a time zone")
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(datetime.timezone.utc))
    return stamp


@dataclasses.dataclass
class ReservationClient:
    base_url: str = "http://127.0.0.1:8000"
    timeout: float = 10.0
    use_json: bool = False
    sign: bool = False
    region: Optional[str] = None
    max_attempts: int = 4

    def __post_init__(self):
        check_base_url(self.base_url)
        if self.sign:
            try:
                import botocore.auth  # noqa: F401
            except ImportError:
                raise ImportError("signing needs botocore: pip install 'my-reservation-tools[client]'") from None

    def reserve(self, resource_id: str, user_id: str, start, end, status: Optional[str] = None, note: str = "",
                request_id: Optional[str] = None) -> pb.Reservation:
        """`status` None leaves it to the service (PENDING)."""
        wanted = pb.Reservation(resource_id=resource_id, user_id=user_id, start=timestamp(start),
                                end=timestamp(end), status=STATUS_NAMES[status.upper()] if status else 0, note=note)
        request = pb.ReserveRequest(reservation=wanted, request_id=request_id or str(uuid.uuid4()))
        return self._call("reserve", request, pb.ReserveResponse).reservation

    def confirm(self, reservation_id: str) -> pb.Reservation:
        return self._call("confirm", pb.ConfirmRequest(id=reservation_id), pb.ConfirmResponse).reservation

    def update(self, reservation_id: str, status: Optional[str] = None, note: Optional[str] = None) -> pb.Reservation:
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
        query = pb.QueryRequest(page_token=page_token, page_size=page_size, user_id=filters.get("user_id", ""),
                                resource_id=filters.get("resource_id", ""), desc=filters.get("desc", False),
                                status=STATUS_NAMES[filters["status"].upper()] if filters.get("status") else 0)
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

    def _call(self, method: str, request, response_type):
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._once(method, request, response_type)
            except ReservationError as error:
                if error.code not in RETRYABLE_CODES or attempt == self.max_attempts:
                    raise
            time.sleep(random.uniform(0, min(2.0, 0.1 * 2 ** attempt)))

    def _once(self, method: str, request, response_type):
        content_type = "application/json" if self.use_json else "application/proto"
        body = json_format.MessageToJson(request).encode() if self.use_json else request.SerializeToString()
        url = f"{self.base_url.rstrip('/')}/{SERVICE_NAME}/{method}"
        headers = {"Content-Type": content_type, "Connect-Protocol-Version": "1"}
        if self.sign:
            headers = self._signed(url, body, headers)
        http_request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as answer:
                payload = answer.read()
        except urllib.error.HTTPError as failure:
            raise _error_of(failure.code, failure.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as failure:
            raise ReservationError("unavailable", f"cannot reach {self.base_url}: {failure}") from None
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
        SigV4Auth(session.get_credentials(), "execute-api", self.region or session.get_config_variable("region")
                  ).add_auth(aws_request)
        return dict(aws_request.headers.items())


def _error_of(http_status: int, body: bytes) -> ReservationError:
    try:
        error = json.loads(body)
        code, message = error["code"], error.get("message", "")
    except (ValueError, KeyError, TypeError):
        return ReservationError(HTTP_FALLBACK_CODES.get(http_status, "unknown"), f"HTTP {http_status}")
    conflicts = []
    for detail in error.get("details", []):
        if detail.get("type") == "reservation.ReservationConflict":
            value = detail["value"]
            conflict = pb.ReservationConflict.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))
            conflicts += list(conflict.conflicts)
    return ReservationError(code, message, tuple(conflicts))
