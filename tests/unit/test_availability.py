"""availability and find_slots: examples, then a property test against a brute-force oracle."""

import datetime
import itertools
import zoneinfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.errors import Code, ServiceError
from chalicelib.model import Status
from chalicelib.runtime import build_api
from harness.fake_store import FakeStore

from .support import D, FakeClock, H, M, S, World, at, raises_code, utc


def slots_of(world, resource_ids, start, end, duration, units=1, limit=0, labels=None, tenant="default"):
    """Every slot of a find_slots call, walking its pages."""
    found, token = [], ""
    while True:
        page, token = world.availability.find_slots(
            tenant, resource_ids, labels or {}, start, end, duration, units, limit, token
        )
        found += page
        if not token:
            return found


# ---- examples ----------------------------------------------------------------------------------------


def test_busy_intervals_are_merged_padded_windows_and_free_is_the_rest(world):
    world.define("room-1", buffer_before_ns=10 * M, buffer_after_ns=10 * M)
    world.reserve("room-1", at(10), at(11))
    world.reserve("room-1", at(11, 20), at(12))
    (free,) = world.availability.availability("default", ["room-1"], {}, at(9), at(13), 1)
    assert free.busy == [(at(9, 50), at(12, 10))]
    assert free.free == [(at(9), at(9, 50)), (at(12, 10), at(13))]
    assert free.free_units == [(at(9), at(9, 50), 1), (at(9, 50), at(12, 10), 0), (at(12, 10), at(13), 1)]


def test_expired_holds_are_free_and_live_holds_busy(world, clock):
    expired = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    world.hold("room-1", at(12), at(13), hold_for=1 * H)
    clock.set(expired.expires_at_ns)
    (free,) = world.availability.availability("default", ["room-1"], {}, at(9), at(14), 1)
    assert free.busy == [(at(12), at(13))]


def test_pool_free_units_are_a_step_function(world):
    world.define("lot", capacity=3, step_ns=30 * M)
    world.reserve("lot", at(10), at(11), units=2)
    world.reserve("lot", at(10, 30), at(12))
    (free,) = world.availability.availability("default", ["lot"], {}, at(9), at(13), 2)
    assert free.capacity == 3
    assert free.free_units == [
        (at(9), at(10), 3),
        (at(10), at(10, 30), 1),
        (at(10, 30), at(11), 0),
        (at(11), at(12), 2),
        (at(12), at(13), 3),
    ]
    assert free.free == [(at(9), at(10)), (at(11), at(13))]
    assert free.busy == [(at(10), at(11))]


def test_find_slots_answers_in_start_order_ties_by_resource_id(world):
    world.define("b-room", step_ns=1 * H)
    world.define("a-room", step_ns=30 * M)
    world.reserve("a-room", at(10), at(11))
    slots = slots_of(world, ["b-room", "a-room"], at(9), at(12), 1 * H)
    assert slots == [
        ("a-room", at(9), at(10)),
        ("b-room", at(9), at(10)),
        ("b-room", at(10), at(11)),
        ("a-room", at(11), at(12)),
        ("b-room", at(11), at(12)),
    ]


def test_find_slots_pages_walk_every_slot_once(world):
    world.define("room-1", step_ns=15 * M)
    world.define("room-2", step_ns=15 * M)
    everything = slots_of(world, ["room-1", "room-2"], at(9), at(12), 30 * M)
    assert len(everything) == 2 * 11
    for limit in (1, 3, 7):
        assert slots_of(world, ["room-1", "room-2"], at(9), at(12), 30 * M, limit=limit) == everything


def test_find_slots_by_labels(world):
    world.define("room-1", labels=(("floor", "2"),), step_ns=1 * H)
    world.define("room-2", labels=(("floor", "3"),), step_ns=1 * H)
    assert {rid for rid, _, _ in slots_of(world, [], at(9), at(12), 1 * H, labels={"floor": "2"})} == {"room-1"}


def test_find_slots_applies_notice_and_horizon(world, clock):
    world.define("room-1", step_ns=1 * H, min_notice_ns=2 * H, max_advance_ns=5 * H)
    clock.set(at(7, 30))
    starts = [s for _, s, _ in slots_of(world, ["room-1"], at(7), at(20), 1 * H)]
    assert starts == [at(10), at(11), at(12)]


