"""The RPC surface: protobuf messages in and out, model values to the rules.

Both adapters (Connect over HTTP in chalicelib.connect, grpcio in
grpc_server.py) call METHODS with the request and a CallContext (who calls,
and how long a stream may go on); the wire checks that only make sense for
protobuf values (Timestamp and Duration ranges, enum numbers) happen here,
every other rule in the rule modules.
"""

import dataclasses
from collections.abc import Callable, Iterator

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from . import validate
from .availability import AvailabilityService
from .errors import ServiceError, invalid
from .feed import LONG_POLL_SECONDS, ChangeFeed
from .gen import reservation_pb2 as pb
from .model import MAX_SECONDS, MIN_SECONDS, NANOS_PER_SECOND, Caller, ChangeEvent, Reservation, Resource, Status
from .ports import Scope
from .query import QuerySpec, run_query
from .resources import ResourceService
from .service import Conflict, MaybeWritten, ReservationService

NEXT_PAGE_TOKEN_TRAILER = "next-page-token"
CURSOR_TRAILER = "cursor"
MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range
SERVICE = pb.DESCRIPTOR.services_by_name["ReservationService"]
SERVICE_NAME = SERVICE.full_name
# the Resource rules given as google.protobuf.Duration, in the proto's order
DURATION_FIELDS = tuple(
    field.name for field in pb.Resource.DESCRIPTOR.fields if field.message_type is Duration.DESCRIPTOR
)


def long_poll(elapsed_seconds: float, events_sent: int) -> bool:
    """How a stream goes on where it cannot stay open (Lambda): until an event or LONG_POLL_SECONDS."""
    return events_sent == 0 and elapsed_seconds < LONG_POLL_SECONDS


@dataclasses.dataclass(frozen=True)
class CallContext:
    caller: Caller = Caller()
    # keep_going(seconds since the stream began, events sent so far): may a stream go on?
    keep_going: Callable[[float, int], bool] = long_poll


def instant_from(field: str, stamp: Timestamp) -> int:
    if not 0 <= stamp.nanos < NANOS_PER_SECOND:
        raise invalid(f"{field}.nanos", f"must be in 0..999999999, got {stamp.nanos}")
    if not MIN_SECONDS <= stamp.seconds <= MAX_SECONDS:
        raise invalid(field, "must lie in years 1 to 9999")
    return stamp.seconds * NANOS_PER_SECOND + stamp.nanos


def timestamp_of(instant_ns: int) -> Timestamp:
    seconds, nanos = divmod(instant_ns, NANOS_PER_SECOND)
    return Timestamp(seconds=seconds, nanos=nanos)


def duration_from(field: str, duration: Duration) -> int:
    if (
        abs(duration.seconds) > MAX_DURATION_SECONDS
        or abs(duration.nanos) >= NANOS_PER_SECOND
        or (duration.seconds * duration.nanos < 0)
    ):
        raise invalid(field, "is not a valid Duration")
    value = duration.seconds * NANOS_PER_SECOND + duration.nanos
    if value < 0:
        raise invalid(field, "must not be negative")
    return value


def duration_of(value_ns: int) -> Duration:
    seconds, nanos = divmod(value_ns, NANOS_PER_SECOND)
    return Duration(seconds=seconds, nanos=nanos)


def status_from(field: str, number: int) -> Status:
    try:
        return Status(number)
    except ValueError:
        raise invalid(field, f"unknown status {number}") from None


def reservation_to_proto(reservation: Reservation) -> pb.Reservation:
    message = pb.Reservation(
        id=reservation.id,
        user_id=reservation.user_id,
        status=int(reservation.status),
        resource_id=reservation.resource_id,
        start=timestamp_of(reservation.start_ns),
        end=timestamp_of(reservation.end_ns),
        note=reservation.note,
        units=reservation.units,
    )
    if reservation.expires_at_ns:
        message.expires_at.CopyFrom(timestamp_of(reservation.expires_at_ns))
    return message


