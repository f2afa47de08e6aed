"""Resource rules at reserve time (each at, just inside and just outside its bound), the step grid
across DST changes, what define_resource refuses, and delete_resource."""

import pytest

from chalicelib.errors import Code, ServiceError

from .support import D, H, M, S, at, raises_code, utc


def outcome(call):
    """'ok', or the code of the ServiceError the call raised."""
    try:
        call()
        return "ok"
    except ServiceError as error:
        return error.code.value


# ---- duration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, expected",
    [(30 * M, "ok"), (30 * M + 1, "ok"), (30 * M - 1, "invalid_argument")],
    ids=["at", "inside", "outside"],
)
def test_min_duration_bound(world, length, expected):
    world.define("room-1", min_duration_ns=30 * M)
    assert outcome(lambda: world.reserve("room-1", at(10), at(10) + length)) == expected


@pytest.mark.parametrize(
    "length, expected",
    [(2 * H, "ok"), (2 * H - 1, "ok"), (2 * H + 1, "invalid_argument")],
    ids=["at", "inside", "outside"],
)
def test_max_duration_bound(world, length, expected):
    world.define("room-1", max_duration_ns=2 * H)
    assert outcome(lambda: world.reserve("room-1", at(10), at(10) + length)) == expected


def test_duration_messages_name_the_rule_and_the_allowed_value(world):
    world.define("room-1", min_duration_ns=30 * M, max_duration_ns=2 * H)
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.end", r"\(min_duration\)", "at least 30m"):
        world.reserve("room-1", at(10), at(10, 29))
    with raises_code(Code.INVALID_ARGUMENT, r"\(max_duration\)", "at most 2h", "got 2h1m"):
        world.reserve("room-1", at(10), at(12, 1))


# ---- notice and horizon -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now_offset, expected", [(0, "ok"), (-1, "ok"), (1, "failed_precondition")], ids=["at", "inside", "outside"]
)
def test_min_notice_bound(world, clock, now_offset, expected):
    world.define("room-1", min_notice_ns=1 * H)
    clock.set(at(9) + now_offset)  # the start at(10) is exactly 1 h (+/- 1 ns) ahead
    assert outcome(lambda: world.reserve("room-1", at(10), at(11))) == expected


@pytest.mark.parametrize(
    "now_offset, expected", [(0, "ok"), (1, "ok"), (-1, "failed_precondition")], ids=["at", "inside", "outside"]
)
def test_max_advance_bound(world, clock, now_offset, expected):
    world.define("room-1", max_advance_ns=30 * D)
    clock.set(at(10) - 30 * D + now_offset)
    assert outcome(lambda: world.reserve("room-1", at(10), at(11))) == expected


def test_timing_messages_name_the_rule_and_the_allowed_start(world, clock):
    world.define("room-1", min_notice_ns=1 * H, max_advance_ns=7 * D)
    clock.set(at(9, 30))
    with raises_code(Code.FAILED_PRECONDITION, r"\(min_notice\)", "1h", "2026-12-02T10:30:00Z or later"):
        world.reserve("room-1", at(10), at(11))
    clock.set(at(9, 0) - 7 * D - 1)
    with raises_code(Code.FAILED_PRECONDITION, r"\(max_advance\)", "7d"):
        world.reserve("room-1", at(10), at(11))


# ---- step grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, expected",
    [
        (at(10, 15), at(10, 45), "ok"),
        (at(10, 15) + 1, at(10, 45), "invalid_argument"),
        (at(10, 15) - 1, at(10, 45), "invalid_argument"),
        (at(10, 15), at(10, 45) + 1, "invalid_argument"),
    ],
    ids=["on-grid", "start-1ns-after", "start-1ns-before", "end-off-grid"],
)
def test_step_grid_in_utc(world, start, end, expected):
    world.define("room-1", step_ns=15 * M)
    assert outcome(lambda: world.reserve("room-1", start, end)) == expected


def test_grid_message_names_the_step_and_the_next_grid_time(world):
    world.define("room-1", step_ns=15 * M, time_zone="Europe/Paris")
    with raises_code(
        Code.INVALID_ARGUMENT,
        r"reservation\.start",
        "15m grid",
        "Europe/Paris",
        r"next grid time is 2026-12-02T11:30:00\+01:00",
    ):
        world.reserve("room-1", at(10, 20), at(11))
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.end"):
        world.reserve("room-1", at(10), at(10, 20))


def test_grid_is_anchored_at_local_midnight_of_the_time_zone(world):
    world.define("desk", step_ns=1 * H, time_zone="Asia/Kolkata")  # UTC+05:30: local hours at :30 UTC
    world.reserve("desk", at(10, 30), at(11, 30))
    with raises_code(Code.INVALID_ARGUMENT):
        world.reserve("desk", at(12), at(13))