def test_find_slots_leaves_out_a_start_whose_notice_runs_out_within_a_second(world, clock):
    # documented margin (NOTICE_MARGIN_NS): the slot must still be reservable a moment after it is found
    world.define("room-1", step_ns=1 * H, min_notice_ns=2 * H)
    clock.set(at(8) - 1 * S)
    assert [s for _, s, _ in slots_of(world, ["room-1"], at(9), at(12), 1 * H)] == [at(10), at(11)]
    clock.set(at(8) - 1 * S + 1)
    assert [s for _, s, _ in slots_of(world, ["room-1"], at(9), at(12), 1 * H)] == [at(11)]


def test_find_slots_skips_units_a_resource_cannot_hold(world):
    world.define("lot", capacity=2, step_ns=1 * H)
    assert slots_of(world, ["room-1", "lot"], at(9), at(11), 1 * H, units=2) == [
        ("lot", at(9), at(10)),
        ("lot", at(10), at(11)),
    ]


def test_find_slots_offers_nothing_on_a_deleted_pool(world):
    world.define("lot", capacity=3, step_ns=1 * H)
    world.resources.delete("default", "lot")
    for _, start, end in slots_of(world, ["lot"], at(10), at(12), 1 * H):
        world.reserve("lot", start, end)


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda a: a.availability("default", ["r"], {}, at(0), at(0) + 93 * D, 1), "end"),
        (lambda a: a.availability("default", ["r"], {}, at(10), at(10), 1), "end"),
        (lambda a: a.availability("default", [f"r{i}" for i in range(101)], {}, at(0), at(1), 1), "resource_ids"),
        (lambda a: a.availability("default", ["r"], {"k": "v"}, at(0), at(1), 1), "resource_ids"),
        (lambda a: a.availability("default", [], {}, at(0), at(1), 1), "resource_ids"),
        (lambda a: a.find_slots("default", ["r"], {}, at(0), at(1), 0, 1, 0, ""), "duration"),
        (lambda a: a.find_slots("default", ["r"], {}, at(0), at(1), H, -1, 0, ""), "units"),
        (lambda a: a.find_slots("default", ["r"], {}, at(0), at(1), H, 1, 0, "bogus"), "page_token"),
    ],
    ids=[
        "93-days",
        "empty-window",
        "101-resources",
        "ids-and-labels",
        "neither",
        "zero-duration",
        "negative-units",
        "bad-token",
    ],
)
def test_out_of_bounds_requests_are_invalid(world, call, field):
    with raises_code(Code.INVALID_ARGUMENT, field):
        call(world.availability)


# ---- the property -------------------------------------------------------------------------------------

ZONES = ["", "Europe/Paris", "Asia/Kolkata"]
DAYS = [utc(2026, 3, 29), utc(2026, 10, 25), utc(2026, 12, 2)]  # two DST change days in Paris, one plain
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
SEARCH_STEP = 5 * M  # find_slots' candidate starts for a resource without a step (documented)
QUARTER = 15 * M


