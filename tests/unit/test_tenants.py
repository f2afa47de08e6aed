"""Tenants keep apart; an acting user may only make, change or cancel its own reservations."""

import pytest

from chalicelib.errors import Code
from chalicelib.model import Caller, Status
from chalicelib.ports import Scope

from .support import H, M, at, raises_code

VICTIM = Caller("victim-co")
ATTACKER = Caller("attacker-co")


@pytest.fixture
def victims(world):
    """The victim tenant's reservation with a secret note (issue 12's attack starts from it)."""
    world.define("room-1", tenant="victim-co", max_duration_ns=2 * H)
    return world.reserve("room-1", at(10), at(11), user="victor", note="merger talks", caller=VICTIM)


def test_attacker_cannot_get_update_cancel_confirm_or_move_a_victims_reservation(world, victims):
    for attempt in (
        lambda: world.get(victims.id, caller=ATTACKER),
        lambda: world.update(victims.id, status=Status.BLOCKED, note="pwned", caller=ATTACKER),
        lambda: world.cancel(victims.id, caller=ATTACKER),
        lambda: world.confirm(victims.id, caller=ATTACKER),
        lambda: world.reschedule(victims.id, at(12), at(13), caller=ATTACKER),
    ):
        with raises_code(Code.NOT_FOUND) as info:
            attempt()
        assert "merger" not in info.value.message and "victor" not in info.value.message
    assert world.get(victims.id, caller=VICTIM) == victims


def test_victims_resource_is_a_different_resource_for_the_attacker(world, victims):
    mine = world.reserve("room-1", at(10), at(11), user="mallory", caller=ATTACKER)
    assert mine.id != victims.id
    with raises_code(Code.FAILED_PRECONDITION) as info:
        world.reserve("room-1", at(10), at(11), user="mallory", caller=ATTACKER)
    assert [b.reservation.id for b in info.value.blocking] == [mine.id]
    assert victims.id not in info.value.message
    world.reserve("room-1", at(12), at(15), user="mallory", caller=ATTACKER)  # no max_duration there
    with raises_code(Code.NOT_FOUND):
        world.resources.get("attacker-co", "room-1")


def test_attackers_queries_see_nothing_of_the_victim(world, victims):
    assert world.query_all("attacker-co") == []
    assert world.query_all("attacker-co", resource_id="room-1") == []
    assert world.query_all("attacker-co", user_id="victor") == []
    assert world.query_all("attacker-co", status=Status.CONFIRMED) == []
    assert [r.id for r in world.query_all("victim-co")] == [victims.id]


def test_attackers_feed_availability_and_resource_list_see_nothing_of_the_victim(world, victims):
    assert world.events(Scope("attacker-co")) == []
    assert world.events(Scope("attacker-co", resource_id="room-1")) == []
    assert world.events(Scope("attacker-co", user_id="victor")) == []
    (free,) = world.availability.availability("attacker-co", ["room-1"], {}, at(10), at(11), 1)
    assert free.busy == [] and free.free == [(at(10), at(11))]
    assert world.resources.list("attacker-co", {}, 0, "") == ([], "")


def test_same_request_id_in_two_tenants_is_two_requests(world):
    ours = world.reserve("room-1", at(10), at(11), request_id="r1", caller=VICTIM)
    theirs = world.reserve("room-1", at(10), at(11), request_id="r1", caller=ATTACKER)
    assert ours.id != theirs.id


def test_same_resource_id_in_two_tenants_has_its_own_rules(world):
    world.define("lot", tenant="victim-co", capacity=5, step_ns=1 * H)
    world.define("lot", tenant="attacker-co", max_duration_ns=30 * M)
    world.reserve("lot", at(10), at(11), units=5, caller=VICTIM)
    with raises_code(Code.INVALID_ARGUMENT, r"\(max_duration\)"):
        world.reserve("lot", at(10), at(11), caller=ATTACKER)


# ---- acting user ----------------------------------------------------------------------------------------

ALICE = Caller("acme", acting_user="alice")


