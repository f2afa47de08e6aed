"""Request ids: a retried reserve returns what the first one made, in the caller's tenant only."""

import pytest

from chalicelib.errors import Code
from chalicelib.model import ChangeKind, Status
from chalicelib.ports import OutcomeUnknown

from .support import M, at, raises_code


def test_same_request_id_and_fields_return_the_same_reservation(world):
    first = world.reserve("room-1", at(10), at(11), note="standup", request_id="req-1")
    again = world.reserve("room-1", at(10), at(11), note="standup", request_id="req-1")
    assert again == first
    assert [r.id for r in world.stored("room-1")] == [first.id]
    assert world.kinds() == ["RESERVATION_CREATED"]


def test_same_request_id_after_cancel_returns_the_same_reservation_and_makes_nothing(world):
    first = world.reserve("room-1", at(10), at(11), request_id="req-1")
    world.cancel(first.id)
    again = world.reserve("room-1", at(10), at(11), request_id="req-1")
    assert again.id == first.id
    assert world.stored("room-1") == []


def test_replay_wins_over_a_conflict_that_arose_since(world):
    first = world.reserve("room-1", at(10), at(11), request_id="req-1")
    world.cancel(first.id)
    world.reserve("room-1", at(10), at(11), user="bob")
    assert world.reserve("room-1", at(10), at(11), request_id="req-1").id == first.id


@pytest.mark.parametrize(
    "change",
    [
        {"note": "other"},
        {"user": "bob"},
        {"resource": "room-2"},
        {"start": at(10, 30), "end": at(11, 30)},
        {"status": Status.CONFIRMED},
        {"hold_for": 5 * M},
    ],
    ids=["note", "user", "resource", "window", "status", "hold_for"],
)
def test_same_request_id_with_different_fields_is_already_exists(world, change):
    world.reserve("room-1", at(10), at(11), status=Status.PENDING, request_id="req-1")
    fields = {"resource": "room-1", "start": at(10), "end": at(11), "status": Status.PENDING}
    fields.update(change)
    with raises_code(Code.ALREADY_EXISTS, "req-1"):
        world.reserve(request_id="req-1", **fields)
    assert len(world.stored("room-1")) == 1


def test_unknown_status_and_pending_are_the_same_request(world):
    first = world.reserve("room-1", at(10), at(11), status=Status.UNKNOWN, request_id="req-1")
    assert first.status == Status.PENDING
    assert world.reserve("room-1", at(10), at(11), status=Status.PENDING, request_id="req-1") == first


def test_different_request_ids_make_different_reservations(world):
    a = world.reserve("room-1", at(10), at(11), request_id="req-1")
    b = world.reserve("room-1", at(11), at(12), request_id="req-2")
    assert a.id != b.id


def test_request_ids_belong_to_their_tenant(world):
    ours = world.reserve("room-1", at(10), at(11), request_id="req-1", tenant="acme")
    theirs = world.reserve("desk-9", at(14), at(15), user="zed", request_id="req-1", tenant="globex")
    assert theirs.id != ours.id and theirs.resource_id == "desk-9"
    assert world.reserve("room-1", at(10), at(11), request_id="req-1", tenant="acme") == ours


def test_lost_answer_then_retry_with_the_same_request_id_returns_one_reservation(world, store):
    store.fail_next(OutcomeUnknown(), applied=True)
    first = world.reserve("room-1", at(10), at(11), request_id="req-1")
    again = world.reserve("room-1", at(10), at(11), request_id="req-1")
    assert again == first
    assert [r.id for r in world.stored("room-1")] == [first.id]
    assert [e.kind for e in world.events()] == [ChangeKind.RESERVATION_CREATED]


def test_refused_reserve_does_not_use_up_its_request_id(world):
    blocker = world.reserve("room-1", at(10), at(11), user="bob")
    with raises_code(Code.FAILED_PRECONDITION):
        world.reserve("room-1", at(10), at(11), request_id="req-1")
    world.cancel(blocker.id)
    made = world.reserve("room-1", at(10), at(11), request_id="req-1")
    assert [r.id for r in world.stored("room-1")] == [made.id]
