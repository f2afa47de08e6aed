"""Reservation semantics through the Chalice app (Connect, binary and JSON), on moto."""

import base64
import json
import time
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from chalicelib import layout
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import MINUTE_NS
from harness.moto import scan_all
from tests.helpers import RESPONSE_TYPES, ConnectAnswer, encode, reservation, stamp

DAY = 24 * 60


def reserve(call, codec="proto", request_id="", hold_for=None, **fields):
    request = pb.ReserveRequest(reservation=reservation(**fields), request_id=request_id)
    if hold_for is not None:
        request.hold_for.CopyFrom(hold_for)
    return call("reserve", request, codec)


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


@pytest.mark.parametrize(
    "shape,start,end",
    [
        ("inside", 610, 630),
        ("covering", 590, 650),
        ("left", 590, 610),
        ("right", 630, 660),
        ("identical", 600, 640),
    ],
)
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


@pytest.mark.parametrize("offset_minutes", [0, 1, 3 * DAY + 7, layout.DEFAULT_SLOT_NS // MINUTE_NS - 1])
def test_one_second_to_366_days_at_any_alignment(call, offset_minutes):
    short = reservation(resource="s", start=offset_minutes, end=offset_minutes)
    short.end.seconds += 1
    assert call("reserve", pb.ReserveRequest(reservation=short)).status == 200
    long_one = reserve(call, resource="l", start=offset_minutes, end=offset_minutes + 366 * DAY)
    assert long_one.status == 200, long_one
    # a short reservation deep inside the long one, and one touching its end
    assert (
        reserve(call, resource="l", start=offset_minutes + 200 * DAY, end=offset_minutes + 200 * DAY + 1).code
        == "failed_precondition"
    )
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
    kinds = {layout.kind_of(item) for item in scan_all(dynamodb)}
    # what stays is what serialises later writers (guards, the shape marker) and the history (events)
    assert not kinds & {"reservation", "booking", "bucket"}, kinds
    assert reserve(call, start=0, end=10 * DAY).status == 200


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


@pytest.mark.parametrize(
    "field,start,end",
    [
        ("reservation.start.nanos", _timestamp(10, 1_000_000_000), _timestamp(20)),
        ("reservation.end.nanos", _timestamp(10), _timestamp(20, -1)),
        ("reservation.end", _timestamp(10), _timestamp(253402300800)),
        ("reservation.start", _timestamp(-62135596801), _timestamp(20)),
    ],
)
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
    last = pb.Reservation(
        user_id="u", resource_id="r", start=_timestamp(253402300000), end=_timestamp(253402300799, 999_999_999)
    )
    for wanted in (first, last):
        made = call("reserve", pb.ReserveRequest(reservation=wanted)).message.reservation
        assert (made.start, made.end) == (wanted.start, wanted.end)


# ---- units, holds, reschedule and resources over HTTP (the rules themselves: tests/unit) ----------------

MORE_RESPONSES = {
    "reschedule": pb.RescheduleResponse,
    "define_resource": pb.DefineResourceResponse,
    "get_resource": pb.GetResourceResponse,
    "list_resources": pb.ListResourcesResponse,
    "delete_resource": pb.DeleteResourceResponse,
}


def rpc(call, method: str, request, codec="proto"):
    """A unary call of any method (tests.helpers knows the original five)."""
    sent = {"content-type": f"application/{codec}"}
    status, headers, body = call.raw(method, encode(request, codec), sent)
    return ConnectAnswer(status, headers, body, RESPONSE_TYPES.get(method) or MORE_RESPONSES[method], codec)


def post_json(call, method: str, document: dict):
    """A Connect JSON call written by hand, as a browser or curl user writes it: (status, answer document)."""
    status, _, body = call.raw(method, json.dumps(document).encode(), {"content-type": "application/json"})
    return status, json.loads(body)


def test_a_resource_round_trips_in_json_with_durations_labels_and_zone(call):
    document = {
        "resource": {
            "id": "lab",
            "name": "Wet lab",
            "labels": {"floor": "2", "kind": "lab"},
            "capacity": 4,
            "step": "900s",
            "minDuration": "1800s",
            "maxDuration": "14400s",
            "minNotice": "0.5s",
            "holdFor": "600s",
            "timeZone": "Europe/Paris",
        }
    }
    status, defined = post_json(call, "define_resource", document)
    assert status == 200, defined
    canonical = {"resource": {**document["resource"], "minNotice": "0.500s"}}  # protobuf's JSON form
    assert defined == canonical
    status, fetched = post_json(call, "get_resource", {"id": "lab"})
    assert (status, fetched) == (200, canonical)
    status, answer = post_json(call, "define_resource", {"resource": {"id": "bad", "capacity": 2}})
    assert (status, answer["code"]) == (400, "invalid_argument") and answer["message"].startswith("resource.step")


def test_resources_list_by_label_page_by_page_and_delete(call):
    for n in range(5):
        labels = {"kind": "room"} if n % 2 == 0 else {"kind": "desk"}
        assert (
            rpc(
                call, "define_resource", pb.DefineResourceRequest(resource=pb.Resource(id=f"res-{n}", labels=labels))
            ).status
            == 200
        )
    seen, token = [], ""
    while True:
        status, page = post_json(
            call, "list_resources", {"labels": {"kind": "room"}, "pageSize": 2, "pageToken": token}
        )
        assert status == 200, page
        seen += [resource["id"] for resource in page.get("resources", [])]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert seen == ["res-0", "res-2", "res-4"]
    deleted = rpc(call, "delete_resource", pb.DeleteResourceRequest(id="res-2"))
    assert deleted.message.resource.id == "res-2"
    assert rpc(call, "get_resource", pb.GetResourceRequest(id="res-2")).code == "not_found"
    assert rpc(call, "delete_resource", pb.DeleteResourceRequest(id="res-2")).code == "not_found"
    listed = rpc(call, "list_resources", pb.ListResourcesRequest(labels={"kind": "room"})).message
    assert [resource.id for resource in listed.resources] == ["res-0", "res-4"]


def test_a_pool_counts_units_on_dynamodb_and_a_full_window_is_in_the_conflict_detail(call, dynamodb):
    assert (
        rpc(
            call,
            "define_resource",
            pb.DefineResourceRequest(resource=pb.Resource(id="pool", capacity=3, step={"seconds": 900})),
        ).status
        == 200
    )
    first = reserve(call, resource="pool", start=0, end=60, units=2)
    assert first.status == 200 and first.message.reservation.units == 2
    one = reserve(call, resource="pool", user="bob", start=30, end=45)
    assert one.message.reservation.units == 1  # units 0 means 1
    full = reserve(call, resource="pool", user="carol", start=15, end=45, codec="json")
    assert full.status == 400 and full.code == "failed_precondition", full
    detail = conflict_detail(full)
    assert (detail.full_window.start, detail.full_window.end, detail.units_free) == (stamp(30), stamp(45), 0)
    assert sorted(c.id for c in detail.conflicts) == sorted([first.message.reservation.id, one.message.reservation.id])
    assert {c.units for c in detail.conflicts} == {1, 2}
    assert reserve(call, resource="pool", user="carol", start=0, end=30).status == 200
    buckets = [
        layout.bucket_from(layout.Shape(pool=True, slot_ns=0, step_ns=900 * 10**9), 0, item)
        for item in scan_all(dynamodb)
        if layout.kind_of(item) == "bucket"
    ]
    assert sum(units for bucket in buckets for _, units in bucket.used) == 2 * 4 + 1 + 2
    assert reserve(call, resource="pool", start=0, end=60, units=4).code == "invalid_argument"


def test_a_hold_in_json_shows_its_expiry_confirm_clears_it_and_an_expired_one_reads_expired(call):
    status, held = post_json(
        call,
        "reserve",
        {
            "reservation": {
                "userId": "u",
                "resourceId": "desk",
                "start": "2026-12-01T10:00:00Z",
                "end": "2026-12-01T11:00:00Z",
            },
            "holdFor": "300s",
        },
    )
    assert status == 200, held
    made = held["reservation"]
    assert made["status"] == "PENDING" and made["expiresAt"].endswith("Z")
    expires = pb.Reservation()
    expires.expires_at.FromJsonString(made["expiresAt"])
    assert abs(expires.expires_at.ToSeconds() - time.time() - 300) < 30
    status, confirmed = post_json(call, "confirm", {"id": made["id"]})
    assert status == 200 and confirmed["reservation"]["status"] == "CONFIRMED"
    assert "expiresAt" not in confirmed["reservation"]

    brief = reserve(call, resource="desk", start=120, end=180, hold_for=None)  # a plain PENDING: no expiry
    assert not brief.message.reservation.HasField("expires_at")
    short = call(
        "reserve",
        pb.ReserveRequest(reservation=reservation(resource="desk", start=200, end=260), hold_for={"nanos": 1_000_000}),
    )
    assert short.status == 200 and short.message.reservation.HasField("expires_at")
    time.sleep(0.01)
    assert call("get", pb.GetRequest(id=short.message.reservation.id)).message.reservation.status == pb.EXPIRED
    taken = reserve(call, resource="desk", user="bob", start=200, end=260)  # an expired hold blocks nothing
    assert taken.status == 200, taken
    assert call("get", pb.GetRequest(id=short.message.reservation.id)).code == "not_found"


def test_hold_and_expiry_fields_that_the_caller_cannot_set(call, dynamodb):
    given_expiry = reservation(expires_at=stamp(5))
    answer = call("reserve", pb.ReserveRequest(reservation=given_expiry))
    assert answer.code == "invalid_argument" and answer.error["message"].startswith("reservation.expires_at")
    assert reserve(call, status=pb.EXPIRED).code == "invalid_argument"
    confirmed_hold = call(
        "reserve", pb.ReserveRequest(reservation=reservation(status=pb.CONFIRMED), hold_for={"seconds": 60})
    )
    assert confirmed_hold.code == "invalid_argument" and confirmed_hold.error["message"].startswith("hold_for")
    assert scan_all(dynamodb) == []


def test_reschedule_in_json_moves_in_place_and_a_conflict_carries_its_detail(call):
    made = reserve(call, start=0, end=60, note="keep").message.reservation
    other = reserve(call, user="bob", start=120, end=180).message.reservation
    status, moved = post_json(
        call, "reschedule", {"id": made.id, "start": "2026-12-01T01:00:00Z", "end": "2026-12-01T02:00:00Z"}
    )
    assert status == 200, moved
    assert (moved["reservation"]["id"], moved["reservation"]["note"]) == (made.id, "keep")
    assert reserve(call, user="carol", start=0, end=60).status == 200  # the old window is free
    refused = rpc(call, "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150), end=stamp(170)))
    assert refused.code == "failed_precondition", refused
    assert [c.id for c in conflict_detail(refused).conflicts] == [other.id]
    elsewhere = rpc(
        call, "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150), end=stamp(170), resource_id="room-9")
    ).message.reservation
    assert (elsewhere.resource_id, elsewhere.id) == ("room-9", made.id)
    assert call("get", pb.GetRequest(id=made.id)).message.reservation == elsewhere
    assert (
        rpc(call, "reschedule", pb.RescheduleRequest(id=made.id, start=stamp(150))).error["message"].startswith("end")
    )
