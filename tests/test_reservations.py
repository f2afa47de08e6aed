"""Reservation semantics through the Chalice app (Connect, binary and JSON), on moto."""
import base64
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib.gen import reservation_pb2 as pb
from chalicelib.slots import SLOT_SECONDS
from harness.moto import scan_all
from tests.helpers import reservation, stamp

DAY = 24 * 60


def reserve(call, codec="proto", request_id="", **fields):
    return call("reserve", pb.ReserveRequest(reservation=reservation(**fields), request_id=request_id), codec)


def conflict_detail(answer) -> pb.ReservationConflict:
    (detail,) = answer.error["details"]
    assert detail["type"] == "reservation.ReservationConflict"
    value = detail["value"]
    return pb.ReservationConflict.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_reserve_assigns_an_id_defaults_to_pending_and_round_trips_times(call, codec):
    wanted = reservation(note="standup")
    wanted.start.nanos = 123456789
    wanted.end.nanos = 987654321
    answer = call("reserve", pb.ReserveRequest(reservation=wanted), codec)
    assert answer.status == 200, answer
    made = answer.message.reservation
    assert str(uuid.UUID(made.id)) == made.id
    assert made.status == pb.PENDING
    assert (made.start, made.end) == (wanted.start, wanted.end)
    assert (made.user_id, made.resource_id, made.note) == ("alice", "room-1", "standup")
    fetched = call("get", pb.GetRequest(id=made.id), codec).message.reservation
    assert fetched == made


@pytest.mark.parametrize("status", [pb.PENDING, pb.CONFIRMED, pb.BLOCKED])
def test_reserve_keeps_a_given_status(call, status):
    assert reserve(call, status=status).message.reservation.status == status


def test_ids_are_unique_and_unguessable(call):
    ids = {reserve(call, resource=f"r{n}").message.reservation.id for n in range(20)}
    assert len(ids) == 20
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_back_to_back_reservations_do_not_conflict(call):
    assert reserve(call, start=600, end=620).status == 200
    assert reserve(call, start=620, end=640).status == 200
    assert reserve(call, start=580, end=600).status == 200


@pytest.mark.parametrize("shape,start,end", [
    ("inside", 610, 630), ("covering", 590, 650), ("left", 590, 610),
    ("right", 630, 660), ("identical", 600, 640),
])
def test_every_overlap_shape_conflicts_and_names_the_reservation(call, dynamodb, shape, start, end):
    existing = reserve(call, start=600, end=640).message.reservation
    before = scan_all(dynamodb)
    answer = reserve(call, user="bob", start=start, end=end)
    assert answer.status == 400 and answer.code == "failed_precondition", answer
    assert existing.id in answer.error["message"]
    detail = conflict_detail(answer)
    assert detail.resource_id == "room-1"
    assert [(c.id, c.start, c.end) for c in detail.conflicts] == [(existing.id, existing.start, existing.end)]
    assert (detail.requested.start, detail.requested.end) == (stamp(start), stamp(end))
    assert scan_all(dynamodb) == before


def test_conflict_is_by_nanosecond(call):
    first = reservation(start=0, end=60)
    first.end.nanos = 1
    assert call("reserve", pb.ReserveRequest(reservation=first)).status == 200
    assert reserve(call, start=60, end=70).code == "failed_precondition"
    later = reservation(start=60, end=70)
    later.start.nanos = 1
    assert call("reserve", pb.ReserveRequest(reservation=later)).status == 200


def test_a_conflict_names_every_overlapping_reservation(call):
    ids = [reserve(call, start=s, end=s + 30).message.reservation.id for s in (0, 30, 60)]
    answer = reserve(call, start=10, end=70)
    assert [c.id for c in conflict_detail(answer).conflicts] == ids


def test_other_resources_and_any_status_count_separately(call):
    reserve(call, status=pb.BLOCKED)
    assert reserve(call, resource="room-2").status == 200
    assert reserve(call, status=pb.CONFIRMED).code == "failed_precondition"


