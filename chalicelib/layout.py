"""The item layout of the one DynamoDB table: keys, attributes, and which items an interval touches.

Every module that reads or writes raw items (the store, the checker, the bulk
loader, the migration) goes through these functions; nothing else knows an
attribute name. Keys of tenant T start with `T#<T>#`; the default tenant's
keys have no prefix, so the data of the first release stays where it was.

    item          pk                     sk                      what
    reservation   RSV#<id>               RSV                     the reservation, read by id; `rev`
    booking       RES#<resource>         R#<start_key>           the same reservation, in its resource's
                                                                 partition in start order (+ index keys)
    guard         RES#<resource>         G#<slot>                `ver`, `busy`, `dense`: exclusive resources
    bucket        RES#<resource>         B#<bucket>              `cap`, `c<sec>`: units used per grid cell (pools)
    definition    RES#<resource>         DEF                     the resource's rules and storage shape
    request id    REQ#<request id>       REQ                     what a reserve with that request id made
    user          USR#<user>             USR                     the longest reservation the user made
    tenant        TEN                    TEN                     the longest reservation of the tenant
    event         EVR#<resource>         <event key>             one change, for the change feed

Indexes: by_user (uk, start_key) and by_tenant (tk, start_key) over bookings;
holds (hk, hexp) over bookings of holds; resources (dk, did) over defined
resources; events_by_user (euk, ek) and events_by_tenant (etk, ek) over events.
"""

import dataclasses

from .model import (
    DAY_NS,
    DEFAULT_TENANT,
    DURATION_RULES,
    HOUR_NS,
    MIN_NS,
    MINUTE_NS,
    NANOS_PER_SECOND,
    Booking,
    ChangeEvent,
    ChangeKind,
    Reservation,
    Resource,
    Status,
)
from .timegrid import Grid

RESERVATION_SK = "RSV"
REQUEST_SK = "REQ"
USER_SK = "USR"
TENANT_SK = "TEN"
DEFINITION_SK = "DEF"
BOOKING_PREFIX = "R#"
GUARD_PREFIX = "G#"
BUCKET_PREFIX = "B#"
BY_USER = "by_user"
BY_TENANT = "by_tenant"
HOLDS = "holds"
RESOURCES = "resources"
EVENTS_BY_USER = "events_by_user"
EVENTS_BY_TENANT = "events_by_tenant"
HOLD_SHARDS = 8
INDEX_OFFSET = 10**18  # keeps negative slot and bucket numbers in lexical order

# Guard slots: resources without a definition (or without max_duration) get
# DEFAULT_SLOT_NS; defined ones the smallest of SLOT_LADDER that holds their
# longest padded reservation, so a reservation touches at most two guards.
DEFAULT_SLOT_NS = 5 * DAY_NS
SLOT_LADDER = (MINUTE_NS, 5 * MINUTE_NS, 15 * MINUTE_NS, HOUR_NS, 6 * HOUR_NS, DAY_NS, DEFAULT_SLOT_NS)
MAX_GUARDS = 77  # 380 days at DEFAULT_SLOT_NS, at any alignment
# A guard lists the windows of the bookings that touch its slot (so that a reserve in a quiet slot
# needs no second read) until GUARD_LISTED would be passed; then it is `dense` and readers query.
GUARD_LISTED = 8
CELLS_PER_BUCKET = 24
MAX_BUCKETS = 60


