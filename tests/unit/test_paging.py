"""Query paging: order, pages that walk every match once, tokens bound to query and tenant, budgets."""

import base64
import uuid

import pytest

from chalicelib import query
from chalicelib.errors import Code
from chalicelib.model import Booking, Reservation, Status

from .support import M, at, raises_code, seed


def booking(n, resource="busy", status=Status.CONFIRMED, start=None, note="", user="u"):
    start = at(0) + n * M if start is None else start
    return Booking(Reservation(str(uuid.UUID(int=n + 1)), user, resource, status, start, start + M, note))


@pytest.fixture
def mixed(world):
    """Nine reservations of three users on three rooms, some starting at the same instant."""
    made = []
    for i in range(9):
        made.append(world.reserve(f"room-{i % 3}", at(8 + i // 3), at(9 + i // 3), user=f"user-{i % 2}"))
    return sorted(made, key=lambda r: (r.start_ns, r.id))


def test_query_answers_in_start_order_ties_by_id(world, mixed):
    assert world.query_all() == mixed


def test_descending_query_answers_in_reverse_order(world, mixed):
    assert world.query_all(descending=True) == mixed[::-1]


@pytest.mark.parametrize("descending", [False, True])
def test_pages_walk_every_match_exactly_once(world, mixed, descending):
    pages, token = [], ""
    while True:
        page = world.query(page_size=2, page_token=token, descending=descending)
        pages.append(page.reservations)
        token = page.next_page_token
        if not token:
            break
    assert all(len(page) <= 2 for page in pages) and len(pages) == 5
    assert [r for page in pages for r in page] == (mixed[::-1] if descending else mixed)


def test_filters_by_resource_user_status_and_window(world, mixed):
    assert world.query_all(resource_id="room-1") == [r for r in mixed if r.resource_id == "room-1"]
    assert world.query_all(user_id="user-0") == [r for r in mixed if r.user_id == "user-0"]
    assert world.query_all(status=Status.PENDING) == []
    assert world.query_all(start_ns=at(9), end_ns=at(10)) == [r for r in mixed if r.start_ns == at(9)]


def test_window_finds_a_reservation_that_began_before_it(world):
    long = world.reserve("room-1", at(6), at(12))
    later = world.reserve("room-1", at(12), at(13))
    assert world.query_all(resource_id="room-1", start_ns=at(11), end_ns=at(14)) == [long, later]
    assert world.query_all(user_id="alice", start_ns=at(11), end_ns=at(14)) == [long, later]
    assert world.query_all(start_ns=at(11, 59), end_ns=at(12)) == [long]


def test_reservations_up_to_an_hour_write_no_longest_record_and_are_still_found(world):
    """Queries by user or tenant look back at least LOOKBACK_FLOOR_NS, so a reservation that long never
    raises the longest-reservation records (a user's first reservation costs what the others do)."""
    hour = world.reserve("room-1", at(10), at(11), user="dana")
    assert world.store.longest("default", "dana") == 0 and world.store.longest("default", "") == 0
    assert world.query_all(user_id="dana", start_ns=at(10, 59), end_ns=at(12)) == [hour]
    assert world.query_all(start_ns=at(10, 59), end_ns=at(12)) == [hour]
    longer = world.reserve("room-2", at(12), at(13, 30), user="dana")
    assert world.store.longest("default", "dana") == world.store.longest("default", "") == at(13, 30) - at(12)
    assert world.query_all(user_id="dana", start_ns=at(13, 29), end_ns=at(14)) == [longer]


def test_expired_hold_is_listed_as_expired(world, clock):
    hold = world.hold("room-1", at(10), at(11), hold_for=5 * M)
    clock.set(hold.expires_at_ns)
    assert [(r.id, r.status) for r in world.query_all()] == [(hold.id, Status.EXPIRED)]
    assert [r.id for r in world.query_all(status=Status.EXPIRED)] == [hold.id]
    assert world.query_all(status=Status.PENDING) == []


def tamper(token: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-3] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_tampered_or_garbage_token_is_invalid_argument(world, mixed):
    token = world.query(page_size=2).next_page_token
    for bad in (tamper(token), token[:-4], "!!!", "e30", base64.urlsafe_b64encode(b"x" * 40).decode()):
        with raises_code(Code.INVALID_ARGUMENT, "page_token"):
            world.query(page_size=2, page_token=bad)


def test_token_of_another_query_is_invalid_argument(world, mixed):
    token = world.query(page_size=2).next_page_token
    for other in (
        {"resource_id": "room-1"},
        {"user_id": "user-0"},
        {"status": Status.CONFIRMED},
        {"descending": True},
        {"start_ns": at(0)},
    ):
        with raises_code(Code.INVALID_ARGUMENT, "different query"):
            world.query(page_size=2, page_token=token, **other)
    world.query(page_size=5, page_token=token)  # the page size may change


def test_token_of_another_tenant_is_invalid_argument(world, mixed):
    world.reserve("room-1", at(10), at(11), tenant="globex")
    token = world.query("default", page_size=2).next_page_token
    with raises_code(Code.INVALID_ARGUMENT, "different query"):
        world.query("globex", page_size=2, page_token=token)


def test_bad_page_size_and_window_are_invalid(world):
    with raises_code(Code.INVALID_ARGUMENT, "page_size"):
        world.query(page_size=-1)
    with raises_code(Code.INVALID_ARGUMENT, "end"):
        world.query(start_ns=at(10), end_ns=at(10))


def test_page_size_is_capped_at_the_maximum(world, store):
    seed(store, "default", [booking(n) for n in range(query.MAX_PAGE_SIZE + 5)])
    page = world.query(resource_id="busy", page_size=5000)
    assert len(page.reservations) == query.MAX_PAGE_SIZE and page.next_page_token


def test_selective_filter_ends_its_page_early_and_walking_returns_every_match_once(world, store):
    rare = {7, 1999, 2000, 2001, 2950}
    seed(store, "default", [booking(n, status=Status.BLOCKED if n in rare else Status.CONFIRMED) for n in range(3000)])
    first = world.query(resource_id="busy", status=Status.BLOCKED, page_size=100)
    assert first.next_page_token and len(first.reservations) < len(rare)  # the read budget ran out
    for page_size in (100, 1):
        found = world.query_all(resource_id="busy", status=Status.BLOCKED, page_size=page_size)
        assert [r.id for r in found] == [str(uuid.UUID(int=n + 1)) for n in sorted(rare)]
    found = world.query_all(resource_id="busy", status=Status.BLOCKED, descending=True)
    assert [r.id for r in found] == [str(uuid.UUID(int=n + 1)) for n in sorted(rare, reverse=True)]


def test_filter_with_no_match_among_thousands_ends_with_an_empty_last_page(world, store):
    seed(store, "default", [booking(n) for n in range(2500)])
    pages, token = 0, ""
    while True:
        page = world.query(resource_id="busy", status=Status.BLOCKED, page_token=token)
        assert page.reservations == []
        pages, token = pages + 1, page.next_page_token
        if not token:
            break
    assert pages == 2


def test_big_answers_end_their_page_early(world, store):
    seed(store, "default", [booking(n, note="x" * 4096) for n in range(1000)])
    first = world.query(resource_id="busy", page_size=1000)
    assert first.next_page_token and len(first.reservations) < 1000
    assert sum(query.answer_size(r) for r in first.reservations) <= query.ANSWER_BUDGET + query.answer_size(
        first.reservations[-1]
    )
    assert len(world.query_all(resource_id="busy", page_size=1000)) == 1000
