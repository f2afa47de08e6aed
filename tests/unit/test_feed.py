"""The change feed: every change once, in order, per scope; cursors resume exactly; replay rebuilds state."""

import base64
import random

import pytest

from chalicelib.errors import Code, ServiceError
from chalicelib.layout import EVENT_RETENTION_NS
from chalicelib.model import ChangeKind, Status
from chalicelib.ports import OutcomeUnknown, Scope

from .support import RANDOM_WORK_REFUSALS, D, H, M, S, at, raises_code

TENANT = Scope("default")


@pytest.fixture
def story(world, clock):
    """One of every change kind, on room-1 (alice) and room-2 (bob)."""
    world.define("room-1", max_duration_ns=4 * H)
    made = world.reserve("room-1", at(10), at(11), status=Status.PENDING)
    world.confirm(made.id)
    world.update(made.id, note="board")
    world.reschedule(made.id, at(12), at(13))
    hold = world.hold("room-2", at(10), at(11), user="bob", hold_for=5 * M)
    clock.advance(10 * M)
    world.reserve("room-2", at(10), at(11), user="bob")  # displaces the expired hold
    swept = world.hold("room-2", at(14), at(15), user="bob", hold_for=5 * M)
    clock.advance(10 * M)
    world.service.sweep_expired()
    world.cancel(made.id)
    world.resources.delete("default", "room-1")
    return {"made": made, "hold": hold, "swept": swept}


STORY_KINDS = [
    "RESOURCE_DEFINED",
    "RESERVATION_CREATED",
    "RESERVATION_CONFIRMED",
    "RESERVATION_UPDATED",
    "RESERVATION_RESCHEDULED",
    "RESERVATION_CREATED",
    "RESERVATION_EXPIRED",
    "RESERVATION_CREATED",
    "RESERVATION_CREATED",
    "RESERVATION_EXPIRED",
    "RESERVATION_CANCELLED",
    "RESOURCE_DELETED",
]


def test_every_change_kind_appears_once_in_commit_order(world, story):
    events = world.events()
    assert [e.kind.name for e in events] == STORY_KINDS
    times = [e.at_ns for e in events]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_events_carry_the_reservation_after_and_before_the_change(world, story):
    made = story["made"]
    by_kind = {}
    for event in world.events(Scope("default", resource_id="room-1")):
        by_kind.setdefault(event.kind, event)
    rescheduled = by_kind[ChangeKind.RESERVATION_RESCHEDULED]
    assert (rescheduled.before.start_ns, rescheduled.reservation.start_ns) == (at(10), at(12))
    cancelled = by_kind[ChangeKind.RESERVATION_CANCELLED]
    assert cancelled.before.id == made.id and cancelled.reservation.note == "board"
    assert by_kind[ChangeKind.RESOURCE_DEFINED].resource.max_duration_ns == 4 * H
    expired = [e for e in world.events() if e.kind == ChangeKind.RESERVATION_EXPIRED]
    assert [(e.reservation.id, e.reservation.status) for e in expired] == [
        (story["hold"].id, Status.EXPIRED),
        (story["swept"].id, Status.EXPIRED),
    ]


def test_resource_scope_has_only_that_resources_events(world, story):
    assert world.kinds(Scope("default", resource_id="room-1")) == [
        "RESOURCE_DEFINED",
        "RESERVATION_CREATED",
        "RESERVATION_CONFIRMED",
        "RESERVATION_UPDATED",
        "RESERVATION_RESCHEDULED",
        "RESERVATION_CANCELLED",
        "RESOURCE_DELETED",
    ]
    assert world.kinds(Scope("default", resource_id="room-2")) == [
        "RESERVATION_CREATED",
        "RESERVATION_EXPIRED",
        "RESERVATION_CREATED",
        "RESERVATION_CREATED",
        "RESERVATION_EXPIRED",
    ]


def test_user_scope_has_only_that_users_reservation_events(world, story):
    assert world.kinds(Scope("default", user_id="alice")) == [
        "RESERVATION_CREATED",
        "RESERVATION_CONFIRMED",
        "RESERVATION_UPDATED",
        "RESERVATION_RESCHEDULED",
        "RESERVATION_CANCELLED",
    ]
    assert all(e.reservation.user_id == "bob" for e in world.events(Scope("default", user_id="bob")))
    assert world.events(Scope("default", user_id="nobody")) == []


@pytest.mark.parametrize(
    "scope",
    [TENANT, Scope("default", resource_id="room-2"), Scope("default", user_id="alice")],
    ids=["tenant", "resource", "user"],
)
def test_resuming_from_any_cursor_returns_the_rest_exactly_once(world, story, scope):
    page = world.changes(scope, "", 1000)
    events = [event for event, _ in page.events]
    for index, (_, cursor) in enumerate(page.events):
        assert [e for e, _ in world.changes(scope, cursor, 1000).events] == events[index + 1 :]
    assert world.changes(scope, page.cursor, 1000).events == []