# ---- storage shape -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """How a resource's claims are stored: fixed when it is first defined or used.

    Exclusive resources serialise writers through guard items of `slot_ns`;
    pools count units per cell of their step grid in bucket items spanning
    `bucket_ns` of time each.
    """

    pool: bool = False
    slot_ns: int = DEFAULT_SLOT_NS
    step_ns: int = 0
    time_zone: str = ""

    @property
    def bucket_ns(self) -> int:
        return self.step_ns * CELLS_PER_BUCKET

    @property
    def grid(self) -> Grid:
        return Grid(self.step_ns, self.time_zone)

    def slots(self, padded_start_ns: int, padded_end_ns: int) -> range:
        """The guard slots an exclusive claim of [start, end) touches: THE owner of that arithmetic."""
        return range(padded_start_ns // self.slot_ns, (padded_end_ns - 1) // self.slot_ns + 1)

    def slot_span(self, index: int) -> tuple:
        return index * self.slot_ns, (index + 1) * self.slot_ns

    def bucket_of(self, cell_start_ns: int) -> int:
        return cell_start_ns // self.bucket_ns

    def bucket_span(self, index: int) -> tuple:
        return index * self.bucket_ns, (index + 1) * self.bucket_ns

    def cells(self, padded_start_ns: int, padded_end_ns: int) -> list:
        """The grid cells [start, end) a pool claim counts its units in."""
        return self.grid.cells(padded_start_ns, padded_end_ns)

    def longest_ns(self) -> int:
        """The longest padded claim this shape can store in one transaction."""
        if self.pool:
            return (MAX_BUCKETS - 1) * self.bucket_ns
        return (MAX_GUARDS - 1) * self.slot_ns


def shape_for(resource: Resource) -> Shape:
    """The storage shape of a resource defined before its first reservation."""
    if resource.is_pool:
        return Shape(pool=True, slot_ns=0, step_ns=resource.step_ns, time_zone=resource.time_zone)
    if not resource.max_duration_ns:
        return Shape()
    padded = resource.max_duration_ns + resource.buffer_before_ns + resource.buffer_after_ns
    return Shape(slot_ns=next((size for size in SLOT_LADDER if size >= padded), DEFAULT_SLOT_NS))


# ---- stored records ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StoredResource:
    """A definition item. `defined` is False for the marker the first reservation of an
    undefined resource leaves (it fixes the default shape); `deleted` for a deleted one."""

    resource: Resource
    shape: Shape
    rev: int = 1
    crev: int = 1  # changes when the capacity changes: pools' new buckets are conditioned on it
    defined: bool = True
    deleted: bool = False
    longest_ns: int = 0  # longest padded claim ever stored: how far back a pool query looks
    max_buffer_before_ns: int = 0  # largest buffer_before ever stored: bounds the neighbour read
    last_event_ns: int = 0

    @property
    def live(self) -> bool:
        return self.defined and not self.deleted


@dataclasses.dataclass(frozen=True)
class RememberedRequest:
    fingerprint: str
    reservation: Reservation


@dataclasses.dataclass(frozen=True)
class Guard:
    """An exclusive resource's guard as read: its version (0: absent) and, unless `dense`, the
    padded windows of every booking that touches its slot."""

    index: int
    version: int = 0
    entries: tuple = ()  # of Booking (partial: id, window, buffers, hold expiry)
    dense: bool = False

    @property
    def listed(self) -> int:
        return len(self.entries)


@dataclasses.dataclass(frozen=True)
class Bucket:
    """A pool's unit counters over one bucket span: cell start -> units used."""

    index: int
    cap: int = 0
    used: tuple = ()  # sorted (cell start ns, units)
    exists: bool = False

    def used_at(self, cell_start_ns: int) -> int:
        return dict(self.used).get(cell_start_ns, 0)


# ---- keys ------------------------------------------------------------------------------


def prefix(tenant: str) -> str:
    return "" if tenant == DEFAULT_TENANT else f"T#{tenant}#"


def tenant_of(pk: str) -> str:
    if pk.startswith("T#"):
        return pk[2:].split("#", 1)[0]
    return DEFAULT_TENANT


def start_key(start_ns: int, reservation_id: str) -> str:
    """Sort key of bookings and their indexes: lexical order = start order, ties by id."""
    return f"{start_key_bound(start_ns)}#{reservation_id}"


