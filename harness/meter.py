"""Counting what DynamoDB reads and writes for us, by hooking botocore's events."""
import collections
import math


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


def attribute_size(value: dict) -> float:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    return len(inner)


def item_size(item) -> float:
    return sum(len(name.encode()) + attribute_size(value) for name, value in (item or {}).items())


class CapacityMeter(CallCounter):
    """CallCounter (round trips, items read) plus items written and capacity units of each call."""

    def __init__(self, client, peek):
        super().__init__(client)
        self.peek = peek  # peek(key) -> the item now, read without being counted
        self.items_written = 0
        self.rru = self.wru = 0.0
        self._before = {}
        self._asked = 0

    def __enter__(self):
        self.client.meta.events.register("provide-client-params.dynamodb", self._before_call)
        return super().__enter__()

    def __exit__(self, *exc):
        self.client.meta.events.unregister("provide-client-params.dynamodb", self._before_call)
        super().__exit__(*exc)

    @staticmethod
    def _written_keys(operation: str, params: dict) -> list:
        if operation == "TransactWriteItems":
            actions = [next(iter(a.values())) for a in params["TransactItems"]]
            return [(a.get("Key") or {"pk": a["Item"]["pk"], "sk": a["Item"]["sk"]}, 2) for a in actions]
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or {"pk": params["Item"]["pk"], "sk": params["Item"]["sk"]}
            return [(key, 1)]
        return []

    def _before_call(self, params, model, **_):
        if model.name == "BatchGetItem":
            self._asked = sum(len(request["Keys"]) for request in params["RequestItems"].values())
        keys = self._written_keys(model.name, params)
        self._before = {(k["pk"]["S"], k["sk"]["S"]): (k, factor, item_size(self.peek(k))) for k, factor in keys}

    def _count(self, parsed, model, **_):
        super()._count(parsed, model)
        for key, factor, before in self._before.values():
            self.items_written += 1
            self.wru += factor * max(1, math.ceil(max(before, item_size(self.peek(key))) / 1024))
        self._before = {}
        if model.name == "GetItem":
            self.rru += max(1, math.ceil(item_size(parsed.get("Item")) / 4096))
        elif model.name == "BatchGetItem":
            found = [item for items in parsed["Responses"].values() for item in items]
            # every key asked for costs at least one unit, found or not
            self.rru += sum(max(1, math.ceil(item_size(i) / 4096)) for i in found) + self._asked - len(found)
        elif model.name in ("Query", "Scan"):
            self.rru += max(0.5, 0.5 * math.ceil(sum(item_size(i) for i in parsed["Items"]) / 4096))
