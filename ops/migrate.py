"""Moves a table of the first release to the current item layout, for the default tenant.

    python -m ops.migrate --table my-reservation-prod [--endpoint-url URL] [--dry-run]

The first release kept a resource's claims as maps in 4-day slot items
(`RES#<resource>` / `SLOT#<n>`). Now each reservation has a booking item in
its resource's partition (chalicelib.layout), guards serialise writers, and a
definition item fixes each resource's shape. Reservation, request-id and user
items keep their keys, so ids, request ids and user queries carry over. User and
resource ids are NFC-normalized, as the service now compares them (two first-
release resources that differ only by normalization become one: the checker
then reports any overlap between their reservations).

Run it while no one writes (stop the API first): it reads every reservation,
writes its booking, its guards and its resource's definition marker, records
the tenant's longest reservation, then deletes the old slot items. It is
idempotent: running it again changes nothing. Check the result with
`python -m ops.checker`.
"""

import argparse
import dataclasses
import sys
import unicodedata

from chalicelib import layout
from chalicelib.layout import Shape, StoredResource
from chalicelib.model import DEFAULT_TENANT, Resource
from ops.checker import scan_items

BATCH_WRITE_LIMIT = 25


def plan(items: list) -> tuple:
    """(items to put, keys to delete) that bring first-release items to the current layout."""
    puts, deletes, resources, longest, guards = [], [], set(), 0, {}
    have_booking = {item["sk"]["S"] for item in items if layout.kind_of(item) == "booking"}
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        if pk.startswith("RES#") and sk.startswith("SLOT#"):
            deletes.append(layout.key(pk, sk))
            continue
        if layout.kind_of(item) != "reservation" or layout.tenant_of(pk) != DEFAULT_TENANT:
            continue
        booking = layout.booking_from(item)
        # ids are compared NFC-normalized now: the first release kept them as sent
        booking = dataclasses.replace(
            booking,
            reservation=dataclasses.replace(
                booking.reservation,
                user_id=unicodedata.normalize("NFC", booking.reservation.user_id),
                resource_id=unicodedata.normalize("NFC", booking.reservation.resource_id),
            ),
        )
        reservation = booking.reservation
        resources.add(reservation.resource_id)
        longest = max(longest, reservation.end_ns - reservation.start_ns)
        if layout.BOOKING_PREFIX + layout.start_key(reservation.start_ns, reservation.id) in have_booking:
            continue
        booking = dataclasses.replace(booking, slot_ns=Shape().slot_ns)
        puts.append(layout.reservation_item(DEFAULT_TENANT, booking))
        puts.append(layout.booking_item(DEFAULT_TENANT, booking))
        for index in layout.slots_of(booking):
            guards.setdefault((reservation.resource_id, index), []).append(booking)
    # every booking a guard's slot holds is listed in it (or the guard is dense): a fresh guard per slot
    live = [layout.booking_from(item) for item in items if layout.kind_of(item) == "booking"]
    for booking in live:
        if not booking.pooled:
            for index in layout.slots_of(booking):
                guards.setdefault((booking.reservation.resource_id, index), []).append(booking)
    puts += [
        layout.guard_item(DEFAULT_TENANT, resource_id, index, _once(listed))
        for (resource_id, index), listed in guards.items()
    ]
    existing = {layout.resource_of(item["pk"]["S"]) for item in items if layout.kind_of(item) == "definition"}
    for resource_id in sorted(resources - existing):
        marker = StoredResource(Resource(resource_id), Shape(), defined=False)
        puts.append(layout.definition_item(DEFAULT_TENANT, marker))
    if longest:
        puts.append({**layout.longest_key(DEFAULT_TENANT, ""), "longest": {"N": str(longest)}})
    return _unique(puts), deletes


def _unique(items: list) -> list:
    return list({layout.pair(item): item for item in items}.values())


def _once(bookings: list) -> list:
    return list({booking.reservation.id: booking for booking in bookings}.values())


def migrate(client, table: str, dry_run: bool = False) -> tuple:
    puts, deletes = plan(list(scan_items(client, table)))
    if not dry_run:
        requests = [{"PutRequest": {"Item": item}} for item in puts] + [
            {"DeleteRequest": {"Key": key}} for key in deletes
        ]
        for first in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = {table: requests[first : first + BATCH_WRITE_LIMIT]}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")
    return len(puts), len(deletes)


def main(argv=None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--dry-run", action="store_true", help="count what would change, change nothing")
    options = parser.parse_args(argv)
    written, deleted = migrate(
        boto3.client("dynamodb", endpoint_url=options.endpoint_url), options.table, options.dry_run
    )
    print(
        f"{'would write' if options.dry_run else 'wrote'} {written} item(s), "
        f"{'would delete' if options.dry_run else 'deleted'} {deleted} old slot item(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
