"""DynamoDB storage: item layout, reads, and the conditional writes.

One table (name in RESERVATION_TABLE), keys `pk`/`sk`, three kinds of item:

    reservation   pk=RSV#<id>          sk=RSV        the reservation, `rev` bumped on every change
    slot          pk=RES#<resource>    sk=SLOT#<n>   `claims`: {reservation id: [start_ns, end_ns]}, `ver`
    request id    pk=REQ#<request id>  sk=REQ        what a reserve with that request id made, `expires_at`
    user          pk=USR#<user>        sk=USR        `longest`: the longest reservation the user ever made (ns)

Reservation items also carry `start_key` (start, zero-padded, then id) for the
by_resource and by_user indexes. The store decides nothing: it reads
snapshots and writes them back only if nobody changed them in between
(conditions on `ver`/`rev`), raising StaleWrite when somebody did.
"""
import dataclasses
import os
import time
from typing import Optional

from .model import MIN_NS, Claim, Reservation, Status
from .slots import slots_touched

RESERVATION_SK = "RSV"
REQUEST_SK = "REQ"
USER_SK = "USR"
BATCH_GET_LIMIT = 100
BY_RESOURCE = ("by_resource", "resource_id")
BY_USER = ("by_user", "user_id")


class StaleWrite(Exception):
    """An item changed since it was read (condition failed or transaction conflict).

    `reasons` holds DynamoDB's cancellation code for each item of a transaction.
    """

    def __init__(self, reasons: tuple = ()):
        super().__init__(",".join(reasons))
        self.reasons = reasons


class RequestIdTaken(Exception):
    """Another reserve committed the same request id first."""


class OutcomeUnknown(Exception):
    """The write may or may not have been applied (timeout, dropped connection, 5xx)."""


class StorageUnavailable(Exception):
    """DynamoDB could not be read (throttled or failing after botocore's own retries)."""


@dataclasses.dataclass(frozen=True)
class SlotSnapshot:
    index: int
    version: int  # 0: the item does not exist yet
    claims: tuple  # of Claim


@dataclasses.dataclass(frozen=True)
class RememberedRequest:
    fingerprint: str
    reservation: Reservation
    expires_at: int


@dataclasses.dataclass(frozen=True)
class ReserveSnapshot:
    """What reserve reads before it writes, in one round trip."""

    slots: list  # of SlotSnapshot
    remembered: Optional[RememberedRequest]
    user_longest_ns: int  # 0: the user has no reservation yet


@dataclasses.dataclass(frozen=True)
class Versioned:
    reservation: Reservation
    rev: int


def start_key(start_ns: int, reservation_id: str) -> str:
    """Sort key of the indexes: lexical order = start order, ties by id."""
    return f"{start_key_bound(start_ns)}#{reservation_id}"


def start_key_bound(instant_ns: int) -> str:
    """Sorts after every start_key of an earlier start and before every one starting at `instant_ns` or later."""
    return f"{instant_ns - MIN_NS:021d}"


def _reservation_key(reservation_id: str) -> dict:
    return {"pk": {"S": f"RSV#{reservation_id}"}, "sk": {"S": RESERVATION_SK}}


def _slot_key(resource_id: str, index: int) -> dict:
    return {"pk": {"S": f"RES#{resource_id}"}, "sk": {"S": f"SLOT#{index}"}}


def _request_key(request_id: str) -> dict:
    return {"pk": {"S": f"REQ#{request_id}"}, "sk": {"S": REQUEST_SK}}


def _user_key(user_id: str) -> dict:
    return {"pk": {"S": f"USR#{user_id}"}, "sk": {"S": USER_SK}}


def _pair(key: dict) -> tuple:
    return key["pk"]["S"], key["sk"]["S"]


def _reservation_attributes(reservation: Reservation) -> dict:
    return {
        "id": {"S": reservation.id},
        "user_id": {"S": reservation.user_id},
        "resource_id": {"S": reservation.resource_id},
        "status": {"N": str(int(reservation.status))},
        "start": {"N": str(reservation.start_ns)},
        "end": {"N": str(reservation.end_ns)},
        "note": {"S": reservation.note},
    }


def reservation_from_item(attributes: dict) -> Reservation:
    return Reservation(
        id=attributes["id"]["S"],
        user_id=attributes["user_id"]["S"],
        resource_id=attributes["resource_id"]["S"],
        status=Status(int(attributes["status"]["N"])),
        start_ns=int(attributes["start"]["N"]),
        end_ns=int(attributes["end"]["N"]),
        note=attributes["note"]["S"],
    )


def _reservation_item(reservation: Reservation, rev: int) -> dict:
    return {
        **_reservation_key(reservation.id),
        **_reservation_attributes(reservation),
        "start_key": {"S": start_key(reservation.start_ns, reservation.id)},
        "rev": {"N": str(rev)},
    }


def _slot_from(index: int, item: Optional[dict]) -> SlotSnapshot:
    if item is None:
        return SlotSnapshot(index, 0, ())
    claims = tuple(
        Claim(reservation_id, int(window["L"][0]["N"]), int(window["L"][1]["N"]))
        for reservation_id, window in item["claims"]["M"].items()
    )
    return SlotSnapshot(index, int(item["ver"]["N"]), claims)