def test_small_pages_walk_every_event_once(world, story):
    seen, cursor = [], ""
    while True:
        page = world.changes(TENANT, cursor, 2)
        assert len(page.events) <= 2
        seen += [event for event, _ in page.events]
        cursor = page.cursor
        if not page.events:
            break
    assert seen == world.events()


def test_cursor_of_a_quiet_feed_picks_up_later_changes(world, clock):
    cursor = world.changes(TENANT, "", 100).cursor
    clock.advance(1 * H)
    cursor = world.changes(TENANT, cursor, 100).cursor  # nothing new: the cursor moves on
    made = world.reserve("room-1", at(10), at(11))
    assert [(e.kind, e.reservation.id) for e, _ in world.changes(TENANT, cursor, 100).events] == [
        (ChangeKind.RESERVATION_CREATED, made.id)
    ]


def test_unsettled_events_wait_and_are_not_skipped(world, clock, monkeypatch):
    monkeypatch.setenv("FEED_SETTLE_MS", "2000")
    cursor = world.changes(TENANT, "", 100).cursor
    made = world.reserve("room-1", at(10), at(11))
    page = world.changes(TENANT, cursor, 100)
    assert page.events == []
    clock.advance(2 * S)
    assert [e.reservation.id for e, _ in world.changes(TENANT, page.cursor, 100).events] == [made.id]


def test_cursor_older_than_seven_days_is_out_of_range(world, clock):
    world.reserve("room-1", at(10), at(11))
    ((event, cursor),) = world.changes(TENANT, "", 100).events
    clock.set(event.at_ns + EVENT_RETENTION_NS)
    assert world.changes(TENANT, cursor, 100).events == []
    clock.set(event.at_ns + EVENT_RETENTION_NS + 1)
    with raises_code(Code.OUT_OF_RANGE, "7 days", "Query"):
        world.changes(TENANT, cursor, 100)


def test_events_older_than_seven_days_are_not_replayed_from_the_start(world, clock):
    world.reserve("room-1", at(10), at(11))
    clock.advance(7 * D + 1 * S)
    assert world.events() == []


