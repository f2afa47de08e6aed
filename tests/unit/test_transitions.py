"""Confirm, update, cancel and get of PENDING, CONFIRMED, BLOCKED reservations and of holds that expire."""

import pytest
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from chalicelib.api import CallContext, timestamp_of
from chalicelib.errors import Code, ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Status
from chalicelib.ports import OutcomeUnknown
from chalicelib.validate import iso

from .support import M, at, raises_code


def test_new_reservation_is_pending_without_expiry_by_default(world):
    made = world.reserve(status=Status.UNKNOWN)
    assert made.status == Status.PENDING and made.expires_at_ns == 0
    assert world.get(made.id) == made


def test_reserve_cannot_ask_for_expired(world):
    with raises_code(Code.INVALID_ARGUMENT, "EXPIRED"):
        world.reserve(status=Status.EXPIRED)


def test_hold_for_is_only_for_pending_reservations(world):
    with raises_code(Code.INVALID_ARGUMENT, "hold_for", "CONFIRMED"):
        world.reserve(status=Status.CONFIRMED, hold_for=5 * M)
    with raises_code(Code.INVALID_ARGUMENT, "hold_for"):
        world.reserve(status=Status.PENDING, hold_for=-1)


def test_hold_expires_hold_for_after_it_was_made(world, clock):
    clock.set(at(8))
    hold = world.hold(hold_for=5 * M)
    assert hold.status == Status.PENDING and hold.expires_at_ns == at(8, 5)


def test_resource_default_hold_for_applies_to_pending_only(world, clock):
    world.define("room-1", hold_for_ns=10 * M)
    clock.set(at(8))
    pending = world.reserve("room-1", at(10), at(11), status=Status.PENDING)
    confirmed = world.reserve("room-1", at(12), at(13), status=Status.CONFIRMED)
    assert pending.expires_at_ns == at(8, 10)
    assert confirmed.expires_at_ns == 0


def test_requested_hold_for_overrides_the_resource_default_and_zero_means_no_hold(world, clock):
    world.define("room-1", hold_for_ns=10 * M)
    clock.set(at(8))
    assert world.hold(start=at(10), hold_for=2 * M).expires_at_ns == at(8, 2)
    assert world.hold(start=at(12), hold_for=0).expires_at_ns == 0


def test_get_shows_expired_from_the_expiry_instant_on(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns - 1)
    assert world.get(hold.id).status == Status.PENDING
    clock.set(hold.expires_at_ns)
    assert world.get(hold.id).status == Status.EXPIRED
    clock.set(hold.expires_at_ns + 1)
    assert world.get(hold.id).status == Status.EXPIRED


def test_confirm_makes_pending_confirmed(world):
    made = world.reserve(status=Status.PENDING, note="n")
    confirmed = world.confirm(made.id)
    assert confirmed.status == Status.CONFIRMED and confirmed.note == "n"
    assert world.get(made.id).status == Status.CONFIRMED


def test_confirm_of_confirmed_changes_nothing(world):
    made = world.reserve(status=Status.CONFIRMED)
    assert world.confirm(made.id) == made
    assert world.kinds() == ["RESERVATION_CREATED"]


def test_confirm_of_blocked_is_refused(world):
    made = world.reserve(status=Status.BLOCKED)
    with raises_code(Code.FAILED_PRECONDITION, "BLOCKED"):
        world.confirm(made.id)
    assert world.get(made.id).status == Status.BLOCKED


def test_confirm_one_nanosecond_before_expiry_confirms_and_clears_expiry(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns - 1)
    confirmed = world.confirm(hold.id)
    assert confirmed.status == Status.CONFIRMED and confirmed.expires_at_ns == 0
    clock.advance(1 * M)
    assert world.get(hold.id) == confirmed
    with raises_code(Code.FAILED_PRECONDITION, hold.id):
        world.reserve("room-1", hold.start_ns, hold.end_ns, user="bob")