def on_grid(instant, step, zone):
    """Independent of chalicelib.timegrid: is the instant's local wall time a whole number of steps after
    local midnight (a whole number of days since 1970-01-01 for day steps)?"""
    if instant % S:
        return False
    local = datetime.datetime.fromtimestamp(instant // S, zoneinfo.ZoneInfo(zone) if zone else datetime.UTC)
    since_midnight = (local.hour * 3600 + local.minute * 60 + local.second) * S
    if step < D:
        return since_midnight % step == 0
    return since_midnight == 0 and (local.date().toordinal() - EPOCH_ORDINAL) % (step // D) == 0


def grid_points(low, high, step, zone):
    """Grid instants in [low, high] (every grid of these tests lies on UTC quarter hours)."""
    first = -(-low // QUARTER) * QUARTER
    return [x for x in range(first, high + 1, QUARTER) if on_grid(x, step, zone)]


class Oracle:
    """What reserve must accept right now, decided from the stored reservations by brute force."""

    def __init__(self, rules, bookings, now):
        self.rules = rules  # Resource or None (undefined)
        self.live = [b for b in bookings if not b.reservation.expired(now)]
        self.now = now

    @property
    def pool(self):
        return self.rules is not None and self.rules.capacity > 1

    def used_at(self, instant):
        return sum(b.reservation.units for b in self.live if b.padded_start_ns <= instant < b.padded_end_ns)

    def reservable(self, start, duration, units):
        rules, end = self.rules, start + duration
        if rules is None:
            if units != 1 or start % SEARCH_STEP:
                return False
            return not any(b.overlaps(start, end) for b in self.live)
        if units > rules.capacity:
            return False
        if rules.min_duration_ns and duration < rules.min_duration_ns:
            return False
        if rules.max_duration_ns and duration > rules.max_duration_ns:
            return False
        if rules.step_ns:
            if not (on_grid(start, rules.step_ns, rules.time_zone) and on_grid(end, rules.step_ns, rules.time_zone)):
                return False
        elif start % SEARCH_STEP:
            return False
        if rules.min_notice_ns and start < self.now + rules.min_notice_ns:
            return False
        if rules.max_advance_ns and start > self.now + rules.max_advance_ns:
            return False
        if self.pool:
            cells = grid_points(start, end - 1, rules.step_ns, rules.time_zone)
            return all(self.used_at(cell) + units <= rules.capacity for cell in cells)
        padded = (start - rules.buffer_before_ns, end + rules.buffer_after_ns)
        return units == 1 and not any(b.overlaps(*padded) for b in self.live)

    def free_units(self, start, end):
        """(start, end, units free) over [start, end), adjacent equal values merged."""
        if self.pool:
            step, zone = self.rules.step_ns, self.rules.time_zone
            points = grid_points(start - step - D, end + step + D, step, zone)
            steps = [
                (max(a, start), min(b, end), self.rules.capacity - self.used_at(a))
                for a, b in itertools.pairwise(points)
                if b > start and a < end
            ]
        else:
            edges = sorted(
                {start, end} | {x for b in self.live for x in (b.padded_start_ns, b.padded_end_ns) if start < x < end}
            )
            steps = [
                (a, b, 0 if any(live.overlaps(a, b) for live in self.live) else 1) for a, b in itertools.pairwise(edges)
            ]
        merged = []
        for a, b, free in steps:
            if merged and merged[-1][2] == free and merged[-1][1] == a:
                merged[-1] = (merged[-1][0], b, free)
            else:
                merged.append((a, b, free))
        return merged


@st.composite
def resource_specs(draw):
    kind = draw(st.sampled_from(["undefined", "exclusive", "pool"]))
    if kind == "undefined":
        return None
    zone = draw(st.sampled_from(ZONES))
    if kind == "pool":
        shape = {
            "capacity": draw(st.integers(2, 4)),
            "step_ns": draw(st.sampled_from([15 * M, 30 * M, 1 * H, 2 * H])),
            "time_zone": zone,
        }
        old_buffers = {}
        buffers = {}
    else:
        shape = {"time_zone": zone}
        old_buffers = {
            "buffer_before_ns": draw(st.sampled_from([0, 10 * M])),
            "buffer_after_ns": draw(st.sampled_from([0, 15 * M])),
        }
        buffers = {
            "buffer_before_ns": draw(st.sampled_from([0, 10 * M, 30 * M])),
            "buffer_after_ns": draw(st.sampled_from([0, 5 * M, 15 * M])),
        }
        shape["step_ns"] = draw(st.sampled_from([0, 15 * M, 30 * M, 1 * H, 2 * H, 1 * D]))
    timing = {
        "min_duration_ns": draw(st.sampled_from([0, 0, 15 * M, 30 * M])),
        "max_duration_ns": draw(st.sampled_from([0, 0, 1 * H, 3 * H])),
        "min_notice_ns": draw(st.sampled_from([0, 0, 23 * H, 25 * H + 15 * M])),
        "max_advance_ns": draw(st.sampled_from([0, 0, 30 * H, 40 * H])),
    }
    return {"shape": shape, "old_buffers": old_buffers, "rules": {**buffers, **timing}}


bookings = st.lists(
    st.tuples(
        st.integers(0, 2),  # which resource
        st.integers(0, 26 * 4),  # start, in quarter hours after the window's start minus 2 h
        st.integers(1, 12),  # length in quarter hours
        st.integers(1, 3),  # units
        st.sampled_from(["confirmed", "pending", "blocked", "expired-hold", "live-hold"]),
    ),
    min_size=2,
    max_size=12,
)


@settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    specs=st.lists(resource_specs(), min_size=1, max_size=3),
    made=bookings,
    day=st.sampled_from(DAYS),
    duration=st.sampled_from([15 * M, 30 * M, 1 * H, 90 * M, 2 * H]),
    units=st.sampled_from([1, 1, 2]),
    limit=st.sampled_from([0, 5, 17]),
    checked=st.randoms(use_true_random=False),
)
def test_find_slots_and_availability_agree_with_a_brute_force_oracle(specs, made, day, duration, units, limit, checked):
    window = (day - 2 * H, day + 24 * H)
    # off the quarter hours, so that neither find_slots' one-second notice margin nor the clock's ticks
    # decide a grid start: a start meets notice and horizon now exactly when it does a moment later
    now = day - 1 * D - 30 * S
    clock = FakeClock(now - 1 * D)
    store = FakeStore()
    world = World(build_api(store, clock=clock), store, clock)
    ids = [f"r{i}" for i in range(len(specs))]
    # the storage shape and the buffers reservations are made with, then bookings, then the rules of now
    for rid, spec in zip(ids, specs):
        if spec is not None:
            world.define(rid, **spec["shape"], **spec["old_buffers"])
    for which, offset, length, count, kind in made:
        rid = ids[which % len(ids)]
        spec = specs[which % len(ids)]
        start = window[0] - 2 * H + offset * QUARTER
        end = start + length * QUARTER
        pool = spec is not None and spec["shape"].get("capacity", 1) > 1
        if pool:  # a pool takes only reservations on its grid
            step, zone = spec["shape"]["step_ns"], spec["shape"]["time_zone"]
            start = grid_points(start, start + D, step, zone)[0]
            end = grid_points(max(end, start + 1), end + D, step, zone)[0]
        if (
            pool
            and kind == "expired-hold"
            and (start // (spec["shape"]["step_ns"] * 24) != (end - 1) // (spec["shape"]["step_ns"] * 24))
        ):
            kind = "confirmed"  # see test_pools.test_expired_hold_reaching_into_another_bucket_is_displaced
        status = {"confirmed": Status.CONFIRMED, "blocked": Status.BLOCKED}.get(kind, Status.PENDING)
        hold = {"expired-hold": 12 * H, "live-hold": 3 * D}.get(kind)
        try:
            world.reserve(rid, start, end, status=status, units=count if pool else 1, hold_for=hold)
        except ServiceError:
            pass  # off the pool's grid, or taken: the oracle reads what was stored
    for rid, spec in zip(ids, specs):
        if spec is not None:
            world.define(rid, **spec["shape"], **spec["rules"])
    clock.set(now)
    rules = {rid: (world.resources.get("default", rid) if spec is not None else None) for rid, spec in zip(ids, specs)}
    oracles = {rid: Oracle(rules[rid], store.bookings_of_resource("default", rid), now) for rid in ids}

    found = slots_of(world, ids, *window, duration, units, limit=limit)

    # every step drawn is a multiple of the search step: its grid starts are among these candidates
    expected = sorted(
        (start, rid)
        for rid in ids
        for start in range(window[0], window[1] - duration + 1, SEARCH_STEP)
        if oracles[rid].reservable(start, duration, units)
    )
    assert [(start, rid) for rid, start, _ in found] == expected
    assert all(end == start + duration for _, start, end in found)

    for entry in world.availability.availability("default", ids, {}, *window, units):
        oracle = oracles[entry.resource_id]
        assert entry.free_units == oracle.free_units(*window)
        assert entry.free == [(a, b) for a, b, free in _merged_at_least(oracle.free_units(*window), units)]

    for rid, start, end in checked.sample(found, min(len(found), 12)):
        made_now = world.reserve(rid, start, end, units=units, user="checker")
        world.cancel(made_now.id)


def _merged_at_least(steps, units):
    merged = []
    for a, b, free in steps:
        if free < units:
            continue
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b, free)
        else:
            merged.append((a, b, free))
    return merged