def resource_to_proto(resource: Resource) -> pb.Resource:
    message = pb.Resource(
        id=resource.id,
        name=resource.name,
        labels=dict(resource.labels),
        capacity=resource.capacity,
        time_zone=resource.time_zone,
    )
    for field in DURATION_FIELDS:
        value = getattr(resource, field + "_ns")
        if value:
            getattr(message, field).CopyFrom(duration_of(value))
    return message


def resource_from_proto(message: pb.Resource) -> Resource:
    durations = {
        field + "_ns": duration_from(f"resource.{field}", getattr(message, field)) for field in DURATION_FIELDS
    }
    return Resource(
        id=message.id,
        name=message.name,
        labels=tuple(sorted(message.labels.items())),
        capacity=message.capacity,
        time_zone=message.time_zone,
        **durations,
    )


def event_to_proto(event: ChangeEvent, cursor: str) -> pb.ChangeEvent:
    message = pb.ChangeEvent(cursor=cursor, kind=int(event.kind), at=timestamp_of(event.at_ns))
    if event.reservation is not None:
        message.reservation.CopyFrom(reservation_to_proto(event.reservation))
    if event.before is not None:
        message.before.CopyFrom(reservation_to_proto(event.before))
    if event.resource is not None:
        message.resource.CopyFrom(resource_to_proto(event.resource))
    return message


def _window(reservation: Reservation) -> pb.ReservationWindow:
    return pb.ReservationWindow(
        id=reservation.id,
        start=timestamp_of(reservation.start_ns),
        end=timestamp_of(reservation.end_ns),
        units=reservation.units,
    )


def error_details(error: ServiceError) -> list:
    """Protobuf messages that travel with an error (Connect details / gRPC rich status)."""
    if isinstance(error, Conflict):
        detail = pb.ReservationConflict(
            resource_id=error.resource_id,
            requested=pb.ReservationWindow(
                start=timestamp_of(error.requested.start_ns),
                end=timestamp_of(error.requested.end_ns),
                units=error.requested.units,
            ),
            conflicts=[_window(booking.reservation) for booking in error.blocking],
            total=error.total,
        )
        if error.full_window:
            start, end = error.full_window
            detail.full_window.CopyFrom(pb.ReservationWindow(start=timestamp_of(start), end=timestamp_of(end)))
            detail.units_free = error.units_free
        return [detail]
    if isinstance(error, MaybeWritten):
        return [pb.OutcomeUnknown(reservation_id=error.reservation_id, request_id=error.request_id)]
    return []


class Stream:
    """The messages of a server stream (produced as they are iterated) and the trailers that end it."""

    def __init__(self, messages, trailers: dict | None = None):
        self._messages = messages
        self.trailers = trailers if trailers is not None else {}

    def __iter__(self) -> Iterator:
        return iter(self._messages)


def _scope(caller: Caller, resource_id: str, user_id: str) -> Scope:
    if resource_id and user_id:
        raise invalid("user_id", "give resource_id or user_id, not both")
    return Scope(
        caller.tenant,
        validate.name("resource_id", resource_id, required=False),
        validate.name("user_id", user_id, required=False),
    )


def _interval(start: int, end: int) -> pb.Interval:
    return pb.Interval(start=timestamp_of(start), end=timestamp_of(end))


