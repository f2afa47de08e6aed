"""DynamoDB work and cost of every RPC, on populated resources (issues 13, 14, 15, 16, 17).

The app runs in process against moto (harness.moto: the table of infra/table.json, every index);
each row is one RPC measured with the honest meter (harness.meter.Meter: calls, sequential rounds,
items, RRU, WRU of the table and of every index entry the writes cause, WRU by kind of item).
Every row runs warm, as on a warm Lambda: the same kind of call was made once before (unmetered), so
that definition hints are cached and the user's and tenant's longest-reservation records already
cover it.

Resources (times around BASE, a UTC midnight):
  busy      undefined (default shape: 5-day guard slots); 300 one-hour bookings back to back up to
            HOLE (BASE + 2 days) and 300 from HOLE + 15 days: the reserves land in the hole between them,
            next to bookings, in a 5-day slot that already holds 48 bookings (its guard is dense: it
            lists no more, and a reserve reads the bookings around its window after it).
  busy-1h   defined with max_duration 1 h (1-hour guard slots); 300 half-hour bookings up to BASE and
            300 from BASE + 1 day; a 1-hour guard lists the few bookings of its hour, so a reserve decides
            on one read. other-1h: the same, the target of a move to another resource.
  lot       a pool of 100 spaces, 15-minute step; 2-hour bookings filling it to 90% for a day on
            each side of BASE.
Reads run over the same resources (busy-1h's window holds 20 bookings a day).

Cost per million calls: harness.meter.PRICES.

    python -m bench.dynamodb_cost
"""

import uuid

from chalicelib import layout
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Resource
from chalicelib.runtime import default_api
from harness import bulk
from harness.meter import PRICES, Meter
from harness.moto import TABLE, moto_table

from .common import (
    CONTEXT,
    DAY_S,
    HOUR_S,
    bookings,
    define,
    load_into_moto,
    measure,
    moto_images,
    reserve,
    table,
    timestamp,
    units,
)

BASE = 1_900_800_000  # 2030-03-28T00:00Z: a UTC midnight and the first instant of a 5-day slot
HOLE = BASE + 2 * DAY_S  # busy's free time: its 5-day slot [BASE, BASE + 5 days) holds 48 bookings before it
LOT_CAPACITY = 100
# 2-hour bookings starting every 15 minutes, 11 or 12 at each start: 90 units in use in every cell
LOT_STARTS = (12, 11, 11, 11, 12, 11, 11, 11)


def _populate(client, api, around: int = 300, lot_hours: int = 24) -> None:
    busy = bookings("busy", around, HOLE - around * HOUR_S, HOUR_S, users=20) + bookings(
        "busy", around, HOLE + 15 * DAY_S, HOUR_S, users=20
    )
    items = bulk.items_of(busy)
    for resource_id in ("busy-1h", "other-1h"):
        define(api, resource_id, max_duration=HOUR_S)
        shape = layout.shape_for(Resource(resource_id, max_duration_ns=HOUR_S * 10**9))
        near = bookings(resource_id, around, BASE - around * HOUR_S / 2, HOUR_S / 2, users=20) + bookings(
            resource_id, around, BASE + DAY_S, HOUR_S / 2, users=20
        )
        items += bulk.items_of(near, shape)
    define(api, "lot", capacity=LOT_CAPACITY, step=900)
    lot = []
    for step in range(-4 * lot_hours, 4 * lot_hours):
        start = BASE + step * 900
        for _ in range(LOT_STARTS[step % len(LOT_STARTS)]):
            lot += bookings("lot", 1, start, 2 * HOUR_S, pooled=True, user_prefix=f"driver{len(lot) % 50}-")
    shape = layout.shape_for(Resource("lot", capacity=LOT_CAPACITY, step_ns=900 * 10**9))
    items += bulk.items_of(lot, shape, capacity=LOT_CAPACITY)
    load_into_moto(TABLE, items)
    for n in range(12):
        define(api, f"room-{n:02}", max_duration=HOUR_S, labels={"floor": "1"})