@pytest.mark.parametrize("offset_minutes", [0, 1, 3 * DAY + 7, SLOT_SECONDS // 60 - 1])
def test_one_second_to_366_days_at_any_alignment(call, offset_minutes):
    short = reservation(resource="s", start=offset_minutes, end=offset_minutes)
    short.end.seconds += 1
    assert call("reserve", pb.ReserveRequest(reservation=short)).status == 200
    long_one = reserve(call, resource="l", start=offset_minutes, end=offset_minutes + 366 * DAY)
    assert long_one.status == 200, long_one
    # a short reservation deep inside the long one, and one touching its end
    assert reserve(call, resource="l", start=offset_minutes + 200 * DAY, end=offset_minutes + 200 * DAY + 1).code \
        == "failed_precondition"
    assert reserve(call, resource="l", start=offset_minutes + 366 * DAY, end=offset_minutes + 367 * DAY).status == 200


def test_the_longest_reservation_is_380_days(call):
    assert reserve(call, start=17, end=17 + 380 * DAY).status == 200
    too_long = reserve(call, resource="other", start=0, end=380 * DAY + 1)
    assert too_long.code == "invalid_argument" and "380 days" in too_long.error["message"]


def test_cancel_frees_the_time_at_once_and_answers_the_reservation_as_it_was(call):
    made = reserve(call, start=0, end=60, note="keep").message.reservation
    cancelled = call("cancel", pb.CancelRequest(id=made.id))
    assert cancelled.message.reservation == made
    assert reserve(call, user="bob", start=30, end=90).status == 200
    assert call("cancel", pb.CancelRequest(id=made.id)).code == "not_found"
    assert call("get", pb.GetRequest(id=made.id)).code == "not_found"


def test_cancel_then_rebook_many_times_leaves_no_claims_behind(call, dynamodb):
    for _ in range(5):
        made = reserve(call, start=0, end=10 * DAY).message.reservation
        assert call("cancel", pb.CancelRequest(id=made.id)).status == 200
    items = scan_all(dynamodb)
    assert not [item for item in items if item["sk"]["S"] == "RSV"]
    assert all(item["claims"]["M"] == {} for item in items if item["sk"]["S"].startswith("SLOT#"))


def test_confirm_rules(call):
    pending = reserve(call, start=0, end=10).message.reservation
    confirmed = call("confirm", pb.ConfirmRequest(id=pending.id)).message.reservation
    assert confirmed.status == pb.CONFIRMED
    assert call("confirm", pb.ConfirmRequest(id=pending.id)).message.reservation == confirmed
    blocked = reserve(call, start=20, end=30, status=pb.BLOCKED).message.reservation
    answer = call("confirm", pb.ConfirmRequest(id=blocked.id))
    assert answer.code == "failed_precondition" and "BLOCKED" in answer.error["message"]
    assert call("get", pb.GetRequest(id=blocked.id)).message.reservation.status == pb.BLOCKED
    assert call("confirm", pb.ConfirmRequest(id=str(uuid.uuid4()))).code == "not_found"
    assert call("confirm", pb.ConfirmRequest(id="nope")).code == "invalid_argument"


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_update_changes_status_and_note_independently(call, codec):
    made = reserve(call, note="first").message.reservation
    status_only = call("update", pb.UpdateRequest(id=made.id, status=pb.CONFIRMED), codec).message.reservation
    assert (status_only.status, status_only.note) == (pb.CONFIRMED, "first")
    note_only = call("update", pb.UpdateRequest(id=made.id, note="second"), codec).message.reservation
    assert (note_only.status, note_only.note) == (pb.CONFIRMED, "second")
    cleared = call("update", pb.UpdateRequest(id=made.id, note=""), codec).message.reservation
    assert cleared.note == ""
    both = call("update", pb.UpdateRequest(id=made.id, status=pb.BLOCKED, note="x"), codec).message.reservation
    assert (both.status, both.note) == (pb.BLOCKED, "x")
    assert call("get", pb.GetRequest(id=made.id), codec).message.reservation == both
    assert (both.start, both.end, both.resource_id) == (made.start, made.end, made.resource_id)


def test_update_errors(call):
    made = reserve(call).message.reservation
    assert call("update", pb.UpdateRequest(id=str(uuid.uuid4()), note="x")).code == "not_found"
    assert call("update", pb.UpdateRequest(id="", note="x")).code == "invalid_argument"
    bad_status = call("update", pb.UpdateRequest(id=made.id, status=7))
    assert bad_status.code == "invalid_argument" and "status" in bad_status.error["message"]
    assert call("update", pb.UpdateRequest(id=made.id, note="\x00")).code == "invalid_argument"


def test_get_errors(call):
    assert call("get", pb.GetRequest(id=str(uuid.uuid4()))).code == "not_found"
    for malformed in ("", "abc", str(uuid.uuid4()).upper(), "RSV#x", "../etc"):
        assert call("get", pb.GetRequest(id=malformed)).code == "invalid_argument", malformed


def test_a_retried_reserve_with_the_same_request_id_creates_nothing_new(call, dynamodb):
    first = reserve(call, request_id="req-1", note="n").message.reservation
    again = reserve(call, request_id="req-1", note="n")
    assert again.status == 200 and again.message.reservation == first
    assert len([i for i in scan_all(dynamodb) if i["sk"]["S"] == "RSV"]) == 1
    different = reserve(call, request_id="req-1", note="other")
    assert different.code == "already_exists" and "req-1" in different.error["message"]
    call("cancel", pb.CancelRequest(id=first.id))
    assert reserve(call, request_id="req-1", note="n").message.reservation == first
    assert call("get", pb.GetRequest(id=first.id)).code == "not_found"


def _timestamp(seconds, nanos=0):
    return Timestamp(seconds=seconds, nanos=nanos)


BAD_RESERVATIONS = [
    ("reservation.user_id", dict(user="")),
    ("reservation.resource_id", dict(resource="")),
    ("reservation.resource_id", dict(resource="r" * 129)),
    ("reservation.user_id", dict(user="a\nb")),
    ("reservation.note", dict(note="x" * 4097)),
    ("reservation.id", dict(id=str(uuid.uuid4()))),
    ("reservation.end", dict(start=60, end=60)),
    ("reservation.end", dict(start=60, end=30)),
    ("reservation.status", dict(status=9)),
]


@pytest.mark.parametrize("field,fields", BAD_RESERVATIONS)
def test_bad_reservations_are_invalid_argument_naming_the_field_and_write_nothing(call, dynamodb, field, fields):
    answer = reserve(call, **fields)
    assert answer.status == 400 and answer.code == "invalid_argument", answer
    assert answer.error["message"].startswith(field), answer.error
    assert scan_all(dynamodb) == []


@pytest.mark.parametrize("field,start,end", [
    ("reservation.start.nanos", _timestamp(10, 1_000_000_000), _timestamp(20)),
    ("reservation.end.nanos", _timestamp(10), _timestamp(20, -1)),
    ("reservation.end", _timestamp(10), _timestamp(253402300800)),
    ("reservation.start", _timestamp(-62135596801), _timestamp(20)),
])
def test_timestamps_outside_the_valid_range_are_rejected(call, dynamodb, field, start, end):
    wanted = pb.Reservation(user_id="u", resource_id="r", start=start, end=end)
    answer = call("reserve", pb.ReserveRequest(reservation=wanted))
    assert answer.code == "invalid_argument" and answer.error["message"].startswith(field), answer
    assert scan_all(dynamodb) == []


def test_missing_fields_are_named(call, dynamodb):
    assert call("reserve", pb.ReserveRequest()).error["message"].startswith("reservation:")
    no_end = pb.Reservation(user_id="u", resource_id="r", start=stamp(0))
    assert call("reserve", pb.ReserveRequest(reservation=no_end)).error["message"].startswith("reservation.end")
    assert scan_all(dynamodb) == []


def test_the_extremes_of_the_timestamp_range_work(call):
    first = pb.Reservation(user_id="u", resource_id="r", start=_timestamp(-62135596800), end=_timestamp(-62135596000))
    last = pb.Reservation(user_id="u", resource_id="r", start=_timestamp(253402300000),
                          end=_timestamp(253402300799, 999_999_999))
    for wanted in (first, last):
        made = call("reserve", pb.ReserveRequest(reservation=wanted)).message.reservation
        assert (made.start, made.end) == (wanted.start, wanted.end)