def tamper(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[20] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_tampered_cursor_is_invalid_argument(world, story):
    cursor = world.changes(TENANT, "", 3).cursor
    for bad in (tamper(cursor), cursor[:-2], "%%%", ""):
        if not bad:
            continue
        with raises_code(Code.INVALID_ARGUMENT, "after"):
            world.changes(TENANT, bad, 3)


def test_cursor_of_another_scope_or_tenant_is_invalid_argument(world, story):
    cursor = world.changes(TENANT, "", 3).cursor
    for scope in (Scope("default", resource_id="room-1"), Scope("default", user_id="alice"), Scope("globex")):
        with raises_code(Code.INVALID_ARGUMENT, "different query"):
            world.changes(scope, cursor, 3)


def test_page_token_of_a_query_is_not_a_cursor(world, story):
    world.reserve("room-3", at(10), at(11))
    world.reserve("room-3", at(11), at(12))
    token = world.query(page_size=1).next_page_token
    with raises_code(Code.INVALID_ARGUMENT):
        world.changes(TENANT, token, 3)


def test_listen_yields_the_same_events_as_they_settle(world, clock):
    position = world.feed.start(TENANT, "", from_now=True)
    made = world.reserve("room-1", at(10), at(11))
    polls = []
    pages = world.feed.listen(TENANT, position, keep_going=lambda elapsed: len(polls) < 2, sleep=lambda seconds: None)
    for page in pages:
        polls.append(page)
        if len(polls) == 1:
            later = world.reserve("room-1", at(12), at(13))
    assert [[e.reservation.id for e, _ in page.events] for page in polls] == [[made.id], [later.id]]
    assert world.changes(TENANT, polls[-1].cursor, 100).events == []


# ---- replay --------------------------------------------------------------------------------------------


def replay(events, now_ns, resource_id=""):
    """The reservations a consumer rebuilds from a feed (of one resource, if given), as seen at now_ns,
    in query order. A reservation moved to another resource leaves a resource's feed."""
    state = {}
    for event in events:
        if event.reservation is None:
            continue
        gone = resource_id and event.reservation.resource_id != resource_id
        if gone or event.kind in (ChangeKind.RESERVATION_CANCELLED, ChangeKind.RESERVATION_EXPIRED):
            state.pop(event.reservation.id, None)
        else:
            state[event.reservation.id] = event.reservation
    return sorted((r.seen_at(now_ns) for r in state.values()), key=lambda r: (r.start_ns, r.id))


RESOURCES = ["room-1", "room-2", "lot"]
USERS = ["alice", "bob", "carol"]


def random_workload(world, clock, store, rng, steps, cross_resource_moves):
    world.define("lot", capacity=3, step_ns=1 * H)  # one bucket per UTC day: every move stays in it
    made = []
    for _ in range(steps):
        clock.advance(rng.choice([0, 1 * S, 1 * M, 3 * M]))
        if rng.random() < 0.15:
            store.fail_next(OutcomeUnknown(), applied=rng.random() < 0.5)
        action = rng.choice(["reserve", "reserve", "hold", "confirm", "update", "reschedule", "cancel", "sweep"])
        start = at(rng.randrange(8, 18))
        try:
            if action in ("reserve", "hold"):
                resource = rng.choice(RESOURCES)
                kwargs = {
                    "user": rng.choice(USERS),
                    "request_id": rng.choice(["", f"r{rng.randrange(30)}"]),
                    "units": rng.randrange(1, 3) if resource == "lot" else 1,
                }
                if action == "hold":
                    made.append(world.hold(resource, start, start + H, hold_for=rng.choice([2, 5]) * M, **kwargs))
                else:
                    made.append(
                        world.reserve(
                            resource, start, start + H, status=rng.choice([Status.PENDING, Status.CONFIRMED]), **kwargs
                        )
                    )
            elif made and action == "confirm":
                world.confirm(rng.choice(made).id)
            elif made and action == "update":
                world.update(rng.choice(made).id, note=f"n{rng.randrange(5)}")
            elif made and action == "reschedule":
                target = rng.choice(made)
                resource = rng.choice(RESOURCES) if cross_resource_moves else ""
                world.reschedule(target.id, start, start + H, resource_id=resource)
            elif made and action == "cancel":
                world.cancel(rng.choice(made).id)
            elif action == "sweep":
                world.service.sweep_expired()
        except ServiceError as error:
            assert error.code in RANDOM_WORK_REFUSALS, error.message


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replaying_the_feed_rebuilds_what_query_shows_per_tenant_and_user(world, clock, store, seed):
    random_workload(world, clock, store, random.Random(seed), 150, cross_resource_moves=True)
    now = clock.now
    assert replay(world.events(), now) == world.query(page_size=1000).reservations
    for user in USERS:
        now = clock.now
        assert (
            replay(world.events(Scope("default", user_id=user)), now)
            == world.query(user_id=user, page_size=1000).reservations
        )


@pytest.mark.parametrize("seed", [4, 5])
def test_replaying_a_resources_feed_rebuilds_what_query_shows_for_it(world, clock, store, seed):
    random_workload(world, clock, store, random.Random(seed), 150, cross_resource_moves=False)
    for resource in RESOURCES:
        now = clock.now
        assert (
            replay(world.events(Scope("default", resource_id=resource)), now, resource)
            == world.query(resource_id=resource, page_size=1000).reservations
        )


def test_every_reservation_history_starts_with_created_and_ends_at_most_once(world, clock, store):
    random_workload(world, clock, store, random.Random(6), 150, cross_resource_moves=True)
    histories = {}
    for event in world.events():
        if event.reservation is not None:
            histories.setdefault(event.reservation.id, []).append(event.kind)
    for kinds in histories.values():
        assert kinds[0] == ChangeKind.RESERVATION_CREATED and kinds.count(ChangeKind.RESERVATION_CREATED) == 1
        ends = [k for k in kinds if k in (ChangeKind.RESERVATION_CANCELLED, ChangeKind.RESERVATION_EXPIRED)]
        assert len(ends) <= 1 and (not ends or kinds[-1] == ends[0])


def test_resource_feed_tells_when_a_reservation_moves_to_another_resource(world):
    made = world.reserve("room-1", at(10), at(11))
    world.reschedule(made.id, at(10), at(11), resource_id="room-2")
    now = world.clock.now
    assert (
        replay(world.events(Scope("default", resource_id="room-1")), now, "room-1")
        == world.query(resource_id="room-1").reservations
        == []
    )


def test_listen_with_a_cursor_older_than_seven_days_is_out_of_range_before_streaming(world, clock):
    world.reserve("room-1", at(10), at(11))
    ((event, cursor),) = world.changes(TENANT, "", 100).events
    clock.set(event.at_ns + EVENT_RETENTION_NS + 1)
    with raises_code(Code.OUT_OF_RANGE):
        world.feed.start(TENANT, cursor, from_now=True)