class ReservationApi:
    def __init__(
        self,
        reservations: ReservationService,
        resources: ResourceService,
        feed: ChangeFeed,
        availability: AvailabilityService,
    ):
        self.reservations = reservations
        self.resources = resources
        self.feed = feed
        self.availability_service = availability

    def reserve(self, request: pb.ReserveRequest, context: CallContext) -> pb.ReserveResponse:
        if not request.HasField("reservation"):
            raise invalid("reservation", "is required")
        wanted = request.reservation
        for field in ("start", "end"):
            if not wanted.HasField(field):
                raise invalid(f"reservation.{field}", "is required")
        if wanted.HasField("expires_at"):
            raise invalid("reservation.expires_at", "is set by the service: ask for a hold with hold_for")
        draft = Reservation(
            id=wanted.id,
            user_id=wanted.user_id,
            resource_id=wanted.resource_id,
            status=status_from("reservation.status", wanted.status),
            start_ns=instant_from("reservation.start", wanted.start),
            end_ns=instant_from("reservation.end", wanted.end),
            note=wanted.note,
            units=wanted.units,
        )
        hold = duration_from("hold_for", request.hold_for) if request.HasField("hold_for") else None
        made = self.reservations.reserve(context.caller, draft, request.request_id, hold)
        return pb.ReserveResponse(reservation=reservation_to_proto(made))

    def confirm(self, request: pb.ConfirmRequest, context: CallContext) -> pb.ConfirmResponse:
        return pb.ConfirmResponse(
            reservation=reservation_to_proto(self.reservations.confirm(context.caller, request.id))
        )

    def update(self, request: pb.UpdateRequest, context: CallContext) -> pb.UpdateResponse:
        note = request.note if request.HasField("note") else None
        changed = self.reservations.update(context.caller, request.id, status_from("status", request.status), note)
        return pb.UpdateResponse(reservation=reservation_to_proto(changed))

    def cancel(self, request: pb.CancelRequest, context: CallContext) -> pb.CancelResponse:
        return pb.CancelResponse(reservation=reservation_to_proto(self.reservations.cancel(context.caller, request.id)))

    def get(self, request: pb.GetRequest, context: CallContext) -> pb.GetResponse:
        return pb.GetResponse(reservation=reservation_to_proto(self.reservations.get(context.caller, request.id)))

    def reschedule(self, request: pb.RescheduleRequest, context: CallContext) -> pb.RescheduleResponse:
        for field in ("start", "end"):
            if not request.HasField(field):
                raise invalid(field, "is required")
        moved = self.reservations.reschedule(
            context.caller,
            request.id,
            instant_from("start", request.start),
            instant_from("end", request.end),
            request.resource_id,
        )
        return pb.RescheduleResponse(reservation=reservation_to_proto(moved))

    def query(self, request: pb.QueryRequest, context: CallContext) -> Stream:
        page = self._page(request, "", context)
        trailers = {NEXT_PAGE_TOKEN_TRAILER: page.next_page_token} if page.next_page_token else {}
        return Stream([reservation_to_proto(r) for r in page.reservations], trailers)

    def filter(self, request: pb.FilterRequest, context: CallContext) -> pb.FilterResponse:
        page = self._page(request.query, "query.", context)
        return pb.FilterResponse(
            reservations=[reservation_to_proto(r) for r in page.reservations], next_page_token=page.next_page_token
        )

    def _page(self, request: pb.QueryRequest, prefix: str, context: CallContext):
        spec = QuerySpec(
            tenant=context.caller.tenant,
            user_id=validate.name(f"{prefix}user_id", request.user_id, required=False),
            resource_id=validate.name(f"{prefix}resource_id", request.resource_id, required=False),
            status=status_from(f"{prefix}status", request.status),
            start_ns=instant_from(f"{prefix}start", request.start) if request.HasField("start") else None,
            end_ns=instant_from(f"{prefix}end", request.end) if request.HasField("end") else None,
            page_size=request.page_size,
            page_token=request.page_token,
            descending=request.desc,
        )
        return run_query(self.reservations.store, spec, self.reservations.clock(), self.reservations.pool_lookback)

    def define_resource(self, request: pb.DefineResourceRequest, context: CallContext) -> pb.DefineResourceResponse:
        if not request.HasField("resource"):
            raise invalid("resource", "is required")
        defined = self.resources.define(context.caller.tenant, resource_from_proto(request.resource))
        return pb.DefineResourceResponse(resource=resource_to_proto(defined))

    def get_resource(self, request: pb.GetResourceRequest, context: CallContext) -> pb.GetResourceResponse:
        return pb.GetResourceResponse(resource=resource_to_proto(self.resources.get(context.caller.tenant, request.id)))

    def list_resources(self, request: pb.ListResourcesRequest, context: CallContext) -> pb.ListResourcesResponse:
        found, token = self.resources.list(
            context.caller.tenant, dict(request.labels), request.page_size, request.page_token
        )
        return pb.ListResourcesResponse(resources=[resource_to_proto(r) for r in found], next_page_token=token)

    def delete_resource(self, request: pb.DeleteResourceRequest, context: CallContext) -> pb.DeleteResourceResponse:
        return pb.DeleteResourceResponse(
            resource=resource_to_proto(self.resources.delete(context.caller.tenant, request.id))
        )

    def availability(self, request: pb.AvailabilityRequest, context: CallContext) -> pb.AvailabilityResponse:
        start, end = self._bounds(request)
        found = self.availability_service.availability(
            context.caller.tenant, list(request.resource_ids), dict(request.labels), start, end, request.units
        )
        return pb.AvailabilityResponse(
            resources=[
                pb.ResourceAvailability(
                    resource_id=entry.resource_id,
                    capacity=entry.capacity,
                    busy=[_interval(s, e) for s, e in entry.busy],
                    free=[_interval(s, e) for s, e in entry.free],
                    free_units=[
                        pb.UnitsInterval(start=timestamp_of(s), end=timestamp_of(e), free=units)
                        for s, e, units in entry.free_units
                    ],
                )
                for entry in found
            ]
        )

    def find_slots(self, request: pb.FindSlotsRequest, context: CallContext) -> pb.FindSlotsResponse:
        start, end = self._bounds(request)
        if not request.HasField("duration"):
            raise invalid("duration", "is required")
        slots, token = self.availability_service.find_slots(
            context.caller.tenant,
            list(request.resource_ids),
            dict(request.labels),
            start,
            end,
            duration_from("duration", request.duration),
            request.units,
            request.limit,
            request.page_token,
        )
        return pb.FindSlotsResponse(
            slots=[pb.Slot(resource_id=rid, start=timestamp_of(s), end=timestamp_of(e)) for rid, s, e in slots],
            next_page_token=token,
        )

    @staticmethod
    def _bounds(request) -> tuple:
        for field in ("start", "end"):
            if not request.HasField(field):
                raise invalid(field, "is required")
        return instant_from("start", request.start), instant_from("end", request.end)

    def changes(self, request: pb.ChangesRequest, context: CallContext) -> pb.ChangesResponse:
        scope = _scope(context.caller, request.resource_id, request.user_id)
        page = self.feed.changes(scope, request.after, request.page_size)
        return pb.ChangesResponse(
            events=[event_to_proto(event, cursor) for event, cursor in page.events], cursor=page.cursor
        )

    def listen(self, request: pb.ListenRequest, context: CallContext) -> Stream:
        scope = _scope(context.caller, request.resource_id, request.user_id)
        position = self.feed.start(scope, request.after, from_now=True)  # a bad cursor fails before streaming
        stream = Stream(None)

        def messages():
            sent = [0]  # read by keep_going between pages
            for page in self.feed.listen(scope, position, lambda elapsed: context.keep_going(elapsed, sent[0])):
                for event, cursor in page.events:
                    sent[0] += 1
                    yield event_to_proto(event, cursor)
                stream.trailers[CURSOR_TRAILER] = page.cursor

        stream._messages = messages()
        return stream


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    request_type: type
    response_type: type
    server_streaming: bool
    call: Callable  # (ReservationApi, request, CallContext) -> response, or a Stream of responses


def _methods() -> dict:
    """Every RPC of the service descriptor, bound to the ReservationApi method of the same name."""
    methods = {}
    for descriptor in SERVICE.methods:
        implementation = getattr(
            ReservationApi, descriptor.name.lower() if descriptor.name == "Query" else descriptor.name
        )
        methods[descriptor.name] = Method(
            descriptor.name,
            pb.__dict__[descriptor.input_type.name],
            pb.__dict__[descriptor.output_type.name],
            descriptor.server_streaming,
            implementation,
        )
    return methods


METHODS = _methods()
