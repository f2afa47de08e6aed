"""Small helpers shared by the tests: building requests and reading Connect answers."""

import datetime
import json

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb

PATH = "/reservation.ReservationService/"
BASE_TIME = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def stamp(minutes: float = 0, nanos: int = 0, base: datetime.datetime = BASE_TIME) -> Timestamp:
    """A Timestamp `minutes` after 2026-12-01T00:00Z, plus `nanos`."""
    moment = base + datetime.timedelta(minutes=minutes)
    whole = int(moment.timestamp())
    return Timestamp(seconds=whole, nanos=nanos)


def reservation(resource="room-1", user="alice", start=0.0, end=60.0, status=0, note="", **extra) -> pb.Reservation:
    return pb.Reservation(
        resource_id=resource, user_id=user, start=stamp(start), end=stamp(end), status=status, note=note, **extra
    )


class ConnectAnswer:
    """An HTTP answer to a unary Connect call: `.message` on success, `.code`/`.error` on failure."""

    def __init__(self, status: int, headers, body: bytes, response_type, codec: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.error = None
        self.message = None
        if status == 200:
            self.message = response_type()
            if codec == "proto":
                self.message.ParseFromString(body)
            else:
                json_format.Parse(body, self.message)
        else:
            self.error = json.loads(body)

    @property
    def code(self) -> str:
        return self.error["code"] if self.error else "ok"

    def __repr__(self):
        return f"ConnectAnswer({self.status}, {self.error or self.message})"


def encode(message, codec: str) -> bytes:
    if codec == "proto":
        return message.SerializeToString()
    return json_format.MessageToJson(message).encode()


RESPONSE_TYPES = {
    "reserve": pb.ReserveResponse,
    "confirm": pb.ConfirmResponse,
    "update": pb.UpdateResponse,
    "cancel": pb.CancelResponse,
    "get": pb.GetResponse,
}


def replay_feed(events: list, start: dict | None = None) -> tuple:
    """The state `events` lead to from `start` ({"reservations": id -> Reservation, "resources": id ->
    Resource}; default: nothing), and what did not fit: an event whose `before` is not the state it
    changes (a doubled or missing one)."""
    start = start or {"reservations": {}, "resources": {}}
    reservations, resources = dict(start["reservations"]), dict(start["resources"])
    problems = []
    for event in events:
        kind = pb.ChangeKind.Name(event.kind)
        rid = event.reservation.id
        if kind == "RESERVATION_CREATED":
            if rid in reservations:
                problems.append(f"{kind} of {rid}, which exists")
            reservations[rid] = event.reservation
        elif kind in (
            "RESERVATION_CONFIRMED",
            "RESERVATION_UPDATED",
            "RESERVATION_RESCHEDULED",
            "RESERVATION_CANCELLED",
            "RESERVATION_EXPIRED",
        ):
            if reservations.get(rid) != event.before:
                problems.append(f"{kind} of {rid}: its before is not the reservation as it was")
            if kind in ("RESERVATION_CANCELLED", "RESERVATION_EXPIRED"):
                reservations.pop(rid, None)
            else:
                if event.reservation == event.before:
                    problems.append(f"{kind} of {rid} changes nothing")
                reservations[rid] = event.reservation
        elif kind == "RESOURCE_DEFINED":
            resources[event.resource.id] = event.resource
        elif kind == "RESOURCE_DELETED":
            if event.resource.id not in resources:
                problems.append(f"{kind} of {event.resource.id}, which is not defined")
            resources.pop(event.resource.id, None)
        else:
            problems.append(f"event of kind {kind}")
    return {"reservations": reservations, "resources": resources}, problems