# Europe/Paris 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z (the local day lasts 23 h).
# Europe/Paris 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z (the local day lasts 25 h).
SPRING = utc(2026, 3, 29)
AUTUMN = utc(2026, 10, 25)


@pytest.fixture
def before_dst(clock):
    clock.set(utc(2026, 3, 1))


def test_hourly_grid_on_the_spring_dst_day_skips_the_missing_hour(world, before_dst):
    world.define("room-p", step_ns=1 * H, max_duration_ns=1 * H, time_zone="Europe/Paris")
    # local 01:00 CET -> 03:00 CEST is one real hour: [00:00Z, 01:00Z)
    made = world.reserve("room-p", SPRING, SPRING + 1 * H)
    assert made.end_ns - made.start_ns == 1 * H
    world.reserve("room-p", SPRING - 1 * H, SPRING)  # local 00:00 -> 01:00
    world.reserve("room-p", SPRING + 1 * H, SPRING + 2 * H)  # local 03:00 -> 04:00
    with raises_code(Code.INVALID_ARGUMENT, r"next grid time is 2026-03-29T03:00:00\+02:00"):
        world.reserve("room-p", SPRING + 30 * M, SPRING + 90 * M)


def test_hourly_grid_on_the_autumn_dst_day_has_the_repeated_hour_twice(world, before_dst):
    world.define("room-p", step_ns=1 * H, max_duration_ns=1 * H, time_zone="Europe/Paris")
    first = world.reserve("room-p", AUTUMN, AUTUMN + 1 * H)  # 02:00 -> 03:00 CEST (= 02:00 CET)
    second = world.reserve("room-p", AUTUMN + 1 * H, AUTUMN + 2 * H)  # 02:00 -> 03:00 CET
    assert {first.end_ns - first.start_ns, second.end_ns - second.start_ns} == {1 * H}
    with raises_code(Code.INVALID_ARGUMENT):
        world.reserve("room-p", AUTUMN + 90 * M, AUTUMN + 3 * H)


@pytest.mark.parametrize(
    "start, end, expected",
    [
        (SPRING + 45 * M, SPRING + 60 * M, "ok"),  # local 01:45 CET -> 03:00 CEST: 15 real minutes
        (SPRING + 60 * M, SPRING + 75 * M, "ok"),  # local 03:00 -> 03:15 CEST
        (SPRING + 50 * M, SPRING + 65 * M, "invalid_argument"),
        (AUTUMN + 45 * M, AUTUMN + 60 * M, "ok"),  # local 02:45 CEST -> 02:00 CET
        (AUTUMN + 60 * M, AUTUMN + 75 * M, "ok"),  # local 02:00 -> 02:15 CET
        (AUTUMN + 60 * M + S, AUTUMN + 75 * M, "invalid_argument"),
    ],
    ids=["spring-before-gap", "spring-after-gap", "spring-off", "autumn-first", "autumn-second", "autumn-off"],
)
def test_quarter_hour_grid_across_dst_changes(world, before_dst, start, end, expected):
    world.define("room-q", step_ns=15 * M, max_duration_ns=15 * M, time_zone="Europe/Paris")
    assert outcome(lambda: world.reserve("room-q", start, end)) == expected


@pytest.mark.parametrize(
    "start, end, expected",
    [
        (SPRING - 1 * H, SPRING + 22 * H, "ok"),  # the 23-hour local day 2026-03-29
        (SPRING - 1 * H, SPRING + 23 * H, "invalid_argument"),  # 24 h later is 01:00 local
        (AUTUMN - 2 * H, AUTUMN + 23 * H, "ok"),  # the 25-hour local day 2026-10-25
        (AUTUMN - 2 * H, AUTUMN + 22 * H, "invalid_argument"),  # 24 h later is 23:00 local
        (SPRING, SPRING + 1 * D, "invalid_argument"),  # UTC midnight is 01:00 local
        (SPRING - 2 * H + 1 * D, SPRING + 22 * H + 1 * D, "ok"),  # 2026-03-30: a 24-hour day in CEST
    ],
    ids=["spring-day", "spring-24h", "autumn-day", "autumn-24h", "utc-midnight", "next-day"],
)
def test_daily_grid_follows_local_midnights_across_dst_changes(world, before_dst, start, end, expected):
    world.define("suite", step_ns=1 * D, time_zone="Europe/Paris")
    assert outcome(lambda: world.reserve("suite", start, end)) == expected


