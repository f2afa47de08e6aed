"""Fast loading of many bookings into an empty table, for tests and benchmarks.

Writes the items that the same bookings made one by one would leave
(through chalicelib.layout), with BatchWriteItem and no conditions: the caller
passes bookings that fit (no overlap on an exclusive resource, no cell over
capacity in a pool). Normal traffic goes through the store's transactions.
"""

import dataclasses
import uuid

from chalicelib import layout
from chalicelib.layout import Shape
from chalicelib.model import DEFAULT_TENANT, Booking, Reservation, Status

BATCH_WRITE_LIMIT = 25


def items_of(bookings: list, shape: Shape = Shape(), capacity: int = 1, tenant: str = DEFAULT_TENANT) -> list:
    """Every item the bookings of one shape leave, guards or buckets and longest records included."""
    items, guards, buckets, longest = [], {}, {}, {}
    for booking in bookings:
        reservation = booking.reservation
        items += [layout.reservation_item(tenant, booking), layout.booking_item(tenant, booking)]
        if shape.pool:
            for cell, _ in shape.cells(booking.padded_start_ns, booking.padded_end_ns):
                counters = buckets.setdefault((reservation.resource_id, shape.bucket_of(cell)), {})
                counters[cell] = counters.get(cell, 0) + reservation.units
        else:
            booking = dataclasses.replace(booking, slot_ns=shape.slot_ns)
            items[-2:] = [layout.reservation_item(tenant, booking), layout.booking_item(tenant, booking)]
            for index in layout.slots_of(booking):
                guards.setdefault((reservation.resource_id, index), []).append(booking)
        duration = reservation.end_ns - reservation.start_ns
        for user in (reservation.user_id, ""):
            longest[user] = max(duration, longest.get(user, 0))
    items += [layout.guard_item(tenant, resource_id, index, listed) for (resource_id, index), listed in guards.items()]
    for (resource_id, index), counters in buckets.items():
        start, _ = shape.bucket_span(index)
        items.append(
            {
                **layout.bucket_key(tenant, resource_id, index),
                "cap": {"N": str(capacity)},
                **{layout.cell_attribute(start, cell): {"N": str(units)} for cell, units in counters.items()},
            }
        )
    items += [
        {**layout.longest_key(tenant, user), "longest": {"N": str(duration)}} for user, duration in longest.items()
    ]
    return items


def load(client, table_name: str, items: list) -> None:
    """Write items with BatchWriteItem, 25 at a time."""
    for first in range(0, len(items), BATCH_WRITE_LIMIT):
        pending = {table_name: [{"PutRequest": {"Item": item}} for item in items[first : first + BATCH_WRITE_LIMIT]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")


def back_to_back(
    resource_id: str,
    count: int,
    start_ns: int,
    length_ns: int,
    users: int = 1,
    status: Status = Status.CONFIRMED,
    pooled: bool = False,
) -> list:
    """`count` bookings of one resource, one after the other, spread over `users` users."""
    return [
        Booking(
            Reservation(
                str(uuid.uuid4()),
                f"user{n % users}",
                resource_id,
                status,
                start_ns + n * length_ns,
                start_ns + (n + 1) * length_ns,
            ),
            pooled=pooled,
        )
        for n in range(count)
    ]