def test_acting_user_makes_changes_and_cancels_its_own_reservations(world):
    made = world.reserve("room-1", at(10), at(11), user="alice", status=Status.PENDING, caller=ALICE)
    world.confirm(made.id, caller=ALICE)
    world.update(made.id, note="n", caller=ALICE)
    world.reschedule(made.id, at(12), at(13), caller=ALICE)
    world.cancel(made.id, caller=ALICE)


def test_acting_user_cannot_reserve_for_another_user(world):
    with raises_code(Code.PERMISSION_DENIED, "alice"):
        world.reserve("room-1", at(10), at(11), user="bob", caller=ALICE)
    assert world.stored("room-1", tenant="acme") == []


def test_acting_user_cannot_touch_another_users_reservation(world):
    bobs = world.reserve("room-1", at(10), at(11), user="bob", status=Status.PENDING, tenant="acme")
    for attempt in (
        lambda: world.confirm(bobs.id, caller=ALICE),
        lambda: world.update(bobs.id, note="mine now", caller=ALICE),
        lambda: world.reschedule(bobs.id, at(12), at(13), caller=ALICE),
        lambda: world.cancel(bobs.id, caller=ALICE),
    ):
        with raises_code(Code.PERMISSION_DENIED):
            attempt()
    assert world.get(bobs.id, tenant="acme") == bobs


def test_acting_user_of_another_tenant_gets_not_found_not_permission_denied(world):
    bobs = world.reserve("room-1", at(10), at(11), user="alice", tenant="globex")
    with raises_code(Code.NOT_FOUND):
        world.cancel(bobs.id, caller=ALICE)


def test_without_acting_user_a_tenant_may_change_any_of_its_reservations(world):
    bobs = world.reserve("room-1", at(10), at(11), user="bob", tenant="acme")
    world.update(bobs.id, note="by the desk", tenant="acme")
    world.cancel(bobs.id, tenant="acme")


def test_page_tokens_of_resource_lists_and_slot_searches_stay_in_their_tenant(world):
    for tenant in ("victim-co", "attacker-co"):
        for name in ("a", "b", "c"):
            world.define(name, tenant=tenant, step_ns=1 * H)
    _, token = world.resources.list("victim-co", {}, 1, "")
    with raises_code(Code.INVALID_ARGUMENT, "different query"):
        world.resources.list("attacker-co", {}, 1, token)
    _, slots_token = world.availability.find_slots("victim-co", ["a", "b"], {}, at(9), at(12), 1 * H, 1, 1, "")
    with raises_code(Code.INVALID_ARGUMENT, "different query"):
        world.availability.find_slots("attacker-co", ["a", "b"], {}, at(9), at(12), 1 * H, 1, 1, slots_token)


class FlakyParameterStore:
    """get_parameter answers the values given, in turn; an exception instance is raised."""

    def __init__(self, *values):
        self.values = list(values)

    def get_parameter(self, Name):
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, Exception):
            raise value
        return {"Parameter": {"Value": value}}


@pytest.mark.parametrize("first", ['{"arn:aws:iam::1:user/a": "team-a"}', "{}"])
def test_a_warm_instance_keeps_its_last_good_tenant_map_when_a_bad_one_is_put(monkeypatch, first):
    from chalicelib import tenancy

    clock = [1000.0]
    monkeypatch.setattr(tenancy.time, "monotonic", lambda: clock[0])
    store = FlakyParameterStore(first, "not json", RuntimeError("throttled"))
    tenants = tenancy.TenantMap("/map", lambda: store)
    expected = "team-a" if "team-a" in first else None
    assert tenants.tenant_of("arn:aws:iam::1:user/a") == expected
    for _ in range(2):
        clock[0] += tenancy.MAP_TTL_SECONDS + 1
        assert tenants.tenant_of("arn:aws:iam::1:user/a") == expected


def test_a_cold_instance_without_a_readable_tenant_map_answers_unavailable():
    from chalicelib import tenancy

    tenants = tenancy.TenantMap("/map", lambda: FlakyParameterStore(RuntimeError("throttled")))
    with raises_code(Code.UNAVAILABLE):
        tenants.tenant_of("arn:aws:iam::1:user/a")