def test_hourly_grid_follows_a_half_hour_dst_change(world, clock):
    # Australia/Lord_Howe 2026-04-05: 02:00 (+11:00) falls back to 01:30 (+10:30) at 15:00Z;
    # local 01:00 is 14:00Z and local 02:00 is 15:30Z, so that "hour" lasts 90 real minutes
    clock.set(utc(2026, 3, 1))
    world.define("court", step_ns=1 * H, time_zone="Australia/Lord_Howe")
    base = utc(2026, 4, 4, 14)
    made = world.reserve("court", base, base + 90 * M)
    assert made.end_ns - made.start_ns == 90 * M
    with raises_code(Code.INVALID_ARGUMENT):
        world.reserve("court", base + 90 * M, base + 2 * H)  # 15:30Z -> 16:00Z ends at local 02:30
    world.reserve("court", base + 90 * M, base + 150 * M)  # local 02:00 -> 03:00


def test_daily_grid_on_a_day_whose_midnight_does_not_exist_starts_at_its_first_instant(world, clock):
    # America/Santiago 2026-09-06: 00:00 (-04:00) never happens, clocks go from 24:00 to 01:00 (-03:00)
    clock.set(utc(2026, 8, 1))
    world.define("cabin", step_ns=1 * D, time_zone="America/Santiago")
    made = world.reserve("cabin", utc(2026, 9, 6, 4), utc(2026, 9, 7, 3))  # 01:00 -> 00:00 local: 23 h
    assert made.end_ns - made.start_ns == 23 * H
    world.reserve("cabin", utc(2026, 9, 5, 4), utc(2026, 9, 6, 4))  # the day before: 24 h


# ---- undefined resources ------------------------------------------------------------------------


def test_undefined_resource_takes_any_window_without_rules(world, clock):
    world.reserve("free-form", at(10) + 1, at(10) + 2)  # 1 ns, off any grid
    world.reserve("free-form", at(11), at(11) + 300 * D)  # 300 days
    world.reserve("free-form", utc(1990, 1, 1), utc(1990, 1, 2))  # long ago
    world.reserve("free-form", utc(9999, 1, 1), utc(9999, 1, 2))  # far ahead
    assert len(world.stored("free-form")) == 4


def test_undefined_resource_refuses_more_than_one_unit(world):
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.units", "capacity"):
        world.reserve("free-form", units=2)


def test_no_reservation_is_longer_than_380_days(world):
    with raises_code(Code.INVALID_ARGUMENT, "380 days"):
        world.reserve("free-form", at(0), at(0) + 381 * D)


# ---- define_resource ----------------------------------------------------------------------------


def test_define_then_get_and_list_by_labels(world):
    world.define("room-a", labels=(("floor", "2"), ("kind", "room")), max_duration_ns=1 * H)
    world.define("room-b", labels=(("floor", "3"), ("kind", "room")))
    world.define("desk-a", labels=(("floor", "2"), ("kind", "desk")))
    got = world.resources.get("default", "room-a")
    assert got.max_duration_ns == 1 * H and got.capacity == 1
    found, token = world.resources.list("default", {"floor": "2"}, 0, "")
    assert [r.id for r in found] == ["desk-a", "room-a"] and token == ""
    found, token = world.resources.list("default", {"kind": "room"}, 1, "")
    found2, token2 = world.resources.list("default", {"kind": "room"}, 1, token)
    assert [r.id for r in found + found2] == ["room-a", "room-b"] and token2 == ""


@pytest.mark.parametrize(
    "rules, field",
    [
        ({"capacity": 3}, "resource.step"),  # a pool needs a step
        ({"capacity": 3, "step_ns": 1 * H, "buffer_after_ns": 5 * M}, "resource.buffer_before"),
        ({"step_ns": 7 * M}, "resource.step"),  # does not divide 24 h
        ({"step_ns": 36 * H}, "resource.step"),  # neither under a day nor whole days
        ({"time_zone": "Mars/Olympus"}, "resource.time_zone"),
        ({"min_duration_ns": 2 * H, "max_duration_ns": 1 * H}, "resource.min_duration"),
        ({"min_notice_ns": -1}, "resource.min_notice"),
        ({"capacity": -1}, "resource.capacity"),
        ({"max_advance_ns": 400 * D}, "resource.max_advance"),
    ],
    ids=[
        "pool-without-step",
        "pool-with-buffers",
        "step-7m",
        "step-36h",
        "zone",
        "min>max",
        "negative",
        "capacity",
        "too-long",
    ],
)
def test_define_refuses_impossible_rules_naming_the_field(world, rules, field):
    with raises_code(Code.INVALID_ARGUMENT, field.replace(".", r"\.")):
        world.define("room-1", **rules)
    with raises_code(Code.NOT_FOUND):
        world.resources.get("default", "room-1")


