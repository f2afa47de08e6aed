"""Consistency checker: reads the whole table and reports every broken invariant.

    python -m rsvp.checker --table my-reservation-prod [--endpoint-url URL]

Exit status 0 when the table is consistent, 1 with one line per violation.
What it checks (see docs/storage.md for the items):

* overlap: two live reservations of one resource whose windows overlap;
* orphan claim: a slot claim whose reservation is missing, or whose window or
  resource differs from the reservation's;
* missing claim: a reservation without its claim in every slot it touches;
* index: a reservation whose index attributes (resource_id, user_id,
  start_key) disagree with its own fields, or that an index does not return
  (on AWS the indexes lag writes by a moment: run it twice before acting);
* short lookback: a reservation longer than its user's recorded longest one
  (a user query would look back too little and miss it);
* bad request record: a remembered request id whose record cannot be read
  back as a reservation, or whose reservation is live with other fields.
"""
import argparse
import collections
import sys

from chalicelib.slots import slots_touched
from chalicelib.store import (BY_RESOURCE, BY_USER, REQUEST_SK, RESERVATION_SK, USER_SK, reservation_from_item,
                              start_key)


def scan_items(client, table: str, **arguments):
    """Every item of the table, or of an index (indexes only read eventually consistent)."""
    start = {}
    consistent = {} if "IndexName" in arguments else {"ConsistentRead": True}
    while True:
        page = client.scan(TableName=table, **consistent, **arguments, **start)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def _index_ids(client, table: str, index: tuple) -> set:
    name, attribute = index
    return {(item[attribute]["S"], item["id"]["S"]) for item in scan_items(client, table, IndexName=name)}


def check(client, table: str) -> list:
    """Every violation found, as human-readable lines (empty: consistent)."""
    reservations, slots, users, requests, problems = {}, {}, {}, [], []
    for item in scan_items(client, table):
        kind = item["sk"]["S"]
        if kind == RESERVATION_SK:
            try:
                reservation = reservation_from_item(item)
            except (KeyError, ValueError):
                problems.append(f"unreadable reservation item {item['pk']['S']}")
                continue
            reservations[reservation.id] = (reservation, item)
        elif kind.startswith("SLOT#"):
            slots[(item["pk"]["S"].removeprefix("RES#"), int(kind.removeprefix("SLOT#")))] = item
        elif kind == USER_SK:
            users[item["pk"]["S"].removeprefix("USR#")] = int(item["longest"]["N"])
        elif kind == REQUEST_SK:
            requests.append(item)

    by_resource = collections.defaultdict(list)
    for reservation, item in reservations.values():
        by_resource[reservation.resource_id].append(reservation)
        expected = {"resource_id": reservation.resource_id, "user_id": reservation.user_id,
                    "start_key": start_key(reservation.start_ns, reservation.id)}
        for attribute, value in expected.items():
            if item.get(attribute, {}).get("S") != value:
                problems.append(f"index: reservation {reservation.id} has {attribute} "
                                f"{item.get(attribute, {}).get('S')!r}, expected {value!r}")
        if reservation.end_ns - reservation.start_ns > users.get(reservation.user_id, 0):
            problems.append(f"short lookback: reservation {reservation.id} is longer than user "
                            f"{reservation.user_id}'s recorded longest")
        for index in slots_touched(reservation.start_ns, reservation.end_ns):
            claim = slots.get((reservation.resource_id, index), {}).get("claims", {}).get("M", {}).get(reservation.id)
            if claim is None:
                problems.append(f"missing claim: reservation {reservation.id} has no claim in slot {index} "
                                f"of {reservation.resource_id}")

    for resource_id, listed in by_resource.items():
        listed.sort(key=lambda r: (r.start_ns, r.id))
        latest = None
        for reservation in listed:
            if latest is not None and reservation.start_ns < latest.end_ns:
                problems.append(f"overlap: {latest.id} and {reservation.id} of resource {resource_id}")
            if latest is None or reservation.end_ns > latest.end_ns:
                latest = reservation

    for (resource_id, index), item in slots.items():
        for reservation_id, window in item.get("claims", {}).get("M", {}).items():
            found = reservations.get(reservation_id)
            claimed = (int(window["L"][0]["N"]), int(window["L"][1]["N"]))
            if found is None:
                problems.append(f"orphan claim: slot {index} of {resource_id} claims missing reservation "
                                f"{reservation_id}")
            elif (found[0].resource_id, (found[0].start_ns, found[0].end_ns)) != (resource_id, claimed) or \
                    index not in slots_touched(*claimed):
                problems.append(f"orphan claim: slot {index} of {resource_id} differs from reservation "
                                f"{reservation_id}")

    for index in (BY_RESOURCE, BY_USER):
        listed = _index_ids(client, table, index)
        _, attribute = index
        for reservation, _item in reservations.values():
            if (getattr(reservation, attribute), reservation.id) not in listed:
                problems.append(f"index: {index[0]} does not return reservation {reservation.id}")

    for item in requests:
        try:
            remembered = reservation_from_item(item["reservation"]["M"])
        except (KeyError, ValueError):
            problems.append(f"bad request record {item['pk']['S']}: no readable reservation")
            continue
        live = reservations.get(remembered.id)
        if live is not None and (live[0].resource_id, live[0].start_ns, live[0].end_ns, live[0].user_id) != (
                remembered.resource_id, remembered.start_ns, remembered.end_ns, remembered.user_id):
            problems.append(f"bad request record {item['pk']['S']}: reservation {remembered.id} differs")
    return problems


def main(argv=None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="the reservation table")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (e.g. the embedded one of make serve)")
    options = parser.parse_args(argv)
    problems = check(boto3.client("dynamodb", endpoint_url=options.endpoint_url), options.table)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {options.table}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
