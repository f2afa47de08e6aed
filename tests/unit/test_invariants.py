"""Model-based checks: after every step of a random workload (with lost answers and races), what the
store holds stays consistent: exclusive bookings never overlap, pool counters equal their bookings."""

import itertools
import random
import threading

import pytest

from chalicelib.errors import Code, ServiceError
from chalicelib.layout import Shape
from chalicelib.model import Status
from chalicelib.ports import OutcomeUnknown, StaleWrite

from .support import RANDOM_WORK_REFUSALS, H, M, S, at

EXCLUSIVE = {"room": {"buffer_after_ns": 10 * M, "max_duration_ns": 3 * H}, "desk": {}}
POOLS = {"lot": {"capacity": 3, "step_ns": 15 * M}, "hotel": {"capacity": 2, "step_ns": 1 * H}}


def check_store(store):
    """Exclusive: padded windows of stored bookings are disjoint. Pools: every counter cell holds the
    units of the stored bookings over it (expired holds count until they are removed)."""
    by_resource = {}
    for (tenant, _), booking in store.by_id.items():
        by_resource.setdefault((tenant, booking.reservation.resource_id), []).append(booking)
    for (tenant, resource_id), bookings in by_resource.items():
        stored = store.definitions.get((tenant, resource_id))
        shape = stored.shape if stored is not None else Shape()
        if not shape.pool:
            ordered = sorted(bookings, key=lambda b: b.padded_start_ns)
            for one, two in itertools.pairwise(ordered):
                assert one.padded_end_ns <= two.padded_start_ns, (resource_id, one, two)
            continue
        expected = {}
        for booking in bookings:
            for cell, _ in shape.cells(booking.padded_start_ns, booking.padded_end_ns):
                expected[cell] = expected.get(cell, 0) + booking.reservation.units
        counted = {
            cell: units
            for (owner, rid, _), bucket in store.buckets.items()
            if (owner, rid) == (tenant, resource_id)
            for cell, units in bucket["used"].items()
            if units
        }
        assert counted == expected, resource_id
        capacity = stored.resource.capacity
        assert all(units <= capacity for units in counted.values()), resource_id


def step(world, clock, store, rng, made):
    clock.advance(rng.choice([0, 1 * S, 1 * M, 4 * M]))
    if rng.random() < 0.1:
        store.fail_next(OutcomeUnknown(), applied=rng.random() < 0.5)
    elif rng.random() < 0.05:
        store.fail_next(StaleWrite(frozenset({"guard"})))
    resource = rng.choice(list(EXCLUSIVE) + list(POOLS))
    start = at(rng.randrange(0, 30), rng.choice([0, 15, 30, 45]))
    length = rng.choice([15 * M, 45 * M, 1 * H, 2 * H])
    units = rng.randrange(1, 3) if resource in POOLS else 1
    action = rng.choice(["reserve", "reserve", "hold", "confirm", "update", "move", "move", "cancel", "sweep"])
    if action in ("reserve", "hold"):
        status = Status.PENDING if action == "hold" else rng.choice([Status.PENDING, Status.CONFIRMED])
        hold = rng.choice([1, 3, 10]) * M if action == "hold" else None
        made.append(
            world.reserve(
                resource,
                start,
                start + length,
                user=rng.choice("abc"),
                status=status,
                units=units,
                hold_for=hold,
                request_id=rng.choice(["", f"q{rng.randrange(40)}"]),
            )
        )
    elif action == "sweep":
        world.service.sweep_expired()
    elif made:
        target = rng.choice(made).id
        if action == "confirm":
            world.confirm(target)
        elif action == "update":
            world.update(target, status=rng.choice([Status.UNKNOWN, Status.BLOCKED]), note=str(rng.random()))
        elif action == "cancel":
            world.cancel(target)
        else:
            world.reschedule(target, start, start + length, resource_id=rng.choice(["", resource]))


@pytest.mark.parametrize("seed", range(4))
def test_random_workload_keeps_the_store_consistent_after_every_step(world, clock, store, seed):
    for resource, rules in {**EXCLUSIVE, **POOLS}.items():
        world.define(resource, **rules)
    rng, made = random.Random(seed), []
    outcomes = {}
    for _ in range(250):
        try:
            step(world, clock, store, rng, made)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except ServiceError as error:
            assert error.code in RANDOM_WORK_REFUSALS, error.message
            outcomes[error.code] = outcomes.get(error.code, 0) + 1
        check_store(store)
    assert outcomes["ok"] > 100


def _race(world, resource: str, writers: int = 8) -> list:
    """`writers` threads reserve 10:00-11:00 of `resource` at once: each one's reservation id or error code."""
    results = []

    def attempt(user):
        try:
            results.append(world.reserve(resource, at(10), at(11), user=user).id)
        except ServiceError as error:
            results.append(error.code)

    threads = [threading.Thread(target=attempt, args=(f"u{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_reserves_of_one_window_make_exactly_one_reservation(world):
    results = _race(world, "room")
    made = [r for r in results if isinstance(r, str)]
    assert len(made) == 1 and results.count(Code.FAILED_PRECONDITION) == 7
    assert [r.id for r in world.stored("room")] == made


def test_racing_reserves_of_a_pool_fill_it_exactly(world, store):
    world.define("lot", capacity=3, step_ns=15 * M)
    results = _race(world, "lot")
    assert len([r for r in results if isinstance(r, str)]) == 3
    assert results.count(Code.FAILED_PRECONDITION) == 5
    check_store(store)