def _claim_value(claim: Claim) -> dict:
    return {"L": [{"N": str(claim.start_ns)}, {"N": str(claim.end_ns)}]}


def _claim_write(resource_id: str, slot: SlotSnapshot, claim: Claim) -> dict:
    """Add a claim to a slot item, only if the item is still the version read."""
    if slot.version == 0:
        return {"Put": {
            "Item": {**_slot_key(resource_id, slot.index), "ver": {"N": "1"},
                     "claims": {"M": {claim.reservation_id: _claim_value(claim)}}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }}
    return {"Update": {
        "Key": _slot_key(resource_id, slot.index),
        "UpdateExpression": "SET claims.#rid = :window, ver = :next",
        "ConditionExpression": "ver = :read",
        "ExpressionAttributeNames": {"#rid": claim.reservation_id},
        "ExpressionAttributeValues": {":window": _claim_value(claim), ":read": {"N": str(slot.version)},
                                      ":next": {"N": str(slot.version + 1)}},
    }}


def _claim_removal(resource_id: str, index: int, reservation_id: str) -> dict:
    """Removing a claim only frees time, so it needs no version check: only bump `ver`."""
    return {"Update": {
        "Key": _slot_key(resource_id, index),
        "UpdateExpression": "REMOVE claims.#rid ADD ver :one",
        "ConditionExpression": "attribute_exists(claims.#rid)",
        "ExpressionAttributeNames": {"#rid": reservation_id},
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }}


class DynamoStore:
    def __init__(self, table_name: str, client):
        self.table_name = table_name
        self.client = client

    # ---- reads -------------------------------------------------------------

    def read_for_reserve(self, resource_id: str, indexes: range, user_id: str,
                         request_id: Optional[str]) -> ReserveSnapshot:
        """Slot snapshots, the user's longest reservation and the remembered request: one consistent batch."""
        keys = [_slot_key(resource_id, index) for index in indexes] + [_user_key(user_id)]
        if request_id:
            keys.append(_request_key(request_id))
        items = self._batch_get(keys)
        slots = [_slot_from(index, items.get(_pair(_slot_key(resource_id, index)))) for index in indexes]
        user = items.get(_pair(_user_key(user_id)))
        remembered = None
        if request_id:
            item = items.get(_pair(_request_key(request_id)))
            if item is not None and int(item["expires_at"]["N"]) > time.time():
                remembered = RememberedRequest(item["fingerprint"]["S"], reservation_from_item(item["reservation"]["M"]),
                                               int(item["expires_at"]["N"]))
        return ReserveSnapshot(slots, remembered, int(user["longest"]["N"]) if user else 0)

    def read_slot(self, resource_id: str, index: int) -> SlotSnapshot:
        return _slot_from(index, self._get(_slot_key(resource_id, index)))

    def longest_reservation(self, user_id: str) -> int:
        """Longest reservation the user ever made, in ns (0 if none): bounds how far back a user query looks."""
        item = self._get(_user_key(user_id))
        return int(item["longest"]["N"]) if item else 0

    def in_index(self, index: tuple, partition: str, low_key: str, high_key: str,
                 descending: bool, chunk: int):
        """Reservations of one index partition with low_key <= start_key <= high_key, in index order.

        Read lazily, `chunk` items per round trip, so a caller that stops early
        reads little more than it used.
        """
        index_name, partition_attribute = index
        arguments = {
            "TableName": self.table_name, "IndexName": index_name, "Limit": chunk,
            "KeyConditionExpression": "#partition = :partition AND start_key BETWEEN :low AND :high",
            "ExpressionAttributeNames": {"#partition": partition_attribute},
            "ExpressionAttributeValues": {":partition": {"S": partition}, ":low": {"S": low_key},
                                          ":high": {"S": high_key}},
            "ScanIndexForward": not descending,
        }
        return (reservation_from_item(item) for item in self._items(self.client.query, arguments))

    def all_reservations(self):
        """Every reservation, in no order: a full table scan."""
        arguments = {"TableName": self.table_name, "FilterExpression": "sk = :sk",
                     "ExpressionAttributeValues": {":sk": {"S": RESERVATION_SK}}}
        return (reservation_from_item(item) for item in self._items(self.client.scan, arguments))

    def _items(self, operation, arguments: dict):
        """Every item of a Query or Scan, read one page (round trip) at a time, as they are consumed."""
        while True:
            answer = self._read(operation, arguments)
            yield from answer["Items"]
            if "LastEvaluatedKey" not in answer:
                return
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    @staticmethod
    def _read(operation, arguments: dict) -> dict:
        try:
            return operation(**arguments)
        except Exception as error:  # botocore errors after its own retries
            raise StorageUnavailable() from error

    def _get(self, key: dict) -> Optional[dict]:
        return self._read(self.client.get_item, {"TableName": self.table_name, "Key": key,
                                                 "ConsistentRead": True}).get("Item")

    def get(self, reservation_id: str) -> Optional[Versioned]:
        item = self._get(_reservation_key(reservation_id))
        if item is None:
            return None
        return Versioned(reservation_from_item(item), int(item["rev"]["N"]))

    def _batch_get(self, keys: list) -> dict:
        found = {}
        for first in range(0, len(keys), BATCH_GET_LIMIT):
            pending = {self.table_name: {"Keys": keys[first:first + BATCH_GET_LIMIT], "ConsistentRead": True}}
            for attempt in range(10):
                answer = self._read(self.client.batch_get_item, {"RequestItems": pending})
                for item in answer["Responses"].get(self.table_name, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.01 * 2 ** attempt)
            else:
                raise StorageUnavailable()
        return found

    # ---- writes ------------------------------------------------------------

    def insert(self, reservation: Reservation, read: ReserveSnapshot, request: Optional[tuple] = None) -> None:
        """Write the reservation and its claims; `request` = (request_id, fingerprint, expires_at)."""
        actions = [{"Put": {"Item": _reservation_item(reservation, 1),
                            "ConditionExpression": "attribute_not_exists(pk)"}}]
        actions += [_claim_write(reservation.resource_id, slot, reservation.claim) for slot in read.slots]
        duration = reservation.end_ns - reservation.start_ns
        if duration > read.user_longest_ns:
            actions.append({"Update": {
                "Key": _user_key(reservation.user_id), "UpdateExpression": "SET longest = :duration",
                "ConditionExpression": "attribute_not_exists(longest) OR longest < :duration",
                "ExpressionAttributeValues": {":duration": {"N": str(duration)}},
            }})
        if request is not None:
            request_id, fingerprint, expires_at = request
            actions.append({"Put": {
                "Item": {**_request_key(request_id), "fingerprint": {"S": fingerprint},
                         "reservation": {"M": _reservation_attributes(reservation)},
                         "expires_at": {"N": str(expires_at)}},
                "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                "ExpressionAttributeValues": {":now": {"N": str(int(time.time()))}},
            }})
        try:
            self._transact(actions)
        except StaleWrite as stale:
            if request is not None and stale.reasons[-1:] == ("ConditionalCheckFailed",):
                raise RequestIdTaken() from stale
            raise

    def replace(self, current: Versioned, changed: Reservation) -> None:
        """Store new status/note, only if the reservation is still at the revision read."""
        try:
            self.client.put_item(
                TableName=self.table_name, Item=_reservation_item(changed, current.rev + 1),
                ConditionExpression="rev = :read", ExpressionAttributeValues={":read": {"N": str(current.rev)}})
        except self.client.exceptions.ConditionalCheckFailedException as error:
            raise StaleWrite() from error
        except Exception as error:
            raise OutcomeUnknown() from error

    def delete(self, current: Versioned) -> None:
        """Remove the reservation and its claims together, if it is still at the revision read."""
        reservation = current.reservation
        actions = [{"Delete": {
            "Key": _reservation_key(reservation.id),
            "ConditionExpression": "rev = :read",
            "ExpressionAttributeValues": {":read": {"N": str(current.rev)}},
        }}]
        actions += [_claim_removal(reservation.resource_id, index, reservation.id)
                    for index in slots_touched(reservation.start_ns, reservation.end_ns)]
        self._transact(actions)

    def _transact(self, actions: list) -> None:
        """One TransactWriteItems: all of it is applied or none of it."""
        for action in actions:
            next(iter(action.values()))["TableName"] = self.table_name
        try:
            self.client.transact_write_items(TransactItems=actions)
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = tuple(reason.get("Code", "None") for reason in error.response.get("CancellationReasons", []))
            raise StaleWrite(reasons) from error
        except Exception as error:
            raise OutcomeUnknown() from error


def client_from_environment():
    """The DynamoDB client, with short timeouts so a stuck call fails inside Lambda's time.

    Made by botocore alone: boto3 would add s3transfer and its resource and docs
    machinery to every cold start (~40-50 ms) for nothing this app uses.
    """
    import botocore.session
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
    return botocore.session.get_session().create_client("dynamodb", config=config)


def store_from_environment() -> DynamoStore:
    return DynamoStore(os.environ["RESERVATION_TABLE"], client_from_environment())


def bulk_items(reservations: list) -> list:
    """Every item that a set of reservations made one by one would leave in the table.

    For loading an empty table fast (tests, benchmarks, imports): nothing here
    checks for overlaps, so the caller must pass reservations that do not
    overlap per resource. Normal traffic goes through the transactions above.
    """
    items, slots, longest = [], {}, {}
    for reservation in reservations:
        items.append(_reservation_item(reservation, 1))
        for index in slots_touched(reservation.start_ns, reservation.end_ns):
            slots.setdefault((reservation.resource_id, index), {})[reservation.id] = _claim_value(reservation.claim)
        duration = reservation.end_ns - reservation.start_ns
        longest[reservation.user_id] = max(duration, longest.get(reservation.user_id, 0))
    for (resource_id, index), claims in slots.items():
        items.append({**_slot_key(resource_id, index), "ver": {"N": "1"}, "claims": {"M": claims}})
    for user_id, duration in longest.items():
        items.append({**_user_key(user_id), "longest": {"N": str(duration)}})
    return items