def test_confirm_at_the_expiry_instant_is_refused_naming_the_expiry(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    with raises_code(Code.FAILED_PRECONDITION, "hold expired at " + iso(hold.expires_at_ns)):
        world.confirm(hold.id)


def test_update_sets_note_and_status_and_keeps_what_is_not_given(world):
    made = world.reserve(status=Status.PENDING, note="first")
    assert world.update(made.id, note="second") == made.__class__(**{**made.__dict__, "note": "second"})
    blocked = world.update(made.id, status=Status.BLOCKED)
    assert (blocked.status, blocked.note) == (Status.BLOCKED, "second")
    cleared = world.update(made.id, note="")
    assert (cleared.status, cleared.note) == (Status.BLOCKED, "")
    assert world.get(made.id) == cleared


def test_update_that_changes_nothing_writes_no_event(world):
    made = world.reserve(note="same")
    assert world.update(made.id, status=Status.CONFIRMED, note="same") == made
    assert world.kinds() == ["RESERVATION_CREATED"]


def test_update_cannot_set_expired(world):
    made = world.reserve()
    with raises_code(Code.INVALID_ARGUMENT, "EXPIRED"):
        world.update(made.id, status=Status.EXPIRED)


def test_update_of_a_hold_keeps_its_expiry_while_pending_and_clears_it_when_confirmed(world):
    hold = world.hold(hold_for=5 * M)
    noted = world.update(hold.id, note="paying")
    assert noted.expires_at_ns == hold.expires_at_ns and noted.status == Status.PENDING
    confirmed = world.update(hold.id, status=Status.CONFIRMED)
    assert confirmed.expires_at_ns == 0


def test_update_of_an_expired_hold_is_refused(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    with raises_code(Code.FAILED_PRECONDITION, "hold expired at " + iso(hold.expires_at_ns)):
        world.update(hold.id, note="too late")
    assert world.store.get("default", hold.id).reservation == hold


@pytest.mark.parametrize("status", [Status.PENDING, Status.CONFIRMED, Status.BLOCKED])
def test_cancel_answers_the_reservation_and_frees_its_time(world, status):
    made = world.reserve("room-1", at(10), at(11), status=status)
    assert world.cancel(made.id) == made
    with raises_code(Code.NOT_FOUND, made.id):
        world.get(made.id)
    world.reserve("room-1", at(10), at(11), user="bob")


def test_cancel_of_an_expired_hold_is_allowed_and_answers_expired(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    cancelled = world.cancel(hold.id)
    assert cancelled.status == Status.EXPIRED and cancelled.id == hold.id
    assert not world.exists(hold.id)


def test_cancel_of_a_live_hold_answers_pending(world, clock):
    hold = world.hold(hold_for=5 * M)
    clock.set(hold.expires_at_ns - 1)
    assert world.cancel(hold.id).status == Status.PENDING


def test_second_cancel_is_not_found(world):
    made = world.reserve()
    world.cancel(made.id)
    with raises_code(Code.NOT_FOUND):
        world.cancel(made.id)


@pytest.mark.parametrize("action", ["get", "confirm", "update", "cancel"])
def test_unknown_id_is_not_found_and_a_malformed_one_invalid(world, action):
    call = getattr(world, action)
    with raises_code(Code.NOT_FOUND):
        call("00000000-0000-4000-8000-000000000000")
    with raises_code(Code.INVALID_ARGUMENT):
        call("not-an-id")
    with raises_code(Code.INVALID_ARGUMENT):
        call("00000000-0000-4000-8000-00000000000A")


def test_sweep_removes_expired_holds_only(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    live = world.hold("room-1", at(12), at(13), hold_for=60 * M)
    kept = world.reserve("room-1", at(14), at(15))
    clock.advance(10 * M)
    assert world.service.sweep_expired() == 1
    assert not world.exists(hold.id)
    assert world.exists(live.id) and world.exists(kept.id)
    assert world.kinds()[-1] == "RESERVATION_EXPIRED"


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_confirm_whose_answer_was_lost_confirms_once(world, store, applied):
    made = world.reserve(status=Status.PENDING)
    store.fail_next(OutcomeUnknown(), applied=applied)
    assert world.confirm(made.id).status == Status.CONFIRMED
    assert world.kinds() == ["RESERVATION_CREATED", "RESERVATION_CONFIRMED"]


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_cancel_whose_answer_was_lost_cancels_once_and_answers_the_reservation(world, store, applied):
    made = world.reserve()
    store.fail_next(OutcomeUnknown(), applied=applied)
    assert world.cancel(made.id) == made
    assert not world.exists(made.id)
    assert world.kinds() == ["RESERVATION_CREATED", "RESERVATION_CANCELLED"]


def test_hold_for_that_would_expire_after_year_9999_never_makes_an_unanswerable_reservation(world):
    request = pb.ReserveRequest(
        reservation=pb.Reservation(
            user_id="alice", resource_id="room-1", start=timestamp_of(at(10)), end=timestamp_of(at(11))
        ),
        hold_for=Duration(seconds=9000 * 366 * 86400),
    )
    try:
        answer = world.api.reserve(request, CallContext())
    except ServiceError as error:
        assert error.code is Code.INVALID_ARGUMENT and "hold_for" in error.message
        assert world.stored("room-1") == []
    else:
        json_format.MessageToJson(answer)
