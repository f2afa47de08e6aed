"""ops/migrate.py brings a table of the first release to the v2 layout: the first release's items are
written here by hand, as the first release wrote them (its chalicelib/store.py and slots.py), then
migrated; get, conflicts and queries work after, through the Chalice app, the checker finds nothing, and
running it again changes nothing."""

import hashlib
import time
import unicodedata
import uuid

import pytest

from chalicelib import layout
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import DAY_NS, MIN_NS, MINUTE_NS
from harness.moto import TABLE, scan_all
from ops import checker, migrate
from tests.helpers import BASE_TIME, reservation, stamp

V1_SLOT_NS = 4 * DAY_NS  # the first release's slot items: 4 days each, from the epoch
T0 = int(BASE_TIME.timestamp()) * 10**9  # 2026-12-01T00:00Z: minute m of tests.helpers.stamp(m)


def minutes(m: float) -> int:
    return T0 + int(m * MINUTE_NS)


def v1_reservation_item(reservation_id, user, resource, status, start_ns, end_ns, note="", rev=1) -> dict:
    return {
        "pk": {"S": f"RSV#{reservation_id}"},
        "sk": {"S": "RSV"},
        "id": {"S": reservation_id},
        "user_id": {"S": user},
        "resource_id": {"S": resource},
        "status": {"N": str(status)},
        "start": {"N": str(start_ns)},
        "end": {"N": str(end_ns)},
        "note": {"S": note},
        "rev": {"N": str(rev)},
        "start_key": {"S": f"{start_ns - MIN_NS:021d}#{reservation_id}"},
    }