def start_key_bound(instant_ns: int) -> str:
    """Sorts after every start_key of an earlier start and before every one starting at `instant_ns` or later."""
    return f"{instant_ns - MIN_NS:021d}"


def _index_key(index: int) -> str:
    return f"{index + INDEX_OFFSET:020d}"


def _index_of(text: str) -> int:
    return int(text) - INDEX_OFFSET


def key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def pair(item_key: dict) -> tuple:
    return item_key["pk"]["S"], item_key["sk"]["S"]


def reservation_key(tenant: str, reservation_id: str) -> dict:
    return key(f"{prefix(tenant)}RSV#{reservation_id}", RESERVATION_SK)


def resource_pk(tenant: str, resource_id: str) -> str:
    return f"{prefix(tenant)}RES#{resource_id}"


def booking_key(tenant: str, reservation: Reservation) -> dict:
    return key(
        resource_pk(tenant, reservation.resource_id), BOOKING_PREFIX + start_key(reservation.start_ns, reservation.id)
    )


def booking_sk_bound(instant_ns: int) -> str:
    return BOOKING_PREFIX + start_key_bound(instant_ns)


def guard_key(tenant: str, resource_id: str, index: int) -> dict:
    return key(resource_pk(tenant, resource_id), GUARD_PREFIX + _index_key(index))


def bucket_key(tenant: str, resource_id: str, index: int) -> dict:
    return key(resource_pk(tenant, resource_id), BUCKET_PREFIX + _index_key(index))


def bucket_sk(index: int) -> str:
    return BUCKET_PREFIX + _index_key(index)


def definition_key(tenant: str, resource_id: str) -> dict:
    return key(resource_pk(tenant, resource_id), DEFINITION_SK)


def request_key(tenant: str, request_id: str) -> dict:
    return key(f"{prefix(tenant)}REQ#{request_id}", REQUEST_SK)


def user_key(tenant: str, user_id: str) -> dict:
    return key(f"{prefix(tenant)}USR#{user_id}", USER_SK)


def longest_key(tenant: str, user_id: str) -> dict:
    """Where the longest reservation of a user (or, user_id "", of the whole tenant) is kept."""
    return user_key(tenant, user_id) if user_id else key(f"{prefix(tenant)}TEN", TENANT_SK)


def longest_of(item: dict | None) -> int:
    return _int(item, "longest") if item is not None else 0


def events_pk(tenant: str, resource_id: str) -> str:
    return f"{prefix(tenant)}EVR#{resource_id}"


def event_key_of(at_ns: int, event_id: str) -> str:
    """Sort key of events: time order, ties by id."""
    return f"{at_ns - MIN_NS:021d}#{event_id}"


def event_key_bound(at_ns: int) -> str:
    return f"{at_ns - MIN_NS:021d}"


def event_time_of(event_key: str) -> int:
    return int(event_key.split("#", 1)[0]) + MIN_NS


def user_index_key(tenant: str, user_id: str) -> str:
    return f"{tenant}#{user_id}"


def hold_shard(reservation_id: str) -> str:
    """Holds spread over a few index partitions (ids are UUIDs: hex digits)."""
    return f"H#{int(reservation_id[:2], 16) % HOLD_SHARDS}"


# ---- attribute values -------------------------------------------------------------------


def _n(value: int) -> dict:
    return {"N": str(value)}


def _s(value: str) -> dict:
    return {"S": value}