def _scenarios(api, around: int) -> list:
    """(section, name, call, cleanup): the call is measured; cleanup (unmetered) leaves the table ready
    for the next one."""
    made = {}

    def reserving(key, resource_id, start, end, **options):
        def call():
            request_id = str(uuid.uuid4()) if options.get("request_id") else ""
            made[key] = reserve(
                api,
                resource_id,
                "alice",
                start,
                end,
                request_id=request_id,
                hold_s=options.get("hold_s"),
                units=options.get("units", 0),
            ).id

        return call

    def cancelling(key):
        return lambda: api.cancel(pb.CancelRequest(id=made[key]), CONTEXT)

    def window(resource_id, start, end, **extra):
        return dict(resource_ids=[resource_id], start=timestamp(start), end=timestamp(end), **extra)

    exclusive_1h = [
        ("reserve 1 h", reserving("r", "busy-1h", BASE, BASE + HOUR_S)),
        (
            "reserve 1 h + request id",
            reserving("q", "busy-1h", BASE + 2 * HOUR_S, BASE + 3 * HOUR_S, request_id=True),
            cancelling("q"),
        ),
        (
            "reserve 1 h hold (hold_for 10 min)",
            reserving("h", "busy-1h", BASE + 4 * HOUR_S, BASE + 5 * HOUR_S, hold_s=600),
        ),
        ("confirm the hold", lambda: api.confirm(pb.ConfirmRequest(id=made["h"]), CONTEXT), cancelling("h")),
        ("update note", lambda: api.update(pb.UpdateRequest(id=made["r"], note="projector"), CONTEXT)),
        ("get", lambda: api.get(pb.GetRequest(id=made["r"]), CONTEXT)),
        (
            "reschedule, same resource",
            lambda: api.reschedule(
                pb.RescheduleRequest(
                    id=made["r"], start=timestamp(BASE + 6 * HOUR_S), end=timestamp(BASE + 7 * HOUR_S)
                ),
                CONTEXT,
            ),
        ),
        (
            "reschedule, other resource",
            lambda: api.reschedule(
                pb.RescheduleRequest(
                    id=made["r"],
                    start=timestamp(BASE + 6 * HOUR_S),
                    end=timestamp(BASE + 7 * HOUR_S),
                    resource_id="other-1h",
                ),
                CONTEXT,
            ),
        ),
        ("cancel", cancelling("r")),
    ]
    rows = [
        (
            f"busy-1h: defined, max_duration 1 h (1-hour guard slots, listing their bookings), {2 * around} "
            "bookings around",
            *row,
        )
        for row in exclusive_1h
    ]
    undefined = [
        ("reserve 1 h", reserving("u", "busy", HOLE, HOLE + HOUR_S)),
        (
            "reserve 1 h + request id",
            reserving("v", "busy", HOLE + 2 * HOUR_S, HOLE + 3 * HOUR_S, request_id=True),
            cancelling("v"),
        ),
        ("reserve 1 day", reserving("d", "busy", HOLE + DAY_S, HOLE + 2 * DAY_S), cancelling("d")),
        ("reserve 14 days", reserving("f", "busy", HOLE + 12 * HOUR_S, HOLE + 12 * HOUR_S + 14 * DAY_S)),
        ("cancel (1 h)", cancelling("u")),
        ("cancel (14 days)", cancelling("f")),
    ]
    rows += [
        (
            "busy: undefined (5-day guard slots, dense: 48 bookings in the slot of the window), "
            f"{2 * around} bookings around",
            *row,
        )
        for row in undefined
    ]
    pool = [
        ("reserve 2 h, 1 space", reserving("p", "lot", BASE + 10 * HOUR_S, BASE + 12 * HOUR_S)),
        ("cancel", cancelling("p")),
    ]
    rows += [(f"lot: pool of {LOT_CAPACITY} spaces, 15-min step, 90% full", *row) for row in pool]
    reads = [
        (
            "filter: resource, page of 10",
            lambda: api.filter(
                pb.FilterRequest(
                    query=pb.QueryRequest(resource_id="busy-1h", start=timestamp(BASE - 10 * HOUR_S), page_size=10)
                ),
                CONTEXT,
            ),
        ),
        (
            "filter: user, page of 10",
            lambda: api.filter(
                pb.FilterRequest(
                    query=pb.QueryRequest(user_id="user3", start=timestamp(BASE - 20 * HOUR_S), page_size=10)
                ),
                CONTEXT,
            ),
        ),
        (
            "availability: 1 resource x 1 day",
            lambda: api.availability(pb.AvailabilityRequest(**window("busy-1h", BASE - DAY_S, BASE)), CONTEXT),
        ),
        (
            "find_slots: 1 resource x 1 day, 30 min, 10",
            lambda: api.find_slots(
                pb.FindSlotsRequest(
                    **window("busy-1h", BASE - DAY_S / 2, BASE + DAY_S / 2), duration={"seconds": 1800}, limit=10
                ),
                CONTEXT,
            ),
        ),
        (
            "changes: resource, page of 10",
            lambda: api.changes(pb.ChangesRequest(resource_id="busy-1h", page_size=10), CONTEXT),
        ),
    ]
    rows += [("reads", *row) for row in reads]

    def defining_new():
        made["new"] = define(api, f"new-{uuid.uuid4().hex[:8]}", max_duration=HOUR_S).id

    resources = [
        ("define_resource (new)", defining_new),
        (
            "define_resource (change rules)",
            lambda: define(api, "room-00", max_duration=HOUR_S, name=uuid.uuid4().hex[:8], labels={"floor": "1"}),
        ),
        ("get_resource", lambda: api.get_resource(pb.GetResourceRequest(id="room-00"), CONTEXT)),
        ("list_resources: page of 10", lambda: api.list_resources(pb.ListResourcesRequest(page_size=10), CONTEXT)),
        (
            "delete_resource (the new one)",
            lambda: api.delete_resource(pb.DeleteResourceRequest(id=made["new"]), CONTEXT),
        ),
    ]
    rows += [("resources", *row) for row in resources]
    return [row if len(row) == 4 else (*row, None) for row in rows]


