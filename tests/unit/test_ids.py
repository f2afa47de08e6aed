"""Resource and user ids: NFC-normalized, case-sensitive, look-alikes refused."""

import unicodedata

import pytest

from chalicelib.errors import Code

from .support import at, raises_code

NFC = unicodedata.normalize("NFC", "Room-x-\u00e9")
NFD = unicodedata.normalize("NFD", "Room-x-\u00e9")


def test_nfc_and_nfd_spellings_are_one_resource(world):
    assert NFC != NFD
    first = world.reserve(NFC, at(10), at(11))
    with raises_code(Code.FAILED_PRECONDITION, first.id):
        world.reserve(NFD, at(10), at(11), user="bob")
    assert first.resource_id == NFC
    assert world.reserve(NFD, at(11), at(12)).resource_id == NFC


def test_nfd_resource_id_is_stored_and_found_as_nfc(world):
    world.define(NFD, max_duration_ns=1)
    assert world.resources.get("default", NFC).id == NFC
    assert world.resources.get("default", NFD).id == NFC


def test_nfc_and_nfd_spellings_are_one_user(world):
    made = world.reserve("room-1", at(10), at(11), user=NFD)
    assert made.user_id == NFC
    assert [r.id for r in world.query_all(user_id=NFC)] == [made.id]


@pytest.mark.parametrize(
    "bad",
    [" room-1", "room-1 ", "room-1\u00a0", "\uff52oom-1", "\ufb01le", "", "room\n1"],
    ids=["leading-space", "trailing-space", "trailing-nbsp", "fullwidth-r", "ligature", "empty", "newline"],
)
def test_look_alike_or_empty_ids_are_invalid(world, bad):
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.resource_id"):
        world.reserve(bad, at(10), at(11))
    with raises_code(Code.INVALID_ARGUMENT, r"reservation\.user_id"):
        world.reserve("room-1", at(10), at(11), user=bad)
    with raises_code(Code.INVALID_ARGUMENT, r"resource\.id"):
        world.define(bad)


def test_ids_are_case_sensitive(world):
    world.reserve("Room-1", at(10), at(11))
    world.reserve("room-1", at(10), at(11))


def test_id_longer_than_128_characters_is_invalid(world):
    world.reserve("r" * 128, at(10), at(11))
    with raises_code(Code.INVALID_ARGUMENT, "at most 128"):
        world.reserve("r" * 129, at(10), at(11))
