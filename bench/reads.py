"""Counting what DynamoDB reads and writes for us, by hooking botocore's events."""
import collections


class CallCounter:
    """Round trips and items read per DynamoDB operation, for one botocore client.

    Items read: Query/Scan items evaluated (ScannedCount, or Count when moto
    leaves it out), GetItem 1 when found, BatchGetItem the items returned.
    """

    def __init__(self, client):
        self.client = client
        self.calls = collections.Counter()
        self.items_read = 0

    def __enter__(self) -> "CallCounter":
        self.client.meta.events.register("after-call.dynamodb", self._count)
        return self

    def __exit__(self, *exc) -> None:
        self.client.meta.events.unregister("after-call.dynamodb", self._count)

    def reset(self) -> None:
        self.calls.clear()
        self.items_read = 0

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    def _count(self, parsed, model, **_) -> None:
        operation = model.name
        self.calls[operation] += 1
        if operation in ("Query", "Scan"):
            self.items_read += parsed.get("ScannedCount") or parsed.get("Count", 0)
        elif operation == "GetItem":
            self.items_read += 1 if "Item" in parsed else 0
        elif operation == "BatchGetItem":
            self.items_read += sum(len(items) for items in parsed.get("Responses", {}).values())
