"""The RPC surface: protobuf messages in and out, model values to the service.

Both adapters (Connect over HTTP in app.py, grpcio in rsvp) call METHODS; the
wire checks that only make sense for protobuf values (Timestamp ranges, enum
numbers) happen here, every other rule in chalicelib.service.
"""
import dataclasses
from typing import Callable, Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from .errors import ServiceError, invalid
from .gen import reservation_pb2 as pb
from .model import MAX_SECONDS, MIN_SECONDS, NANOS_PER_SECOND, Reservation, Status
from .query import QuerySpec
from .service import Conflict, ReservationService

NEXT_PAGE_TOKEN_TRAILER = "next-page-token"


def instant_from(field: str, stamp: Timestamp) -> int:
    if not 0 <= stamp.nanos < NANOS_PER_SECOND:
        raise invalid(f"{field}.nanos", f"must be in 0..999999999, got {stamp.nanos}")
    if not MIN_SECONDS <= stamp.seconds <= MAX_SECONDS:
        raise invalid(field, "must lie in years 1 to 9999")
    return stamp.seconds * NANOS_PER_SECOND + stamp.nanos


def timestamp_of(instant_ns: int) -> Timestamp:
    seconds, nanos = divmod(instant_ns, NANOS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=nanos)


def status_from(field: str, number: int) -> Status:
    try:
        return Status(number)
    except ValueError:
        raise invalid(field, f"unknown status {number}") from None


def reservation_to_proto(reservation: Reservation) -> pb.Reservation:
    return pb.Reservation(
        id=reservation.id, user_id=reservation.user_id, status=int(reservation.status),
        resource_id=reservation.resource_id, start=timestamp_of(reservation.start_ns),
        end=timestamp_of(reservation.end_ns), note=reservation.note)


def window_to_proto(claim) -> pb.ReservationWindow:
    return pb.ReservationWindow(id=claim.reservation_id, start=timestamp_of(claim.start_ns),
                                end=timestamp_of(claim.end_ns))


def error_details(error: ServiceError) -> list:
    """Protobuf messages that travel with an error (Connect details / gRPC rich status)."""
    if isinstance(error, Conflict):
        return [pb.ReservationConflict(resource_id=error.resource_id, requested=window_to_proto(error.requested),
                                       conflicts=[window_to_proto(claim) for claim in error.claims])]
    return []


class ReservationApi:
    def __init__(self, service: ReservationService):
        self.service = service

    def reserve(self, request: pb.ReserveRequest) -> pb.ReserveResponse:
        if not request.HasField("reservation"):
            raise invalid("reservation", "is required")
        wanted = request.reservation
        for field in ("start", "end"):
            if not wanted.HasField(field):
                raise invalid(f"reservation.{field}", "is required")
        draft = Reservation(
            id=wanted.id, user_id=wanted.user_id, resource_id=wanted.resource_id,
            status=status_from("reservation.status", wanted.status),
            start_ns=instant_from("reservation.start", wanted.start),
            end_ns=instant_from("reservation.end", wanted.end), note=wanted.note)
        made = self.service.reserve(draft, request.request_id)
        return pb.ReserveResponse(reservation=reservation_to_proto(made))

    def confirm(self, request: pb.ConfirmRequest) -> pb.ConfirmResponse:
        return pb.ConfirmResponse(reservation=reservation_to_proto(self.service.confirm(request.id)))

    def update(self, request: pb.UpdateRequest) -> pb.UpdateResponse:
        note = request.note if request.HasField("note") else None
        changed = self.service.update(request.id, status_from("status", request.status), note)
        return pb.UpdateResponse(reservation=reservation_to_proto(changed))

    def cancel(self, request: pb.CancelRequest) -> pb.CancelResponse:
        return pb.CancelResponse(reservation=reservation_to_proto(self.service.cancel(request.id)))

    def get(self, request: pb.GetRequest) -> pb.GetResponse:
        return pb.GetResponse(reservation=reservation_to_proto(self.service.get(request.id)))

    def query(self, request: pb.QueryRequest) -> "Stream":
        page = self._page(request, "")
        trailers = {NEXT_PAGE_TOKEN_TRAILER: page.next_page_token} if page.next_page_token else {}
        return Stream([reservation_to_proto(r) for r in page.reservations], trailers)

    def filter(self, request: pb.FilterRequest) -> pb.FilterResponse:
        page = self._page(request.query, "query.")
        return pb.FilterResponse(reservations=[reservation_to_proto(r) for r in page.reservations],
                                 next_page_token=page.next_page_token)

    def _page(self, request: pb.QueryRequest, prefix: str):
        spec = QuerySpec(
            user_id=request.user_id, resource_id=request.resource_id,
            status=status_from(f"{prefix}status", request.status),
            start_ns=instant_from(f"{prefix}start", request.start) if request.HasField("start") else None,
            end_ns=instant_from(f"{prefix}end", request.end) if request.HasField("end") else None,
            page_size=request.page_size, page_token=request.page_token, descending=request.desc)
        return self.service.query(spec)


@dataclasses.dataclass
class Stream:
    """The messages of a server stream and the trailers that end it."""

    messages: list
    trailers: dict

    def __iter__(self) -> Iterator:
        return iter(self.messages)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    request_type: type
    response_type: type
    server_streaming: bool
    call: Callable  # (ReservationApi, request) -> response, or iterator of responses


METHODS = {method.name: method for method in (
    Method("reserve", pb.ReserveRequest, pb.ReserveResponse, False, ReservationApi.reserve),
    Method("confirm", pb.ConfirmRequest, pb.ConfirmResponse, False, ReservationApi.confirm),
    Method("update", pb.UpdateRequest, pb.UpdateResponse, False, ReservationApi.update),
    Method("cancel", pb.CancelRequest, pb.CancelResponse, False, ReservationApi.cancel),
    Method("get", pb.GetRequest, pb.GetResponse, False, ReservationApi.get),
    Method("Query", pb.QueryRequest, pb.Reservation, True, ReservationApi.query),
    Method("filter", pb.FilterRequest, pb.FilterResponse, False, ReservationApi.filter),
)}
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReservationService"].full_name  # "reservation.ReservationService"
