"""THE conflict check of exclusive resources: which windows collide, what a conflict tells, buffers,
expired holds, and a reserve whose answer was lost."""

import uuid

import pytest

from chalicelib.api import error_details
from chalicelib.errors import Code
from chalicelib.model import Booking, ChangeKind, Reservation, Status
from chalicelib.ports import OutcomeUnknown, StaleWrite
from chalicelib.service import Conflict

from .support import M, at, raises_code, seed


@pytest.mark.parametrize(
    "start, end",
    [
        (at(10, 15), at(10, 45)),  # inside
        (at(9), at(12)),  # covering
        (at(10), at(11)),  # the same window
        (at(9, 30), at(10, 30)),  # over its start
        (at(10, 30), at(11, 30)),  # over its end
    ],
    ids=["inside", "covering", "same", "over-start", "over-end"],
)
def test_overlapping_window_is_refused_naming_the_reservation_in_the_way(world, start, end):
    first = world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION, "room-1", first.id) as info:
        world.reserve("room-1", start, end, user="bob")
    assert [b.reservation.id for b in info.value.blocking] == [first.id]
    assert info.value.total == 1
    assert [r.id for r in world.stored("room-1")] == [first.id]


def test_windows_touching_at_either_edge_do_not_conflict(world):
    world.reserve("room-1", at(10), at(11))
    world.reserve("room-1", at(9), at(10), user="bob")
    world.reserve("room-1", at(11), at(12), user="carol")
    assert len(world.stored("room-1")) == 3


def test_one_nanosecond_of_overlap_conflicts(world):
    world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(11) - 1, at(12), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(9), at(10) + 1, user="bob")


def test_one_nanosecond_long_reservation_fits_in_a_one_nanosecond_gap(world):
    world.reserve("room-1", at(10), at(11))
    world.reserve("room-1", at(11) + 1, at(12))
    made = world.reserve("room-1", at(11), at(11) + 1, user="bob")
    assert (made.start_ns, made.end_ns) == (at(11), at(11) + 1)


def test_other_resources_do_not_conflict(world):
    world.reserve("room-1", at(10), at(11))
    world.reserve("room-2", at(10), at(11))


def test_conflict_lists_at_most_ten_reservations_and_counts_them_all(world):
    made = [world.reserve("room-1", at(10, 5 * i), at(10, 5 * i + 5)) for i in range(15)]
    with raises_code(Code.FAILED_PRECONDITION, "and 5 more") as info:
        world.reserve("room-1", at(9), at(12), user="bob")
    conflict = info.value
    assert isinstance(conflict, Conflict)
    assert [b.reservation.id for b in conflict.blocking] == [r.id for r in made[:10]]
    assert conflict.total == 15
    (detail,) = error_details(conflict)
    assert len(detail.conflicts) == 10 and detail.total == 15
    assert not detail.HasField("full_window")


def test_buffer_after_keeps_the_time_after_a_reservation_free(world):
    world.define("room-1", buffer_after_ns=10 * M)
    world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(11), at(12), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(11, 10) - 1, at(12), user="bob")
    world.reserve("room-1", at(11, 10), at(12), user="bob")


def test_buffer_before_keeps_the_time_before_a_reservation_free(world):
    world.define("room-1", buffer_before_ns=10 * M)
    world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(9), at(9, 50) + 1, user="bob")
    world.reserve("room-1", at(9), at(9, 50), user="bob")


def test_padded_windows_conflict_so_neighbours_need_both_buffers_between_them(world):
    world.define("room-1", buffer_before_ns=10 * M, buffer_after_ns=5 * M)
    world.reserve("room-1", at(10), at(11))
    # the newcomer's padded window [start - 10m, end + 5m) must not meet [09:50, 11:05)
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(11, 15) - 1, at(12), user="bob")
    world.reserve("room-1", at(11, 15), at(12), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(9), at(9, 45) + 1, user="carol")
    world.reserve("room-1", at(9), at(9, 45), user="carol")


def test_buffers_are_those_a_reservation_was_made_with(world):
    old = world.reserve("room-1", at(10), at(11))  # undefined: no buffers
    world.define("room-1", buffer_after_ns=30 * M)
    # the new reservation's own buffer_after pads it: it must end 30 min before the old one starts
    with raises_code(Code.FAILED_PRECONDITION, old.id):
        world.reserve("room-1", at(9), at(10), user="bob")
    # the old reservation keeps no buffer after it
    world.reserve("room-1", at(11), at(12), user="bob")
    world.reserve("room-1", at(8), at(9, 30), user="carol")