def _int(item: dict, name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value is not None else default


def _str(item: dict, name: str, default: str = "") -> str:
    value = item.get(name)
    return value["S"] if value is not None else default


def ttl_seconds(instant_ns: int) -> int:
    return instant_ns // NANOS_PER_SECOND


HOLD_TTL_GRACE_NS = 2 * DAY_NS  # TTL deletes a hold the sweep missed this long after it expired


def reservation_attributes(reservation: Reservation) -> dict:
    """The fields of a reservation, as the request id record and events keep them."""
    return {
        "id": _s(reservation.id),
        "user_id": _s(reservation.user_id),
        "resource_id": _s(reservation.resource_id),
        "status": _n(int(reservation.status)),
        "start": _n(reservation.start_ns),
        "end": _n(reservation.end_ns),
        "note": _s(reservation.note),
        "units": _n(reservation.units),
        "exp": _n(reservation.expires_at_ns),
    }


def reservation_from(attributes: dict) -> Reservation:
    return Reservation(
        id=attributes["id"]["S"],
        user_id=attributes["user_id"]["S"],
        resource_id=attributes["resource_id"]["S"],
        status=Status(int(attributes["status"]["N"])),
        start_ns=int(attributes["start"]["N"]),
        end_ns=int(attributes["end"]["N"]),
        note=attributes["note"]["S"],
        units=_int(attributes, "units", 1),
        expires_at_ns=_int(attributes, "exp"),
    )


def _booking_attributes(booking: Booking) -> dict:
    attributes = {
        **reservation_attributes(booking.reservation),
        "rev": _n(booking.rev),
        "bb": _n(booking.buffer_before_ns),
        "ba": _n(booking.buffer_after_ns),
        "ets": _n(booking.last_event_ns),
    }
    if booking.pooled:
        attributes["pool"] = {"BOOL": True}
    else:
        attributes["slot"] = _n(booking.slot_ns or DEFAULT_SLOT_NS)
    if booking.reservation.expires_at_ns:
        attributes["expires_at"] = _n(ttl_seconds(booking.reservation.expires_at_ns + HOLD_TTL_GRACE_NS))
    return attributes


def reservation_item(tenant: str, booking: Booking) -> dict:
    """The item read by id."""
    return {**reservation_key(tenant, booking.reservation.id), **_booking_attributes(booking)}


def booking_item(tenant: str, booking: Booking) -> dict:
    """The item in the resource's partition, with the keys of the by_user, by_tenant and holds indexes."""
    reservation = booking.reservation
    item = {
        **booking_key(tenant, reservation),
        **_booking_attributes(booking),
        "uk": _s(user_index_key(tenant, reservation.user_id)),
        "tk": _s(tenant),
        "start_key": _s(start_key(reservation.start_ns, reservation.id)),
    }
    if reservation.status == Status.PENDING and reservation.expires_at_ns:
        item["hk"] = _s(hold_shard(reservation.id))
        item["hexp"] = _n(reservation.expires_at_ns)
    return item


def booking_from(item: dict) -> Booking:
    return Booking(
        reservation_from(item),
        rev=_int(item, "rev", 1),
        buffer_before_ns=_int(item, "bb"),
        buffer_after_ns=_int(item, "ba"),
        last_event_ns=_int(item, "ets"),
        pooled="pool" in item,
        slot_ns=0 if "pool" in item else _int(item, "slot", DEFAULT_SLOT_NS),
    )


def guard_entry(booking: Booking) -> dict:
    """What a guard keeps of a booking: [start, end, buffer before, buffer after, hold expiry]."""
    reservation = booking.reservation
    hold = reservation.expires_at_ns if reservation.status == Status.PENDING else 0
    return {
        "L": [
            _n(reservation.start_ns),
            _n(reservation.end_ns),
            _n(booking.buffer_before_ns),
            _n(booking.buffer_after_ns),
            _n(hold),
        ]
    }


def guard_from(resource_id: str, index: int, item: dict | None) -> Guard:
    if item is None or "ver" not in item:
        return Guard(index)
    entries = []
    for reservation_id, value in sorted(item.get("busy", {}).get("M", {}).items()):
        start, end, before, after, hold = (int(number["N"]) for number in value["L"])
        status = Status.PENDING if hold else Status.CONFIRMED
        entries.append(
            Booking(
                Reservation(reservation_id, "", resource_id, status, start, end, expires_at_ns=hold),
                rev=0,
                buffer_before_ns=before,
                buffer_after_ns=after,
            )
        )
    return Guard(index, _int(item, "ver"), tuple(entries), item.get("dense", {}).get("BOOL", False))


def guard_item(tenant: str, resource_id: str, index: int, bookings: list, version: int = 1) -> dict:
    """A guard listing `bookings` (dense when there are more than GUARD_LISTED): for loading and migrating."""
    dense = len(bookings) > GUARD_LISTED
    busy = {} if dense else {booking.reservation.id: guard_entry(booking) for booking in bookings}
    return {**guard_key(tenant, resource_id, index), "ver": _n(version), "busy": {"M": busy}, "dense": {"BOOL": dense}}


def slots_of(booking: Booking) -> range:
    """The guard slots an exclusive booking touches."""
    slot = booking.slot_ns or DEFAULT_SLOT_NS
    return range(booking.padded_start_ns // slot, (booking.padded_end_ns - 1) // slot + 1)


def cell_attribute(bucket_start_ns: int, cell_start_ns: int) -> str:
    return f"c{(cell_start_ns - bucket_start_ns) // NANOS_PER_SECOND}"


def bucket_from(shape: Shape, index: int, item: dict | None) -> Bucket:
    if item is None:
        return Bucket(index)
    start, _ = shape.bucket_span(index)
    used = sorted(
        (start + int(name[1:]) * NANOS_PER_SECOND, int(value["N"]))
        for name, value in item.items()
        if name.startswith("c") and name[1:].isdigit()
    )
    return Bucket(index, _int(item, "cap"), tuple(used), True)


def _duration_fields(resource: Resource) -> dict:
    return {name: _n(getattr(resource, name)) for name in DURATION_RULES}


def resource_attributes(resource: Resource) -> dict:
    """The rules of a resource, as its definition and its events keep them."""
    return {
        "did": _s(resource.id),
        "name": _s(resource.name),
        "labels": {"M": {name: _s(value) for name, value in resource.labels}},
        "capacity": _n(resource.capacity),
        **_duration_fields(resource),
        "time_zone": _s(resource.time_zone),
    }


def definition_item(tenant: str, stored: StoredResource) -> dict:
    shape = stored.shape
    item = {
        **definition_key(tenant, stored.resource.id),
        **resource_attributes(stored.resource),
        "pool": {"BOOL": shape.pool},
        "slot": _n(shape.slot_ns),
        "grid_step": _n(shape.step_ns),
        "grid_zone": _s(shape.time_zone),
        "rev": _n(stored.rev),
        "crev": _n(stored.crev),
        "defined": {"BOOL": stored.defined},
        "deleted": {"BOOL": stored.deleted},
        "longest": _n(stored.longest_ns),
        "max_bb": _n(stored.max_buffer_before_ns),
        "ets": _n(stored.last_event_ns),
    }
    if stored.live:
        item["dk"] = _s(tenant)
    return item


def resource_from(item: dict) -> Resource:
    labels = tuple(sorted((name, value["S"]) for name, value in item.get("labels", {}).get("M", {}).items()))
    return Resource(
        id=item["did"]["S"],
        name=_str(item, "name"),
        labels=labels,
        capacity=_int(item, "capacity", 1),
        time_zone=_str(item, "time_zone"),
        **{name: _int(item, name) for name in DURATION_RULES},
    )


def definition_from(item: dict | None) -> StoredResource | None:
    if item is None:
        return None
    shape = Shape(
        pool=item["pool"]["BOOL"],
        slot_ns=_int(item, "slot"),
        step_ns=_int(item, "grid_step"),
        time_zone=_str(item, "grid_zone"),
    )
    return StoredResource(
        resource_from(item),
        shape,
        rev=_int(item, "rev", 1),
        crev=_int(item, "crev", 1),
        defined=item["defined"]["BOOL"],
        deleted=item["deleted"]["BOOL"],
        longest_ns=_int(item, "longest"),
        max_buffer_before_ns=_int(item, "max_bb"),
        last_event_ns=_int(item, "ets"),
    )


def remembered_from(item: dict | None, now_s: int) -> RememberedRequest | None:
    if item is None or _int(item, "expires_at") <= now_s:
        return None
    return RememberedRequest(item["fingerprint"]["S"], reservation_from(item["reservation"]["M"]))


def request_item(tenant: str, request_id: str, fingerprint: str, reservation: Reservation, expires_at_s: int) -> dict:
    return {
        **request_key(tenant, request_id),
        "fingerprint": _s(fingerprint),
        "reservation": {"M": reservation_attributes(reservation)},
        "expires_at": _n(expires_at_s),
    }


EVENT_RETENTION_NS = 7 * DAY_NS


def event_partitions(event: ChangeEvent) -> list:
    """The resources whose feeds show an event: a move to another resource is news to both. Only the
    first copy carries the user and tenant index keys, so that those feeds show it once."""
    moved_from = event.before.resource_id if event.before is not None else event.resource_id
    return [event.resource_id] + ([moved_from] if moved_from != event.resource_id else [])


def event_item(tenant: str, event: ChangeEvent, partition: str = "") -> dict:
    """The event as kept in the feed of `partition` (default: its own resource's)."""
    partition = partition or event.resource_id
    item = {
        **key(events_pk(tenant, partition), event_key_of(event.at_ns, event.event_id)),
        "ek": _s(event_key_of(event.at_ns, event.event_id)),
        "kind": _n(int(event.kind)),
        "rid": _s(event.resource_id),
        "expires_at": _n(ttl_seconds(event.at_ns + EVENT_RETENTION_NS)),
    }
    if partition == event.resource_id:
        item["etk"] = _s(tenant)
    if event.reservation is not None:
        item["after"] = {"M": reservation_attributes(event.reservation)}
        if partition == event.resource_id:
            item["euk"] = _s(user_index_key(tenant, event.reservation.user_id))
    if event.before is not None:
        item["before"] = {"M": reservation_attributes(event.before)}
    if event.resource is not None:
        item["resource"] = {"M": resource_attributes(event.resource)}
    return item


def event_from(item: dict) -> ChangeEvent:
    event_id = item["ek"]["S"].split("#", 1)[1]
    return ChangeEvent(
        kind=ChangeKind(int(item["kind"]["N"])),
        at_ns=event_time_of(item["ek"]["S"]),
        event_id=event_id,
        resource_id=item["rid"]["S"],
        reservation=reservation_from(item["after"]["M"]) if "after" in item else None,
        before=reservation_from(item["before"]["M"]) if "before" in item else None,
        resource=resource_from(item["resource"]["M"]) if "resource" in item else None,
    )


def kind_of(item: dict) -> str:
    """What an item of the table is: reservation, booking, guard, bucket, definition, request, user, event."""
    pk, sk = item["pk"]["S"], item["sk"]["S"]
    body = pk[len(prefix(tenant_of(pk))) :]
    if body.startswith("EVR#"):
        return "event"
    return {
        RESERVATION_SK: "reservation",
        REQUEST_SK: "request",
        USER_SK: "user",
        TENANT_SK: "tenant",
        DEFINITION_SK: "definition",
    }.get(sk) or {"R": "booking", "G": "guard", "B": "bucket"}.get(sk[:1], "unknown")


def resource_of(pk: str) -> str:
    """The resource id of a key in a resource (or events) partition."""
    body = pk[len(prefix(tenant_of(pk))) :]
    return body.split("#", 1)[1]


def guard_index_of(sk: str) -> int:
    return _index_of(sk[len(GUARD_PREFIX) :])


def bucket_index_of(sk: str) -> int:
    return _index_of(sk[len(BUCKET_PREFIX) :])