def run(around: int = 300, lot_hours: int = 24) -> dict:
    """`around`: bookings on each side of the busy resources' windows; `lot_hours`: the lot is full this
    long on each side of BASE (smaller values only for the tests' tiny run)."""
    rows = {}
    with moto_table() as client:
        api = default_api()
        _populate(client, api, around, lot_hours)
        scenarios = _scenarios(api, around)
        for _, _, call, cleanup in scenarios:  # warm-up: every kind of call once
            call()
            if cleanup:
                cleanup()
        with Meter(api.reservations.store.client, images=moto_images()) as meter:
            for section, name, call, cleanup in scenarios:
                rows[(section, name)] = measure(meter, call)
                if cleanup:
                    cleanup()
    _print(rows)
    return {name: _row(measured) for (_, name), measured in rows.items()} | {
        f"{section}: {name}": _row(measured) for (section, name), measured in rows.items()
    }


def _row(measured) -> dict:
    usage = measured.usage
    return {
        "calls": usage.calls,
        "rounds": usage.rounds,
        "items_read": usage.items_read,
        "items_written": usage.items_written,
        "rru": usage.rru,
        "wru": usage.wru,
        "wru_table": usage.wru_table,
        "wru_index": usage.wru_index,
        "index_writes": usage.index_writes,
        "event_wru": usage.kind_wru("event"),
        "handler_ms": measured.handler_ms,
        "usd_per_million": measured.usd_per_million,
    }


def _print(rows: dict) -> None:
    section_of = None
    lines = []
    headers = [
        "rpc",
        "calls",
        "rounds",
        "read",
        "written",
        "RRU",
        "WRU table",
        "WRU index (writes)",
        "WRU",
        "event WRU",
        "handler ms",
        "$/M calls",
    ]
    for (section, name), measured in rows.items():
        if section != section_of:
            lines.append(f"-- {section}")
            section_of = section
        usage = measured.usage
        lines.append(
            [
                name,
                usage.calls,
                usage.rounds,
                usage.items_read,
                usage.items_written,
                units(usage.rru),
                units(usage.wru_table),
                f"{units(usage.wru_index)} ({usage.index_writes})",
                units(usage.wru),
                units(usage.kind_wru("event")),
                f"{measured.handler_ms:.1f}",
                f"{measured.usd_per_million:.2f}",
            ]
        )
    table(headers, lines)
    print(f"prices: {PRICES}")
    changes = [(name, m.usage) for (_, name), m in rows.items() if m.usage.kind_wru("event")]
    per_change = sorted({u.kind_wru("event") for _, u in changes})
    print(
        "the change event's own cost per change (its item x2 in the transaction + its index entries): "
        + ", ".join(
            f"{units(w)} WRU ({', '.join(n for n, u in changes if u.kind_wru('event') == w)})" for w in per_change
        )
    )


if __name__ == "__main__":
    run()
