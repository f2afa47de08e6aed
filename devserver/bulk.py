"""Fast loading of many reservations into an empty table, for tests and benchmarks."""
import uuid

from chalicelib.model import Reservation, Status
from chalicelib.store import bulk_items

BATCH_WRITE_LIMIT = 25


def load(client, table_name: str, reservations: list) -> None:
    """Write the items of non-overlapping reservations with BatchWriteItem (no transactions)."""
    items = bulk_items(reservations)
    for first in range(0, len(items), BATCH_WRITE_LIMIT):
        pending = {table_name: [{"PutRequest": {"Item": item}} for item in items[first:first + BATCH_WRITE_LIMIT]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")


def back_to_back(resource_id: str, count: int, start_ns: int, length_ns: int, users: int = 1) -> list:
    """`count` reservations of one resource, one after the other, spread over `users` users."""
    return [Reservation(str(uuid.uuid4()), f"user{n % users}", resource_id, Status.PENDING,
                        start_ns + n * length_ns, start_ns + (n + 1) * length_ns) for n in range(count)]