def test_expired_hold_blocks_nothing_and_is_removed_by_the_reserve_that_takes_its_time(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    made = world.reserve("room-1", at(10, 30), at(11, 30), user="bob")
    assert [r.id for r in world.stored("room-1")] == [made.id]
    assert not world.exists(hold.id)
    expired = [e for e in world.events() if e.kind == ChangeKind.RESERVATION_EXPIRED]
    assert [(e.reservation.id, e.reservation.status) for e in expired] == [(hold.id, Status.EXPIRED)]


def test_hold_blocks_until_one_nanosecond_before_its_expiry(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.set(hold.expires_at_ns - 1)
    with raises_code(Code.FAILED_PRECONDITION, hold.id):
        world.reserve("room-1", at(10), at(11), user="bob")
    assert world.exists(hold.id)


def test_expired_hold_outside_the_new_window_is_left_alone(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.advance(10 * M)
    world.reserve("room-1", at(11), at(12), user="bob")
    assert world.exists(hold.id)


def test_many_expired_holds_are_all_displaced_by_one_long_reserve(world, clock):
    holds = [world.hold("room-1", at(10, 5 * i), at(10, 5 * i + 5), user=f"u{i}") for i in range(14)]
    clock.advance(10 * M)
    made = world.reserve("room-1", at(9), at(12), user="bob")
    assert [r.id for r in world.stored("room-1")] == [made.id]
    expired = {e.reservation.id for e in world.events() if e.kind == ChangeKind.RESERVATION_EXPIRED}
    assert expired == {h.id for h in holds}


def test_live_reservation_among_expired_holds_still_conflicts_and_nothing_is_removed(world, clock):
    hold = world.hold("room-1", at(10), at(10, 30))
    live = world.reserve("room-1", at(10, 30), at(11), user="carol")
    clock.advance(10 * M)
    with raises_code(Code.FAILED_PRECONDITION, live.id) as info:
        world.reserve("room-1", at(10), at(11), user="bob")
    assert [b.reservation.id for b in info.value.blocking] == [live.id]
    assert world.exists(hold.id)


@pytest.mark.parametrize("request_id", ["", "req-1"])
def test_reserve_whose_answer_was_lost_returns_its_own_reservation_never_two(world, store, request_id):
    store.fail_next(OutcomeUnknown(), applied=True)
    made = world.reserve("room-1", at(10), at(11), request_id=request_id)
    assert [r.id for r in world.stored("room-1")] == [made.id]
    assert world.get(made.id) == made
    assert [e.reservation.id for e in world.events() if e.kind == ChangeKind.RESERVATION_CREATED] == [made.id]


def test_reserve_whose_write_was_not_applied_and_answer_lost_is_made_once(world, store):
    store.fail_next(OutcomeUnknown(), applied=False)
    made = world.reserve("room-1", at(10), at(11))
    assert [r.id for r in world.stored("room-1")] == [made.id]


def test_reserve_that_lost_a_race_retries_and_succeeds(world, store):
    store.fail_next(StaleWrite(frozenset({"guard"})), applied=False)
    made = world.reserve("room-1", at(10), at(11))
    assert [r.id for r in world.stored("room-1")] == [made.id]


def test_retry_without_request_id_of_a_made_reservation_conflicts_with_it(world):
    made = world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION, made.id):
        world.reserve("room-1", at(10), at(11))


def minute_bookings(count, status, expires_at_ns=0):
    """`count` back-to-back one-minute bookings of room-1 from 10:00 (fixture data, stored directly)."""
    return [
        Booking(
            Reservation(
                str(uuid.UUID(int=i + 1)),
                f"u{i}",
                "room-1",
                status,
                at(10, i),
                at(10, i + 1),
                expires_at_ns=expires_at_ns,
            )
        )
        for i in range(count)
    ]


def test_reserve_over_more_than_a_thousand_expired_holds_leaves_none_behind(world, store, clock):
    # more expired holds in the way than one read lists: all of them are removed, none left overlapping
    clock.set(at(9))
    seed(store, "default", minute_bookings(1001, Status.PENDING, expires_at_ns=at(9, 1)))
    clock.set(at(9, 2))
    made = world.reserve("room-1", at(9, 59), at(10, 1001), user="bob")
    assert [r.id for r in world.query_all(resource_id="room-1", start_ns=at(10, 500), end_ns=at(10, 501))] == [made.id]
    assert [r.id for r in world.stored("room-1")] == [made.id]


def test_conflict_over_more_than_a_thousand_reservations_lists_the_first_and_says_at_least_a_thousand(world, store):
    # the total is counted up to 1000 (reading them all would cost as much as the history)
    seed(store, "default", minute_bookings(1500, Status.CONFIRMED))
    with raises_code(Code.FAILED_PRECONDITION) as info:
        world.reserve("room-1", at(9), at(10, 1500), user="bob")
    assert [b.reservation.start_ns for b in info.value.blocking] == [at(10, i) for i in range(10)]
    assert info.value.total == 1000
    assert "and at least 990 more" in info.value.message
