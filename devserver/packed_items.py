"""Items at rest in the embedded DynamoDB, packed: one marshal string each instead of an object per attribute.

moto holds an item as an Item with a dict of DynamoType objects, one per
attribute: a reservation's item of 19 attributes took about 4.3 KiB, for
650 bytes of data. Here, once the embedded server has answered a call, every
item the call wrote or read is packed again: a _PackedItem keeps its keys and
its attributes as one marshal string, and unpacks them (back into moto's own
DynamoType objects) the first time moto reads `attrs` during a later call.

Only the embedded server packs: it applies each call inside applying(), one
at a time, and what a call touches is packed when it ends. In-process
`mock_aws` tests keep moto's items as they are. A value marshal cannot hold,
or an attribute that is not a DynamoType, leaves its item unpacked; answers
never change.
"""

import contextlib
import marshal
import sys
import threading

from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

# .touched, during a call the server applies: the _PackedItems it unpacked and the (table, hash, range) it wrote
_call = threading.local()


class _PackedItem(Item):
    """An Item whose attributes are unpacked from `_packed` when read, and packed again when that call ends."""

    __slots__ = ("_packed", "_unpacked")

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)  # untracked (moto's BaseModel keeps every instance it makes)

    @property
    def attrs(self) -> LimitedSizeDict:
        if self._unpacked is None:
            self._unpacked = _unpack(self._packed)
            _note(self)
        return self._unpacked

    @attrs.setter
    def attrs(self, value) -> None:  # Item.__deepcopy__ sets the copy's attributes
        self._unpacked = value
        _note(self)


def _plain(value):
    """A DynamoType as nested (type, content) pairs marshal can hold."""
    if type(value) is not DynamoType:
        raise TypeError(type(value).__name__)
    kind, content = value.type, value.value
    if kind == "L":
        return kind, [_plain(nested) for nested in content]
    if kind == "M":
        return kind, {sys.intern(name): _plain(nested) for name, nested in content.items()}
    return kind, content


def _dynamo(plain) -> DynamoType:
    kind, content = plain
    value = DynamoType.__new__(DynamoType)
    if kind == "L":
        content = [_dynamo(nested) for nested in content]
    elif kind == "M":
        content = {name: _dynamo(nested) for name, nested in content.items()}
    value.type, value.value = kind, content
    return value


def _pack(attrs) -> bytes | None:
    """The attributes as one string (names interned, so that every unpacked copy shares them); None if unfit."""
    try:
        return marshal.dumps({sys.intern(name): _plain(value) for name, value in attrs.items()})
    except (TypeError, ValueError, AttributeError):
        return None


def _unpack(packed: bytes) -> LimitedSizeDict:
    attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.update(attrs, {name: _dynamo(plain) for name, plain in marshal.loads(packed).items()})
    return attrs


def _note(touched) -> None:
    noted = getattr(_call, "touched", None)
    if noted is not None:
        noted.append(touched)


def written(table, hash_key, range_key) -> None:
    """An item was stored (or put back) under this key: packed when the call ends."""
    _note((table, hash_key, range_key))


@contextlib.contextmanager
def applying():
    """One call applied by the embedded server: every item it unpacked or stored is packed when it ends."""
    _call.touched = []
    try:
        yield
    finally:
        touched, _call.touched = _call.touched, None
        _pack_touched(touched)


def _repack(item: _PackedItem) -> None:
    if item._unpacked is not None:
        packed = _pack(item._unpacked)
        if packed is not None:
            item._packed, item._unpacked = packed, None


def _pack_touched(touched: list) -> None:
    for entry in touched:
        if type(entry) is _PackedItem:
            _repack(entry)
            continue
        table, hash_key, range_key = entry
        partition = table.items.get(hash_key)
        item = partition.get(range_key) if isinstance(partition, dict) else None
        if type(item) is _PackedItem:  # changed in place, or a before image a cancelled transaction put back
            _repack(item)
        elif item is not None:
            packed = _pack(item.attrs)
            if packed is not None:
                stored = _PackedItem.__new__(_PackedItem)
                stored.hash_key, stored.range_key = item.hash_key, item.range_key
                stored._packed, stored._unpacked = packed, None
                partition[range_key] = stored
