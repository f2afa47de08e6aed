"""Reschedule: the same reservation at a new place, in one write, or nothing changes."""

import pytest

from chalicelib.errors import Code
from chalicelib.model import ChangeKind, Status
from chalicelib.ports import OutcomeUnknown

from .support import D, H, M, at, raises_code, replace


def test_move_keeps_id_user_status_note_and_frees_the_old_window(world):
    made = world.reserve("room-1", at(10), at(11), user="alice", status=Status.BLOCKED, note="board")
    moved = world.reschedule(made.id, at(14), at(15))
    assert moved == replace(made, start_ns=at(14), end_ns=at(15))
    assert world.get(made.id) == moved
    world.reserve("room-1", at(10), at(11), user="bob")
    with raises_code(Code.FAILED_PRECONDITION, made.id):
        world.reserve("room-1", at(14), at(15), user="bob")


def test_move_onto_an_overlapping_window_of_itself_is_allowed(world):
    made = world.reserve("room-1", at(10), at(11))
    moved = world.reschedule(made.id, at(10, 30), at(11, 30))
    assert (moved.start_ns, moved.end_ns) == (at(10, 30), at(11, 30))
    assert [r.id for r in world.stored("room-1")] == [made.id]
    world.reserve("room-1", at(10), at(10, 30), user="bob")


def test_move_onto_another_reservation_is_refused_and_changes_nothing(world):
    made = world.reserve("room-1", at(10), at(11), note="mine")
    other = world.reserve("room-1", at(12), at(13), user="bob")
    with raises_code(Code.FAILED_PRECONDITION, other.id):
        world.reschedule(made.id, at(11, 30), at(12, 30))
    assert world.get(made.id) == made
    assert world.get(other.id) == other
    with raises_code(Code.FAILED_PRECONDITION, made.id):
        world.reserve("room-1", at(10), at(11), user="carol")
    assert world.kinds() == ["RESERVATION_CREATED", "RESERVATION_CREATED"]


def test_move_that_breaks_a_rule_is_refused_and_changes_nothing(world):
    world.define("room-1", step_ns=30 * M, max_duration_ns=2 * H)
    made = world.reserve("room-1", at(10), at(11))
    with raises_code(Code.INVALID_ARGUMENT, "30m grid"):
        world.reschedule(made.id, at(10, 10), at(11))
    with raises_code(Code.INVALID_ARGUMENT, r"\(max_duration\)"):
        world.reschedule(made.id, at(10), at(13))
    assert world.get(made.id) == made


def test_move_of_a_missing_id_is_not_found(world):
    with raises_code(Code.NOT_FOUND):
        world.reschedule("00000000-0000-4000-8000-000000000000", at(10), at(11))


def test_move_across_guard_slot_boundaries(world):
    world.define("room-1", max_duration_ns=1 * H)  # guard slots of one hour
    made = world.reserve("room-1", at(10, 30), at(11, 30))
    world.reschedule(made.id, at(13, 45), at(14, 45))
    world.reschedule(made.id, at(13, 15), at(14, 15))
    world.reserve("room-1", at(10, 30), at(11, 30), user="bob")  # its first window is free again
    world.reserve("room-1", at(12, 15), at(13, 15), user="bob")
    with raises_code(Code.FAILED_PRECONDITION, made.id):
        world.reserve("room-1", at(14), at(14, 30), user="bob")


def test_move_across_days_of_the_default_storage(world):
    made = world.reserve("room-1", at(10), at(11))
    moved = world.reschedule(made.id, at(10) + 9 * D, at(11) + 9 * D)
    assert world.get(made.id) == moved
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(10) + 9 * D, at(11) + 9 * D, user="bob")