def v1_fingerprint(user, resource, status, start_ns, end_ns, note) -> str:
    parts = (user, resource, str(status), str(start_ns), str(end_ns), note)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def v1_items(reservations: list, requests: dict | None = None) -> list:
    """Every item the first release left for `reservations` (id, user, resource, status, start, end, note):
    reservation items, slot items with their claims, users' longest records, remembered request ids."""
    items, slots, longest = [], {}, {}
    for reservation_id, user, resource, status, start, end, note in reservations:
        items.append(v1_reservation_item(reservation_id, user, resource, status, start, end, note))
        for index in range(start // V1_SLOT_NS, (end - 1) // V1_SLOT_NS + 1):
            slots.setdefault((resource, index), {})[reservation_id] = {"L": [{"N": str(start)}, {"N": str(end)}]}
        longest[user] = max(longest.get(user, 0), end - start)
    for (resource, index), claims in slots.items():
        items.append(
            {
                "pk": {"S": f"RES#{resource}"},
                "sk": {"S": f"SLOT#{index}"},
                "ver": {"N": str(len(claims))},
                "claims": {"M": claims},
            }
        )
    items += [
        {"pk": {"S": f"USR#{user}"}, "sk": {"S": "USR"}, "longest": {"N": str(duration)}}
        for user, duration in longest.items()
    ]
    by_id = {r[0]: r for r in reservations}
    for request_id, reservation_id in (requests or {}).items():
        _, user, resource, status, start, end, note = by_id[reservation_id]
        items.append(
            {
                "pk": {"S": f"REQ#{request_id}"},
                "sk": {"S": "REQ"},
                "fingerprint": {"S": v1_fingerprint(user, resource, status, start, end, note)},
                "reservation": {
                    "M": {
                        key: value
                        for key, value in v1_reservation_item(
                            reservation_id, user, resource, status, start, end, note
                        ).items()
                        if key in ("id", "user_id", "resource_id", "status", "start", "end", "note")
                    }
                },
                "expires_at": {"N": str(int(time.time()) + 12 * 3600)},
            }
        )
    return items


IDS = {name: str(uuid.uuid4()) for name in ("a", "b", "c", "d", "e")}
V1_RESERVATIONS = [
    (IDS["a"], "alice", "room-1", 2, minutes(600), minutes(660), "board"),  # CONFIRMED 10:00-11:00
    (IDS["b"], "alice", "room-1", 1, minutes(660), minutes(750), ""),  # PENDING 11:00-12:30
    (IDS["c"], "bob", "hall", 3, minutes(-3 * 24 * 60), minutes(17 * 24 * 60), "works"),  # BLOCKED, 20 days
    (IDS["d"], "cyd", "desk", 1, minutes(0), minutes(1), "quick"),
    (IDS["e"], "bob", "room-2", 2, minutes(6 * 24 * 60), minutes(6 * 24 * 60 + 60), ""),
]


@pytest.fixture
def first_release(dynamodb):
    for item in v1_items(V1_RESERVATIONS, {"req-a": IDS["a"]}):
        dynamodb.put_item(TableName=TABLE, Item=item)
    return dynamodb


def test_the_first_release_table_is_moved_to_the_v2_layout(first_release):
    before = scan_all(first_release)
    slot_items = [item for item in before if item["sk"]["S"].startswith("SLOT#")]
    assert migrate.migrate(first_release, TABLE, dry_run=True)[1] == len(slot_items)
    assert scan_all(first_release) == before  # a dry run changes nothing
    _written, deleted = migrate.migrate(first_release, TABLE)
    assert deleted == len(slot_items)
    items = scan_all(first_release)
    assert not [item for item in items if item["sk"]["S"].startswith("SLOT#")]
    kinds = {}
    for item in items:
        kinds.setdefault(layout.kind_of(item), []).append(item)
    assert len(kinds["reservation"]) == len(kinds["booking"]) == len(V1_RESERVATIONS)
    assert sorted(layout.resource_of(item["pk"]["S"]) for item in kinds["definition"]) == [
        "desk",
        "hall",
        "room-1",
        "room-2",
    ]
    assert all(not layout.definition_from(item).defined for item in kinds["definition"])  # markers of the shape
    assert layout.longest_of(next(iter(kinds["tenant"]))) == 20 * DAY_NS
    assert checker.check(first_release, TABLE) == []


def test_running_it_again_changes_nothing(first_release):
    migrate.migrate(first_release, TABLE)
    after_first = scan_all(first_release)
    assert migrate.migrate(first_release, TABLE)[1] == 0
    assert scan_all(first_release) == after_first
    assert migrate.main(["--table", TABLE]) == 0
    assert scan_all(first_release) == after_first


@pytest.fixture
def v2(first_release, call):
    migrate.migrate(first_release, TABLE)
    return call


def test_get_answers_every_migrated_reservation_as_it_was(v2):
    for reservation_id, user, resource, status, start, end, note in V1_RESERVATIONS:
        got = v2("get", pb.GetRequest(id=reservation_id)).message.reservation
        assert (got.user_id, got.resource_id, got.status, got.note, got.units) == (user, resource, status, note, 1)
        assert (got.start.ToNanoseconds(), got.end.ToNanoseconds()) == (start, end)
        assert not got.HasField("expires_at")


def test_conflicts_see_the_migrated_reservations(v2, first_release):
    answer = v2("reserve", pb.ReserveRequest(reservation=reservation("room-1", "zed", 630, 690)))
    assert answer.code == "failed_precondition"
    assert IDS["a"] in answer.error["message"] and IDS["b"] in answer.error["message"]
    inside_the_long_one = v2(
        "reserve", pb.ReserveRequest(reservation=reservation("hall", "zed", 5 * 24 * 60, 5 * 24 * 60 + 30))
    )
    assert inside_the_long_one.code == "failed_precondition" and IDS["c"] in inside_the_long_one.error["message"]
    assert v2("reserve", pb.ReserveRequest(reservation=reservation("room-1", "zed", 750, 780))).status == 200
    assert v2("reserve", pb.ReserveRequest(reservation=reservation("room-1", "zed", 540, 600))).status == 200
    assert checker.check(first_release, TABLE) == []


def test_queries_find_the_migrated_reservations(v2):
    def found(**fields):
        return [r.id for r in _filter(v2, fields)]

    assert found(resource_id="room-1") == [IDS["a"], IDS["b"]]
    assert found(user_id="alice") == [IDS["a"], IDS["b"]]
    # windows deep inside the 20-day reservation: the lookback of each query path reaches its start
    window = dict(start=stamp(10 * 24 * 60), end=stamp(10 * 24 * 60 + 1))
    assert found(resource_id="hall", **window) == [IDS["c"]]
    assert found(user_id="bob", **window) == [IDS["c"]]
    assert found(**window) == [IDS["c"]]
    assert found(status=pb.BLOCKED) == [IDS["c"]]


def _filter(call, fields) -> list:
    status, _, body = call.raw(
        "filter",
        pb.FilterRequest(query=pb.QueryRequest(**fields)).SerializeToString(),
        {"content-type": "application/proto"},
    )
    assert status == 200, body
    return list(pb.FilterResponse.FromString(body).reservations)


def test_migrated_reservations_change_like_any_other(v2, first_release):
    assert v2("confirm", pb.ConfirmRequest(id=IDS["b"])).message.reservation.status == pb.CONFIRMED
    assert v2("update", pb.UpdateRequest(id=IDS["d"], note="later")).message.reservation.note == "later"
    cancelled = v2("cancel", pb.CancelRequest(id=IDS["a"])).message.reservation
    assert cancelled.id == IDS["a"]
    assert v2("reserve", pb.ReserveRequest(reservation=reservation("room-1", "zed", 600, 660))).status == 200
    status, _, body = v2.raw(
        "reschedule",
        pb.RescheduleRequest(id=IDS["c"], start=stamp(30 * 24 * 60), end=stamp(31 * 24 * 60)).SerializeToString(),
        {"content-type": "application/proto"},
    )
    assert status == 200, body
    assert (
        v2("reserve", pb.ReserveRequest(reservation=reservation("hall", "zed", 5 * 24 * 60, 5 * 24 * 60 + 30))).status
        == 200
    )
    assert checker.check(first_release, TABLE) == []


def test_a_request_id_of_the_first_release_replays_after_migration(v2):
    _, user, resource, status, start, end, note = V1_RESERVATIONS[0]
    retry = pb.ReserveRequest(
        reservation=pb.Reservation(
            user_id=user,
            resource_id=resource,
            status=status,
            note=note,
            start=stamp((start - T0) / MINUTE_NS),
            end=stamp((end - T0) / MINUTE_NS),
        ),
        request_id="req-a",
    )
    answer = v2("reserve", retry)
    assert answer.status == 200, answer
    assert answer.message.reservation.id == IDS["a"]


def test_a_resource_id_the_first_release_stored_unnormalized_is_the_same_resource_after_migration(dynamodb, call):
    nfd = unicodedata.normalize("NFD", "Salle-é")
    made = str(uuid.uuid4())
    for item in v1_items([(made, "alice", nfd, 2, minutes(600), minutes(660), "")]):
        dynamodb.put_item(TableName=TABLE, Item=item)
    migrate.migrate(dynamodb, TABLE)
    answer = call(
        "reserve", pb.ReserveRequest(reservation=reservation(unicodedata.normalize("NFC", "Salle-é"), "bob", 600, 660))
    )
    assert answer.code == "failed_precondition" and made in answer.error["message"], answer