def test_rules_that_do_not_shape_storage_can_change_after_reservations(world):
    world.define("room-1", max_duration_ns=1 * H)
    made = world.reserve("room-1", at(10), at(11))
    world.define("room-1", max_duration_ns=30 * M, min_notice_ns=1 * H)
    assert world.get(made.id) == made  # made under the old rules, kept
    with raises_code(Code.INVALID_ARGUMENT, r"\(max_duration\)"):
        world.reserve("room-1", at(12), at(13))


def test_exclusive_resource_cannot_become_a_pool(world):
    world.define("room-1")
    with raises_code(Code.FAILED_PRECONDITION, "capacity 1 and capacity > 1"):
        world.define("room-1", capacity=2, step_ns=1 * H)
    assert world.resources.get("default", "room-1").capacity == 1


def test_pool_cannot_become_exclusive(world):
    world.define("lot", capacity=5, step_ns=1 * H)
    with raises_code(Code.FAILED_PRECONDITION, "capacity 1 and capacity > 1"):
        world.define("lot", capacity=1, step_ns=1 * H)


def test_resource_used_without_definition_cannot_become_a_pool(world):
    world.reserve("room-1")
    with raises_code(Code.FAILED_PRECONDITION, "without a definition"):
        world.define("room-1", capacity=2, step_ns=1 * H)
    world.define("room-1", max_duration_ns=2 * H)  # rules that keep it exclusive are fine


@pytest.mark.parametrize("change", [{"step_ns": 30 * M}, {"time_zone": "Europe/Paris"}], ids=["step", "zone"])
def test_pool_step_and_time_zone_are_fixed(world, change):
    world.define("lot", capacity=5, step_ns=1 * H)
    with raises_code(Code.FAILED_PRECONDITION, "step and time_zone are fixed"):
        world.define("lot", **{"capacity": 5, "step_ns": 1 * H, **change})


def test_exclusive_max_duration_cannot_outgrow_the_storage_it_was_sized_for(world):
    world.define("room-1", max_duration_ns=1 * H)  # one-hour guard slots
    with raises_code(Code.FAILED_PRECONDITION, "storage was sized"):
        world.define("room-1", max_duration_ns=100 * H)
    world.define("room-1", max_duration_ns=2 * H)


def test_pool_capacity_can_change(world):
    world.define("lot", capacity=5, step_ns=1 * H)
    assert world.define("lot", capacity=8, step_ns=1 * H).capacity == 8
    assert world.resources.get("default", "lot").capacity == 8


# ---- delete_resource --------------------------------------------------------------------------------


def test_delete_is_refused_while_a_future_reservation_exists(world):
    world.define("room-1")
    made = world.reserve("room-1", at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION, "still has reservations", made.id):
        world.resources.delete("default", "room-1")
    world.cancel(made.id)
    assert world.resources.delete("default", "room-1").id == "room-1"
    with raises_code(Code.NOT_FOUND):
        world.resources.get("default", "room-1")
    with raises_code(Code.NOT_FOUND):
        world.resources.delete("default", "room-1")


def test_delete_is_refused_while_a_reservation_is_under_way(world, clock):
    world.define("room-1")
    made = world.reserve("room-1", at(10), at(11))
    clock.set(at(11) - 1)
    with raises_code(Code.FAILED_PRECONDITION, made.id):
        world.resources.delete("default", "room-1")
    clock.set(at(11))
    world.resources.delete("default", "room-1")


def test_delete_is_allowed_when_only_past_reservations_and_expired_holds_remain(world, clock):
    world.define("room-1")
    world.reserve("room-1", at(1), at(2))
    world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.set(at(3))
    world.resources.delete("default", "room-1")


def test_delete_of_a_pool_is_refused_while_a_long_stay_covers_now(world, clock):
    world.define("hotel", capacity=10, step_ns=1 * D)
    stay = world.reserve("hotel", at(0), at(0) + 10 * D)
    clock.set(at(0) + 5 * D)
    with raises_code(Code.FAILED_PRECONDITION, stay.id):
        world.resources.delete("default", "hotel")


def test_deleted_pool_takes_no_reservations_until_defined_again(world):
    world.define("lot", capacity=2, step_ns=1 * H)
    world.resources.delete("default", "lot")
    with raises_code(Code.FAILED_PRECONDITION, "deleted"):
        world.reserve("lot", at(10), at(11))
    world.define("lot", capacity=2, step_ns=1 * H)
    world.reserve("lot", at(10), at(11), units=2)


def test_deleted_exclusive_resource_keeps_working_like_an_undefined_one(world):
    world.define("room-1", step_ns=1 * H)
    world.resources.delete("default", "room-1")
    world.reserve("room-1", at(10, 7), at(10, 8))
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(10), at(11))