def test_move_to_another_exclusive_resource(world):
    made = world.reserve("room-1", at(10), at(11), note="n")
    moved = world.reschedule(made.id, at(10), at(11), resource_id="room-2")
    assert moved == replace(made, resource_id="room-2")
    assert world.stored("room-1") == [] and [r.id for r in world.stored("room-2")] == [made.id]
    world.reserve("room-1", at(10), at(11), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-2", at(10), at(11), user="bob")


def test_move_to_another_resource_that_is_taken_changes_nothing(world):
    made = world.reserve("room-1", at(10), at(11))
    world.reserve("room-2", at(10, 30), at(11, 30), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reschedule(made.id, at(10), at(11), resource_id="room-2")
    assert world.get(made.id) == made


def test_move_to_another_resource_applies_its_rules(world):
    world.define("room-2", min_duration_ns=2 * H)
    made = world.reserve("room-1", at(10), at(11))
    with raises_code(Code.INVALID_ARGUMENT, r"\(min_duration\)"):
        world.reschedule(made.id, at(10), at(11), resource_id="room-2")


def test_move_within_a_full_pool_onto_an_overlapping_window_of_itself(world):
    world.define("lot", capacity=2, step_ns=15 * M)
    made = world.reserve("lot", at(10), at(12))
    world.reserve("lot", at(10), at(12), user="bob")
    moved = world.reschedule(made.id, at(11), at(13))
    assert (moved.start_ns, moved.end_ns) == (at(11), at(13))
    world.reserve("lot", at(10), at(11), user="carol")  # the unit it gave back
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("lot", at(11), at(12), user="carol")


def test_move_within_a_pool_onto_a_full_window_is_refused(world):
    world.define("lot", capacity=2, step_ns=15 * M)
    made = world.reserve("lot", at(10), at(11))
    world.reserve("lot", at(12), at(13), units=2, user="bob")
    with raises_code(Code.FAILED_PRECONDITION, "0 of 2 units free"):
        world.reschedule(made.id, at(11, 30), at(12, 30))
    assert world.get(made.id) == made


def test_move_pool_to_pool_keeps_units_and_moves_them(world):
    world.define("lot-a", capacity=3, step_ns=15 * M)
    world.define("lot-b", capacity=3, step_ns=15 * M)
    made = world.reserve("lot-a", at(10), at(11), units=3)
    moved = world.reschedule(made.id, at(10), at(11), resource_id="lot-b")
    assert moved.units == 3 and moved.resource_id == "lot-b"
    world.reserve("lot-a", at(10), at(11), units=3, user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("lot-b", at(10), at(11), user="bob")


def test_move_to_a_pool_too_small_for_its_units_is_invalid(world):
    world.define("lot-a", capacity=3, step_ns=15 * M)
    world.define("lot-b", capacity=2, step_ns=15 * M)
    made = world.reserve("lot-a", at(10), at(11), units=3)
    with raises_code(Code.INVALID_ARGUMENT, "capacity 2"):
        world.reschedule(made.id, at(10), at(11), resource_id="lot-b")


@pytest.mark.parametrize(
    "step, start, end, shift",
    [
        (1 * H, at(20), at(22), 1 * D),  # hotel by the hour: buckets of 24 cells are UTC days
        (15 * M, at(5), at(6), 1 * H),  # parking by the quarter: buckets of 24 cells are 6 hours (00:00, 06:00, ...)
    ],
    ids=["hotel-next-day", "parking-05h-to-06h"],
)
def test_move_within_a_pool_into_another_bucket(world, step, start, end, shift):
    world.define("pool", capacity=3, step_ns=step)
    made = world.reserve("pool", start, end)
    moved = world.reschedule(made.id, start + shift, end + shift)
    assert world.get(made.id) == moved
    world.reserve("pool", start, end, units=3, user="bob")


def test_move_keeps_a_holds_expiry(world):
    world.define("room-2", hold_for_ns=60 * M)
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    moved = world.reschedule(hold.id, at(12), at(13), resource_id="room-2")
    assert moved.status == Status.PENDING and moved.expires_at_ns == hold.expires_at_ns


def test_move_of_an_expired_hold_is_refused(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    with raises_code(Code.FAILED_PRECONDITION, "hold expired"):
        world.reschedule(hold.id, at(12), at(13))


def test_move_to_the_same_place_changes_nothing(world):
    made = world.reserve("room-1", at(10), at(11))
    assert world.reschedule(made.id, at(10), at(11)) == made
    assert world.kinds() == ["RESERVATION_CREATED"]


def test_move_records_one_rescheduled_event_with_before_and_after(world):
    made = world.reserve("room-1", at(10), at(11))
    moved = world.reschedule(made.id, at(12), at(13))
    event = world.events()[-1]
    assert (event.kind, event.before, event.reservation) == (ChangeKind.RESERVATION_RESCHEDULED, made, moved)


# ---- all or nothing -------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_move_whose_commit_fails_leaves_everything_as_it_was(world, store):
    made = world.reserve("room-1", at(10), at(11))
    store.fail_next(Boom(), applied=False)
    with pytest.raises(Boom):
        world.reschedule(made.id, at(12), at(13), resource_id="room-2")
    assert world.get(made.id) == made
    assert [r.id for r in world.stored("room-1")] == [made.id] and world.stored("room-2") == []
    world.reserve("room-2", at(12), at(13), user="bob")
    assert world.kinds() == ["RESERVATION_CREATED", "RESERVATION_CREATED"]


def test_pool_move_whose_commit_fails_keeps_the_units_where_they_were(world, store):
    world.define("lot-a", capacity=2, step_ns=15 * M)
    world.define("lot-b", capacity=2, step_ns=15 * M)
    made = world.reserve("lot-a", at(10), at(11), units=2)
    store.fail_next(Boom(), applied=False)
    with pytest.raises(Boom):
        world.reschedule(made.id, at(10), at(11), resource_id="lot-b")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("lot-a", at(10), at(11), user="bob")
    world.reserve("lot-b", at(10), at(11), units=2, user="bob")


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_move_whose_answer_was_lost_happens_exactly_once(world, store, applied):
    made = world.reserve("room-1", at(10), at(11))
    store.fail_next(OutcomeUnknown(), applied=applied)
    moved = world.reschedule(made.id, at(12), at(13), resource_id="room-2")
    assert world.get(made.id) == moved == replace(made, start_ns=at(12), end_ns=at(13), resource_id="room-2")
    assert world.kinds().count("RESERVATION_RESCHEDULED") == 1
    world.reserve("room-1", at(10), at(11), user="bob")


def test_move_onto_expired_holds_displaces_them(world, clock):
    holds = [world.hold("room-1", at(12, 10 * i), at(12, 10 * i + 10), user=f"u{i}", hold_for=1 * M) for i in range(6)]
    made = world.reserve("room-1", at(10), at(11))
    clock.advance(2 * M)
    world.reschedule(made.id, at(12), at(13))
    assert [r.id for r in world.stored("room-1")] == [made.id]
    assert world.kinds().count("RESERVATION_EXPIRED") == len(holds)
