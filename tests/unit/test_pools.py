"""Pools (capacity > 1): units per step cell never exceed the capacity, and what a refusal tells."""

import pytest

from chalicelib.api import error_details
from chalicelib.errors import Code
from chalicelib.model import ChangeKind, Status
from chalicelib.ports import OutcomeUnknown
from chalicelib.service import Conflict
from chalicelib.validate import iso

from .support import H, M, at, raises_code


@pytest.fixture
def lot(world):
    """A parking lot of 3 spaces booked on a 15-minute grid."""
    world.define("lot", capacity=3, step_ns=15 * M)
    return "lot"


def test_pool_takes_reservations_until_exactly_full(world, lot):
    made = [world.reserve(lot, at(10), at(12), user=f"u{i}") for i in range(3)]
    assert len({r.id for r in made}) == 3 and all(r.units == 1 for r in made)


def test_one_over_capacity_is_refused_naming_the_full_window_and_units_free(world, lot):
    made = [world.reserve(lot, at(10), at(12), user=f"u{i}") for i in range(3)]
    with raises_code(Code.FAILED_PRECONDITION, "0 of 3 units free", iso(at(10))) as info:
        world.reserve(lot, at(11), at(13), user="late")
    conflict = info.value
    assert isinstance(conflict, Conflict)
    assert conflict.full_window == (at(11), at(11, 15))  # the first cell where it does not fit
    assert conflict.units_free == 0
    assert {b.reservation.id for b in conflict.blocking} == {r.id for r in made}
    (detail,) = error_details(conflict)
    assert detail.HasField("full_window") and detail.units_free == 0 and detail.total == 3
    assert len(world.stored(lot)) == 3


def test_units_that_do_not_fit_are_refused_with_the_units_still_free(world, lot):
    world.reserve(lot, at(10), at(11), units=2)
    with raises_code(Code.FAILED_PRECONDITION, "1 of 3 units free", "2 requested") as info:
        world.reserve(lot, at(10, 30), at(11, 30), units=2, user="bob")
    assert info.value.full_window == (at(10, 30), at(10, 45))
    assert info.value.units_free == 1
    world.reserve(lot, at(10, 30), at(11, 30), units=1, user="bob")


def test_full_window_is_the_first_full_cell_not_the_start_of_the_request(world, lot):
    world.reserve(lot, at(15), at(15, 15), units=3)
    with raises_code(Code.FAILED_PRECONDITION) as info:
        world.reserve(lot, at(14), at(16))
    assert info.value.full_window == (at(15), at(15, 15))
    assert info.value.units_free == 0


def test_touching_windows_of_a_full_pool_fit(world, lot):
    world.reserve(lot, at(10), at(12), units=3)
    world.reserve(lot, at(12), at(14), units=3)
    world.reserve(lot, at(8), at(10), units=3)


def test_long_stay_fits_across_many_busy_short_ones_until_a_cell_is_full(world):
    world.define("hotel", capacity=2, step_ns=1 * H)
    for hour in range(10, 20):
        world.reserve("hotel", at(hour), at(hour + 1), user=f"short{hour}")
    stay = world.reserve("hotel", at(10), at(20), user="long")
    assert stay.units == 1
    with raises_code(Code.FAILED_PRECONDITION) as info:
        world.reserve("hotel", at(5), at(21), user="longer")
    assert info.value.full_window == (at(10), at(11))
    world.reserve("hotel", at(5), at(10), user="before")
    world.reserve("hotel", at(20), at(21), user="after")


def test_pool_conflict_lists_at_most_ten_reservations_and_counts_them_all(world):
    world.define("garage", capacity=12, step_ns=1 * H)
    made = [world.reserve("garage", at(10), at(11), user=f"u{i}") for i in range(12)]
    with raises_code(Code.FAILED_PRECONDITION, "and 2 more") as info:
        world.reserve("garage", at(10), at(11), user="late")
    assert len(info.value.blocking) == 10 and info.value.total == 12
    assert {b.reservation.id for b in info.value.blocking} <= {r.id for r in made}


def test_pool_reserve_whose_answer_was_lost_counts_its_units_once(world, store, lot):
    store.fail_next(OutcomeUnknown(), applied=True)
    made = world.reserve(lot, at(10), at(11), units=2)
    assert [r.id for r in world.stored(lot)] == [made.id]
    world.reserve(lot, at(10), at(11), units=1, user="bob")


def test_units_above_capacity_are_invalid(world, lot):
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.units", "capacity 3", "got 4"):
        world.reserve(lot, at(10), at(11), units=4)
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.units"):
        world.reserve(lot, at(10), at(11), units=-1)


def test_zero_units_means_one(world, lot):
    assert world.reserve(lot, at(10), at(11), units=0).units == 1


def test_pool_reservations_must_be_on_its_grid(world, lot):
    with raises_code(Code.INVALID_ARGUMENT, "15m grid"):
        world.reserve(lot, at(10, 5), at(11))


def test_cancel_gives_the_units_back(world, lot):
    made = world.reserve(lot, at(10), at(11), units=3)
    world.cancel(made.id)
    world.reserve(lot, at(10), at(11), units=3)


def test_confirm_and_update_keep_the_units(world, lot):
    made = world.reserve(lot, at(10), at(11), units=2, status=Status.PENDING)
    assert world.confirm(made.id).units == 2
    assert world.update(made.id, note="gate B").units == 2
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve(lot, at(10), at(11), units=2)


