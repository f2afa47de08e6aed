"""Push of the change feed to EventBridge, from the table's DynamoDB stream.

Each event item inserted in the table (in the same transaction as its change)
reaches this code once through the stream; it becomes one EventBridge event
on the bus EVENT_BUS_NAME: source "my-reservation", detail-type the change
kind ("reservation.created", ...), detail the event as JSON with its tenant.
Subscribers filter with EventBridge rules (on detail.tenant, detail-type,
detail.reservation.resourceId, ...). A missed push loses nothing: the pull
API `changes` has every event.
"""

import json
from collections.abc import Iterable

from google.protobuf import json_format

from . import layout
from .api import event_to_proto
from .model import ChangeKind

SOURCE = "my-reservation"
PUT_EVENTS_LIMIT = 10


def detail_type(kind: ChangeKind) -> str:
    """RESERVATION_CREATED -> reservation.created"""
    subject, _, action = kind.name.lower().partition("_")
    return f"{subject}.{action}"


def entries_from_records(records: Iterable[dict], bus_name: str) -> list:
    """PutEvents entries for the event items a batch of stream records inserted (other records skipped)."""
    entries = []
    for record in records:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") != "INSERT" or not image or layout.kind_of(image) != "event" or "etk" not in image:
            continue  # not an event, or the copy of a move kept for the old resource's feed: published once
        event = layout.event_from(image)
        detail = json_format.MessageToDict(event_to_proto(event, cursor=""))
        detail.pop("cursor", None)
        detail["tenant"] = layout.tenant_of(image["pk"]["S"])
        entries.append(
            {
                "Source": SOURCE,
                "DetailType": detail_type(event.kind),
                "Detail": json.dumps(detail),
                "EventBusName": bus_name,
            }
        )
    return entries


def publish(client, entries: list) -> None:
    """Send entries in batches; a failed entry fails the batch, so that the stream delivers it again."""
    for first in range(0, len(entries), PUT_EVENTS_LIMIT):
        answer = client.put_events(Entries=entries[first : first + PUT_EVENTS_LIMIT])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {answer['FailedEntryCount']} event(s); the stream retries")