def test_expired_hold_in_a_pool_frees_its_units_and_is_displaced(world, clock, lot):
    hold = world.hold(lot, at(10), at(11), units=3, hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    world.reserve(lot, at(10), at(11), units=3, user="bob")
    assert not world.exists(hold.id)
    assert world.kinds(None).count("RESERVATION_EXPIRED") == 1


def test_expired_hold_reaching_into_another_bucket_is_displaced(world, clock, lot):
    hold = world.hold(lot, at(5), at(7), units=3, hold_for=1 * M)
    clock.set(hold.expires_at_ns)
    made = world.reserve(lot, at(6), at(6, 15), user="bob")
    assert [r.id for r in world.stored(lot)] == [made.id]


def test_sweep_of_an_expired_pool_hold_gives_its_units_back(world, clock, lot):
    world.hold(lot, at(10), at(11), units=3, hold_for=5 * M)
    clock.advance(10 * M)
    assert world.service.sweep_expired() == 1
    world.reserve(lot, at(10), at(11), units=3, user="bob")


def test_pool_expired_holds_never_block_even_more_than_ten_of_them(world, clock):
    world.define("garage", capacity=12, step_ns=1 * H)
    for i in range(12):
        world.hold("garage", at(10), at(11), user=f"u{i}", hold_for=1 * M)
    clock.advance(2 * M)
    (free,) = world.availability.availability("default", ["garage"], {}, at(10), at(11), 12)
    assert free.free == [(at(10), at(11))]
    made = world.reserve("garage", at(10), at(11), units=12, user="fleet")
    assert [r.id for r in world.stored("garage")] == [made.id]


# ---- capacity 1 -------------------------------------------------------------------------------------


def test_capacity_one_is_exclusive_with_nanosecond_windows(world):
    world.define("room-1", capacity=1)
    first = world.reserve("room-1", at(10), at(11))
    world.reserve("room-1", at(11), at(11) + 1)
    with raises_code(Code.FAILED_PRECONDITION, first.id) as info:
        world.reserve("room-1", at(11) - 1, at(11))
    assert info.value.full_window == ()
    with raises_code(Code.INVALID_ARGUMENT):
        world.reserve("room-1", at(12), at(13), units=2)


def test_capacity_one_with_a_step_is_still_exclusive(world):
    world.define("room-1", capacity=1, step_ns=15 * M)
    world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(10, 45), at(11, 15))


# ---- capacity changes -------------------------------------------------------------------------------


def test_lowering_capacity_below_what_is_booked_is_refused_naming_the_busiest_window(world, lot):
    world.reserve(lot, at(10), at(11), units=2)
    world.reserve(lot, at(12), at(12, 30), units=3)
    with raises_code(
        Code.FAILED_PRECONDITION, "3 units are booked", rf"\[{iso(at(12))}, {iso(at(12, 15))}\)", "capacity 2"
    ):
        world.define(lot, capacity=2, step_ns=15 * M)
    assert world.resources.get("default", lot).capacity == 3
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve(lot, at(12), at(12, 15))


def test_lowering_capacity_to_what_is_booked_is_allowed_and_enforced(world, lot):
    world.reserve(lot, at(10), at(11), units=2)
    world.define(lot, capacity=2, step_ns=15 * M)
    with raises_code(Code.FAILED_PRECONDITION, "0 of 2 units free"):
        world.reserve(lot, at(10), at(11))
    with raises_code(Code.INVALID_ARGUMENT):
        world.reserve(lot, at(12), at(13), units=3)
    world.reserve(lot, at(12), at(13), units=2)


def test_raising_capacity_lets_more_in(world, lot):
    world.reserve(lot, at(10), at(11), units=3)
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve(lot, at(10), at(11))
    world.define(lot, capacity=5, step_ns=15 * M)
    world.reserve(lot, at(10), at(11), units=2, user="bob")
    with raises_code(Code.FAILED_PRECONDITION, "0 of 5 units free"):
        world.reserve(lot, at(10), at(11), user="carol")


def test_lowering_capacity_ignores_what_was_booked_in_the_past(world, clock):
    world.define("dock", capacity=3, step_ns=1 * H)
    clock.set(at(0, 30))
    for i in range(3):
        world.reserve("dock", at(1), at(2), user=f"u{i}")
    clock.set(at(5))
    world.define("dock", capacity=2, step_ns=1 * H)
    assert world.resources.get("default", "dock").capacity == 2


# ---- reads of a pool ---------------------------------------------------------------------------------


def test_query_of_a_pool_window_finds_a_stay_that_began_long_before(world):
    world.define("hotel", capacity=40, step_ns=1 * H)
    stay = world.reserve("hotel", at(0), at(0) + 14 * 24 * H, user="long")
    short = world.reserve("hotel", at(0) + 10 * 24 * H, at(0) + 10 * 24 * H + H, user="short")
    found = world.query_all(resource_id="hotel", start_ns=at(0) + 10 * 24 * H, end_ns=at(0) + 11 * 24 * H)
    assert [r.id for r in found] == [stay.id, short.id]


def test_pool_events_are_recorded_like_any_other(world, lot):
    made = world.reserve(lot, at(10), at(11), units=2)
    world.cancel(made.id)
    assert [e.kind for e in world.events()][-2:] == [ChangeKind.RESERVATION_CREATED, ChangeKind.RESERVATION_CANCELLED]
