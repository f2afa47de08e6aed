"""moto made flat and leak-free for the embedded DynamoDB (applied by importing devserver.dynamodb).

moto 5.2.5 answers like DynamoDB but its costs grow with the table and it
never frees what it copies. For this service's calls (GetItem, BatchGetItem,
Query on the table and its indexes, PutItem, DeleteItem, TransactWriteItems)
these patches make a call cost what it touches, and change no answer (but
one: GetRecords base64-encodes a binary value once, as DynamoDB does; moto
encoded it twice):

* tracking: moto's BaseModel.__new__ appends every instance to its class's
  `instances_tracked` (only read by the /moto-api dashboard), so every Item ever
  made (each Query result copy, each rollback copy of the table) stayed alive.
  DynamoDB's and DynamoDB Streams' models are not tracked here.
* transactions: TransactWriteItems deep-copied the whole table once per
  action, to roll back by swapping the copy in. Here it keeps the before image
  of each item it touches and puts exactly those back when the transaction is
  cancelled (with the stream records it made); an Update's before image is
  also the old image of its stream record (moto copied the item once more).
  Checks, order of work and errors (TransactionCanceledException, reasons in
  order) are moto's.
* queries: a Query sorted the whole table, then filtered it. Here each table
  keeps every partition (of the table and of each global index) as a sorted
  list of keys, and moto's own query code is handed only the items of the key
  range (from ExclusiveStartKey, at most Limit of them) plus the next item in
  key order, which is what decides LastEvaluatedKey: filters, paging,
  projection and counts stay moto's.
* reads: the table's items are a defaultdict, so a GetItem (or a DeleteItem)
  of a missing key left an empty partition behind; emptied partitions go too.
  A Scan's later page skips to its start by the items' keys, not by reading
  every item before it (which the embedded server would unpack).
* streams: records are kept again (a change feed reads them through
  DynamoDB Streams), each as one JSON string, and trimmed like DynamoDB's
  24-hour retention and beyond STREAM_MAX_BYTES; a trimmed position answers
  TrimmedDataAccessException. Shard iterators expire after 15 minutes, as on
  DynamoDB, instead of piling up (one more per GetRecords).
* answers: moto's generic response serializer looks up each of the ten
  members of every AttributeValue through a chain of alias providers (~80
  lookups per attribute, most of the time of a Query or BatchGetItem).
  AttributeValues, and items (maps of them), are written straight out as
  DynamoDB JSON instead; GetRecords writes out each record's stored JSON.
* requests: moto's parser walked the ten members of every AttributeValue of
  a request; they are read straight in (blobs decoded, as it does).
* items: Item.__init__ measured the whole item again for every attribute it
  set (LimitedSizeDict); an item is measured once, with the same limit.
* key comparisons: DynamoType.cast_value tried every type in turn; strings
  and numbers are tried first.
* item sizes: DynamoType.size rebuilt a DynamoType of every value of a map
  to measure it, and moto measures whole items on every attribute it sets.
* parsing: each condition expression of a transaction was parsed three
  times (validation, condition check, write), each update expression twice;
  a parsed condition is kept for its (expression, names, values), a parsed
  update expression for its text (copied per update Node by Node, not by
  copy.deepcopy's generic protocol). The AST processors asked every node of
  the tree which node types they process (a new tuple each time); they ask
  once per pass. The list of a handler's methods (inspect.getmembers, per
  request) is kept per class.
* the server's dispatch: for every request, moto's DomainDispatcherApplication
  listed its own package directory (one stat per service) and tried every
  service's URL patterns to find the backend of a host; that answer is
  remembered per host.

Every patch is a function of this module, documented with what it replaces.
The embedded server applies one DynamoDB call at a time (devserver.dynamodb),
so none of this needs to be thread-safe beyond what moto itself is. What an
item takes at rest there is devserver/packed_items.py's job.
"""

import base64
import bisect
import collections
import copy
import datetime
import decimal
import json
import re
import threading
import time
import typing
import uuid

from moto.core import responses as moto_core_responses
from moto.core.exceptions import JsonRESTError
from moto.core.model_instances import model_data
from moto.core.parse import BaseJSONParser
from moto.core.serialize import BaseJSONSerializer, TimestampSerializer
from moto.core.utils import utcnow
from moto.dynamodb import models as moto_dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.comparisons import ConditionExpressionParser, get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    ItemSizeTooLarge,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodb.models.utilities import bytesize, dynamo_json_dump
from moto.dynamodb.parsing import validators as moto_validators
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
from moto.dynamodb.parsing.validators import UpdateExpressionValidator
from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from devserver import packed_items

STREAM_RETENTION = datetime.timedelta(hours=24)
# of record JSON per table (about 1,000 reserves; a bound on memory): the oldest are trimmed first
STREAM_MAX_BYTES = 4 * 1024 * 1024
SHARD_ITERATOR_SECONDS = 15 * 60

_original = {}
_local = threading.local()


def _replace(owner, name: str, new) -> None:
    """Set owner.name to `new`, remembering moto's own for the wrappers (and for tests)."""
    _original.setdefault((owner, name), owner.__dict__[name])
    setattr(owner, name, new)


def original(owner, name: str):
    """moto's own attribute, before this module replaced it."""
    return _original.get((owner, name), owner.__dict__.get(name))


# ---- tracking -------------------------------------------------------------------------------------


def _untracked_new(cls, *args, **kwargs):
    return object.__new__(cls)


def _stop_tracking() -> None:
    for service in ("dynamodb", "dynamodbstreams"):
        for model in model_data[service].values():
            model.__new__ = staticmethod(_untracked_new)
            model.instances_tracked = []


# ---- the index of partitions in key order ---------------------------------------------------------


class _Partition:
    """The sort keys of one partition, in order, and the table key of each item."""

    __slots__ = ("keys", "refs")

    def __init__(self):
        self.keys = []
        self.refs = {}

    def add(self, sort_key: tuple, ref: tuple) -> None:
        bisect.insort(self.keys, sort_key)
        self.refs[sort_key] = ref

    def remove(self, sort_key: tuple) -> None:
        position = bisect.bisect_left(self.keys, sort_key)
        if position == len(self.keys) or self.keys[position] != sort_key:
            raise KeyError(sort_key)
        del self.keys[position]
        del self.refs[sort_key]


def _value_key(value: DynamoType) -> tuple:
    """What DynamoType equality compares, as a dict key that later updates of the item cannot change."""
    return value.type, value.cast_value


class _TableIndex:
    """Partitions of a table with a range key, and of its global indexes with one HASH and one RANGE key.

    Sort keys: (range value,) in the table; (index range value, table hash
    value, table range value) in an index, the order in which moto sorts and
    pages an index Query. Kept up to date by every write (see _reindex).
    """

    def __init__(self, table: Table):
        self.table = table
        self.partitions = {None: {}}  # index name (None: the table) -> partition key -> _Partition
        self.indexes = {}  # index name -> (hash attribute, range attribute)
        for index in table.global_indexes:
            hashes = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
            ranges = [key["AttributeName"] for key in index.schema if key["KeyType"] == "RANGE"]
            if len(hashes) == 1 and len(ranges) == 1 and len(index.schema) == 2:
                self.indexes[index.name] = (hashes[0], ranges[0])
                self.partitions[index.name] = {}
        self.entries = {}  # (hash, range) -> ((index name, partition key, sort key), ...)
        self.broken = False
        for partition in list(table.items.values()):
            for item in list(partition.values()):
                self.update(item.hash_key, item.range_key)

    def _entries_of(self, item, hash_key: DynamoType, range_key: DynamoType) -> tuple:
        entries = [(None, _value_key(hash_key), (range_key.cast_value,))]
        for name, (hash_name, range_name) in self.indexes.items():
            index_hash, index_range = item.attrs.get(hash_name), item.attrs.get(range_name)
            if index_hash is not None and index_range is not None:
                entries.append(
                    (name, _value_key(index_hash), (index_range.cast_value, hash_key.cast_value, range_key.cast_value))
                )
        return tuple(entries)

    def update(self, hash_key: DynamoType, range_key: DynamoType) -> None:
        """Index the item now stored under this key, or nothing if there is none."""
        if self.broken:
            return
        partition = self.table.items.get(hash_key)
        item = partition.get(range_key) if isinstance(partition, dict) else None
        new = self._entries_of(item, hash_key, range_key) if item is not None else ()
        old = self.entries.pop((hash_key, range_key), ())
        if new == old:
            if new:
                self.entries[(hash_key, range_key)] = new
            return
        try:
            for name, partition_key, sort_key in old:
                partitions = self.partitions[name]
                partitions[partition_key].remove(sort_key)
                if not partitions[partition_key].keys:
                    del partitions[partition_key]
            for name, partition_key, sort_key in new:
                self.partitions[name].setdefault(partition_key, _Partition()).add(sort_key, (hash_key, range_key))
        except (TypeError, KeyError, IndexError):
            # Values of different types under one key attribute (DynamoDB refuses them; moto does
            # not): Queries of this table go back to moto's own way, whatever it makes of them.
            self.broken = True
            return
        if new:
            self.entries[(hash_key, range_key)] = new

    def item(self, ref: tuple):
        hash_key, range_key = ref
        return self.table.items[hash_key][range_key]


def _index_of(table: Table):
    """The table's index (built on first use); None for a table without a range key."""
    if table.range_key_attr is None:
        return None
    index = table.__dict__.get("_flat_index")
    if index is None or index.table is not table:
        index = table.__dict__["_flat_index"] = _TableIndex(table)
    return None if index.broken else index


def _reindex(table: Table, hash_key, range_key) -> None:
    """After every write of the item under this key (stored, changed, deleted or put back)."""
    if range_key is not None:
        packed_items.written(table, hash_key, range_key)
        index = _index_of(table)
        if index is not None:
            index.update(hash_key, range_key)


_RANGE_BOUNDS = {
    "=": lambda keys, low: (bisect.bisect_left(keys, low, key=_first), bisect.bisect_right(keys, low, key=_first)),
    "<": lambda keys, high: (0, bisect.bisect_left(keys, high, key=_first)),
    "<=": lambda keys, high: (0, bisect.bisect_right(keys, high, key=_first)),
    ">": lambda keys, low: (bisect.bisect_right(keys, low, key=_first), len(keys)),
    ">=": lambda keys, low: (bisect.bisect_left(keys, low, key=_first), len(keys)),
    "BETWEEN": lambda keys, low, high: (
        bisect.bisect_left(keys, low, key=_first),
        bisect.bisect_right(keys, high, key=_first),
    ),
}
for _alias, _operator in (("EQ", "="), ("LT", "<"), ("LE", "<="), ("GT", ">"), ("GE", ">=")):
    _RANGE_BOUNDS[_alias] = _RANGE_BOUNDS[_operator]


def _first(sort_key: tuple):
    return sort_key[0]


def _range_bounds(keys: list, comparison, values: list):
    """[low, high) of the keys that satisfy the range condition; None if not understood here."""
    if comparison is None:
        return 0, len(keys)
    comparison = comparison.upper()
    if comparison == "BEGINS_WITH":
        (prefix,) = values
        if not isinstance(prefix, (str, bytes)):
            return None
        low = high = bisect.bisect_left(keys, prefix, key=_first)
        while high < len(keys) and isinstance(keys[high][0], type(prefix)) and keys[high][0].startswith(prefix):
            high += 1
        return low, high
    bounds = _RANGE_BOUNDS.get(comparison)
    return bounds(keys, *values) if bounds else None


def _query_candidates(
    table: Table,
    index_name,
    hash_key_conditions,
    range_key_conditions,
    limit,
    exclusive_start_key,
    scan_index_forward,
    filter_kwargs,
):
    """The items a Query needs to see to answer as moto would over the whole table; None: not known here."""
    index = _index_of(table)
    if index is None or filter_kwargs or len(hash_key_conditions or ()) != 1 or len(range_key_conditions or ()) > 1:
        return None
    if index_name:
        if index_name not in index.indexes:
            return None
        hash_name, range_name = index.indexes[index_name]
        order = (range_name, table.hash_key_attr, table.range_key_attr)
    else:
        hash_name, range_name = table.hash_key_attr, table.range_key_attr
        order = (range_name,)
    partitions = index.partitions[index_name or None]
    ((condition_name, hash_value),) = hash_key_conditions
    comparison, values = None, []
    if range_key_conditions:
        ((range_condition_name, comparison, range_values),) = range_key_conditions
        if range_condition_name != range_name:
            return None
        values = [value.cast_value for value in range_values]
    if condition_name != hash_name:
        return None
    partition = partitions.get(_value_key(hash_value))
    if partition is None:
        return []
    keys = partition.keys
    try:
        bounds = _range_bounds(keys, comparison, values)
        if bounds is None:
            return None
        low, high = bounds
        if exclusive_start_key:
            position = tuple(DynamoType(exclusive_start_key[name]).cast_value for name in order)
            if scan_index_forward:
                low = max(low, bisect.bisect_right(keys, position))
            else:
                high = min(high, bisect.bisect_left(keys, position))
    except (TypeError, KeyError, ValueError, AttributeError, decimal.InvalidOperation):
        return None
    if scan_index_forward:
        end = max(low, min(high, low + limit) if limit else high)
        chosen = keys[low : end + 1]  # and the next key, in range or not: it decides LastEvaluatedKey
    else:
        begin = min(high, max(low, high - limit) if limit else low)
        chosen = keys[max(begin - 1, 0) : high]
    return [index.item(partition.refs[sort_key]) for sort_key in chosen]


def query(
    self,
    hash_key,
    range_comparison,
    range_objs,
    limit,
    exclusive_start_key,
    scan_index_forward,
    projection_expressions,
    index_name=None,
    consistent_read=False,
    filter_expression=None,
    hash_key_conditions=None,
    range_key_conditions=None,
    **filter_kwargs,
):
    """Table.query over the candidates of the key range only (moto's all_items sorted the whole table)."""
    candidates = _query_candidates(
        self,
        index_name,
        hash_key_conditions,
        range_key_conditions,
        limit,
        exclusive_start_key,
        scan_index_forward,
        filter_kwargs,
    )
    _local.candidates = candidates
    try:
        return original(Table, "query")(
            self,
            hash_key,
            range_comparison,
            range_objs,
            limit,
            exclusive_start_key,
            scan_index_forward,
            projection_expressions,
            index_name,
            consistent_read,
            filter_expression,
            hash_key_conditions=hash_key_conditions,
            range_key_conditions=range_key_conditions,
            **filter_kwargs,
        )
    finally:
        _local.candidates = None


def all_items(self):
    """Inside a Query: only its candidates (in table order, as moto's all_items returns them)."""
    candidates = getattr(_local, "candidates", None)
    if candidates is not None:
        return sorted(candidates, key=lambda item: (item.hash_key, item.range_key))
    return original(Table, "all_items")(self)


def item_comes_before_dct(self, item, dct, hash_key_attrs, range_key_attrs, scan_index_forward):
    """Table._item_comes_before_dct (how a Scan skips to its ExclusiveStartKey), in table order read from the
    item's keys, which equal its key attributes: every later page compared every item before its start,
    and the embedded server would unpack each of them (devserver/packed_items.py)."""
    order = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
    if order != [self.hash_key_attr, self.range_key_attr][: len(order)] or not order:
        return original(Table, "_item_comes_before_dct")(
            self, item, dct, hash_key_attrs, range_key_attrs, scan_index_forward
        )
    for value, name in zip((item.hash_key, item.range_key), order, strict=False):
        bound = DynamoType(dct.get(name))
        if value != bound:
            return (value < bound) == scan_index_forward
    return True


# ---- writes keep the index; reads and deletes leave no empty partition ---------------------------


def put_item(self, *args, **kwargs):
    """Table.put_item, then index the item."""
    item = original(Table, "put_item")(self, *args, **kwargs)
    _reindex(self, item.hash_key, item.range_key)
    return item


def get_item(self, hash_key, range_key=None, projection_expression=None):
    """Table.get_item without creating an empty partition for a missing hash key."""
    if self.has_range_key and not range_key:
        raise MockValidationException("Table has a range key, but no range key was passed into get_item")
    partition = self.items.get(hash_key)
    if range_key:
        result = partition.get(range_key) if isinstance(partition, dict) else None
    else:
        result = partition
    if projection_expression and result:
        try:
            result = result.project(projection_expression)
        except KeyError:
            return None
    return result


def delete_item(self, hash_key, range_key):
    """Table.delete_item that drops an emptied partition and unindexes the item."""
    if range_key:
        partition = self.items.get(hash_key)
        item = partition.pop(range_key, None) if isinstance(partition, dict) else None
        if isinstance(partition, dict) and not partition:
            del self.items[hash_key]
    else:
        item = self.items.pop(hash_key, None)
    if item is None:
        return None
    if self.stream_shard is not None:
        self.stream_shard.add(item, None)
    _reindex(self, hash_key, range_key)
    return item


def update_item(self, table_name, key, *args, **kwargs):
    """DynamoDBBackend.update_item changes the item in place: index it again afterwards (even if it failed)."""
    try:
        return original(DynamoDBBackend, "update_item")(self, table_name, key, *args, **kwargs)
    finally:
        try:
            table = self.get_table(table_name)
            hash_key, range_key = self.get_keys_value(table, key)
        except Exception:
            pass
        else:
            _reindex(table, hash_key, range_key)


# ---- transactions: before images of the items touched, not copies of the table -------------------


def _put_back(table: Table, hash_key, range_key, before) -> None:
    """Store `before` (an Item, or None for no item) under the key, as it was before the transaction."""
    if range_key is None:
        if before is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = before
        return
    if before is not None:
        table.items[hash_key][range_key] = before
    else:
        partition = table.items.get(hash_key)
        if isinstance(partition, dict):
            partition.pop(range_key, None)
            if not partition:
                del table.items[hash_key]
    _reindex(table, hash_key, range_key)


def transact_write_items(self, transact_items):
    """moto's DynamoDBBackend.transact_write_items, with another way to roll back.

    moto deep-copied every table of the transaction before each action and
    swapped the copy back in on failure. Here, before an action changes an
    item, its before image is kept: the Item object itself for Put and Delete
    (they replace or remove it, never change it), a copy of that one item for
    Update (it changes the item in place). A cancelled transaction puts the
    before images back, in reverse order, and drops the stream records it made.
    """
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    before_images = []  # (table, hash key, range key, item or None), in the order applied
    stream_marks = {}  # table name -> (shard, sequence number of its next record)
    target_items = set()

    def check_unicity(table_name, key):
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    def remember(table_name, key, op_type):
        table = self.get_table(table_name)
        if table.name not in stream_marks and table.stream_shard is not None:
            shard = table.stream_shard
            stream_marks[table.name] = (shard, shard.starting_sequence_number + len(shard.items))
        hash_key, range_key = self.get_keys_value(table, key)
        current = table.get_item(hash_key, range_key)
        if op_type == "Update" and current is not None:
            before = copy.deepcopy(current)
            _local.copied = (current, before)  # update_item's own copy of it (for the stream) is this one
            current = before
        before_images.append((table, hash_key, range_key, current))

    def roll_back():
        for table, hash_key, range_key, before in reversed(before_images):
            _put_back(table, hash_key, range_key, before)
        for shard, next_sequence in stream_marks.values():
            _truncate_stream(shard, next_sequence)

    errors = []  # [(Code, Message, Item), ..]
    for item in transact_items:
        original_item = None
        # Check transact writes are not performing multiple operations on the same item
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException

        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")

            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")

            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]

            check_unicity(table_name, key)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression, expression_attribute_names, expression_attribute_values
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)

            if op_type != "ConditionCheck":
                remember(table_name, key, op_type)
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                try:
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition_expression,
                        expression_attribute_names=expression_attribute_names,
                        expression_attribute_values=expression_attribute_values,
                    )
                finally:
                    _local.copied = None
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            roll_back()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:
            errors.append((type(e).__name__, str(e), original_item))

    if any(code is not None for code, _, _ in errors):
        roll_back()
        raise TransactionCanceledException(errors)


class _CopyOnce:
    """The `copy` module as moto.dynamodb.models sees it: deepcopy of the item a transaction has just copied
    (its before image) gives that copy, which DynamoDBBackend.update_item only reads (for the stream record)."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        copied = getattr(_local, "copied", None)
        if copied is not None and copied[0] is value:
            return copied[1]
        return copy.deepcopy(value, memo)


# ---- streams: serialized records, trimmed ---------------------------------------------------------


class _StreamRecord:
    """A DynamoDB Streams record as moto builds it (StreamRecord), kept as one JSON string."""

    __slots__ = ("created", "dynamodb_json", "event_id", "event_name", "sequence", "size")

    def __init__(self, table, stream_type, event_name, old, new, sequence):
        keys_of = old if old is not None else new
        keys = {table.hash_key_attr: keys_of.hash_key.to_json()}
        if table.range_key_attr is not None:
            keys[table.range_key_attr] = keys_of.range_key.to_json()
        self.created = utcnow()
        self.sequence = sequence
        dynamodb = {"StreamViewType": stream_type, "SequenceNumber": str(sequence), "Keys": keys}
        if stream_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
            dynamodb["NewImage"] = _image(new)
        if stream_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
            dynamodb["OldImage"] = _image(old)
        self.dynamodb_json = dynamo_json_dump(dynamodb)
        self.size = len(self.dynamodb_json)  # moto's own (over)estimate of SizeBytes
        self.event_id = uuid.uuid4().hex
        self.event_name = event_name

    def to_json(self) -> dict:
        dynamodb = json.loads(self.dynamodb_json)
        dynamodb.update(ApproximateCreationDateTime=self.created, SizeBytes=self.size)
        return {
            "eventID": self.event_id,
            "eventName": self.event_name,
            "eventSource": "aws:dynamodb",
            "eventVersion": "1.0",
            "awsRegion": "us-east-1",
            "dynamodb": dynamodb,
        }

    def record_json(self) -> str:
        """The record as GetRecords writes it: what to_json gives through moto's serializer, except blobs,
        base64-encoded once (as DynamoDB does; moto's serializer encoded the stored base64 again)."""
        created = TimestampSerializer._timestamp_unixtimestamp(self.created)
        return (
            f'{{"eventID": "{self.event_id}", "eventName": "{self.event_name}", "eventSource": "aws:dynamodb", '
            f'"eventVersion": "1.0", "awsRegion": "us-east-1", "dynamodb": '
            f'{{"ApproximateCreationDateTime": {created!r}, "SizeBytes": {self.size}, {self.dynamodb_json[1:]}}}'
        )


def _plain(value: DynamoType) -> dict:
    """An attribute value as DynamoDB JSON (what Item.to_json gives, without its deep copies)."""
    kind, content = value.type, value.value
    if kind == "M":
        return {"M": {name: _plain(nested) for name, nested in content.items()}}
    if kind == "L":
        return {"L": [_plain(nested) if isinstance(nested, DynamoType) else nested for nested in content]}
    if kind in ("SS", "NS", "BS"):
        return {kind: [_base64(element) for element in content] if kind == "BS" else list(content)}
    return {kind: _base64(content) if kind == "B" else content}


def _base64(content):
    return base64.b64encode(content).decode("ascii") if isinstance(content, bytes) else content


def _image(item) -> dict:
    return {name: _plain(value) for name, value in item.attrs.items()}


def _stream_bytes(shard) -> int:
    return shard.__dict__.setdefault("_bytes", 0)


def _truncate_stream(shard, next_sequence: int) -> None:
    """Drop the records from sequence number `next_sequence` on (those of a cancelled transaction)."""
    keep = max(0, next_sequence - shard.starting_sequence_number)
    dropped = shard.items[keep:]
    del shard.items[keep:]
    shard._bytes = _stream_bytes(shard) - sum(_size(record) for record in dropped)


def _size(record) -> int:
    return getattr(record, "size", 0)  # 0: one of moto's own StreamRecords (Lambda event source mappings)


def _trim_stream(shard) -> None:
    """Forget the oldest records beyond the retention (24 h) or the size cap, as DynamoDB trims its streams."""
    oldest_kept = utcnow() - STREAM_RETENTION
    trimmed, size = 0, _stream_bytes(shard)
    for record in shard.items:
        if size <= STREAM_MAX_BYTES and getattr(record, "created", oldest_kept) >= oldest_kept:
            break
        size -= _size(record)
        trimmed += 1
    if trimmed:
        del shard.items[:trimmed]
        shard.starting_sequence_number += trimmed
    shard._bytes = size


def stream_add(self, old, new):
    """StreamShard.add keeping each record as JSON (not as dicts of the images) and trimming old ones.

    A table feeding Lambda event source mappings keeps moto's own behaviour.
    """
    if self.table.lambda_event_source_mappings:
        return original(StreamShard, "add")(self, old, new)
    event_name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    sequence = self.starting_sequence_number + len(self.items)
    record = _StreamRecord(
        self.table, self.table.stream_specification["StreamViewType"], event_name, old, new, sequence
    )
    self.items.append(record)
    self._bytes = _stream_bytes(self) + record.size
    oldest = getattr(self.items[0], "created", record.created)
    if self._bytes > STREAM_MAX_BYTES or oldest < record.created - STREAM_RETENTION:
        _trim_stream(self)


def stream_get(self, start, quantity):
    """StreamShard.get; a position already trimmed answers TrimmedDataAccessException, as DynamoDB does."""
    if start < self.starting_sequence_number:
        raise JsonRESTError(
            "TrimmedDataAccessException",
            f"The operation attempted to read past the oldest stream record in a shard "
            f"(sequence number {start} was trimmed)",
        )
    return original(StreamShard, "get")(self, start, quantity)


def _forget_expired_iterators(backend) -> None:
    iterators = backend.shard_iterators
    if not isinstance(iterators, collections.OrderedDict):
        iterators = backend.shard_iterators = collections.OrderedDict(iterators)
    expired = time.monotonic() - SHARD_ITERATOR_SECONDS
    while iterators and getattr(next(iter(iterators.values())), "_issued", 0) < expired:
        iterators.popitem(last=False)


def shard_iterator_init(self, *args, **kwargs):
    """ShardIterator.__init__, noting when it was issued."""
    original(ShardIterator, "__init__")(self, *args, **kwargs)
    self._issued = time.monotonic()


def get_shard_iterator(self, *args, **kwargs):
    _forget_expired_iterators(self)
    return original(DynamoDBStreamsBackend, "get_shard_iterator")(self, *args, **kwargs)


def _live_iterator(backend, iterator_arn: str) -> ShardIterator:
    """The shard iterator of this ARN; an unknown or expired one answers ExpiredIteratorException."""
    _forget_expired_iterators(backend)
    iterator = backend.shard_iterators.get(iterator_arn)
    if iterator is None:
        raise JsonRESTError("ExpiredIteratorException", "Iterator expired (or unknown)")
    return iterator


def get_records(self, iterator_arn, limit):
    """DynamoDBStreamsBackend.get_records, of a live iterator only."""
    _live_iterator(self, iterator_arn)
    return original(DynamoDBStreamsBackend, "get_records")(self, iterator_arn, limit)


def get_records_answer(self):
    """DynamoDBStreamsHandler.get_records, written out from the records' stored JSON: moto parsed every
    record back into dicts and walked them with its serializer (a sixth of the embedded DynamoDB's time
    while the local change-feed push reads the stream). Records of moto's own kind go its own way."""
    backend, limit = self.backend, self._get_param("Limit") or 1000
    iterator = _live_iterator(backend, self._get_param("ShardIterator"))
    shard = iterator.stream_shard
    if iterator.sequence_number < shard.starting_sequence_number:
        shard.get(iterator.sequence_number, limit)  # answers TrimmedDataAccessException
    first = iterator.sequence_number - shard.starting_sequence_number
    records = shard.items[first : first + limit]
    if not all(type(record) is _StreamRecord for record in records):
        return original(DynamoDBStreamsHandler, "get_records")(self)
    if records:
        following = ShardIterator(backend, shard, "AFTER_SEQUENCE_NUMBER", records[-1].sequence)
    else:
        following = ShardIterator(backend, shard, "AT_SEQUENCE_NUMBER", iterator.sequence_number)
    backend.shard_iterators[following.arn] = following
    body = '{"Records": [' + ", ".join(record.record_json() for record in records) + "], "
    body += '"NextShardIterator": ' + json.dumps(following.arn) + "}"
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, body


# ---- answers: AttributeValues written straight out ------------------------------------------------

_ATTRIBUTE_VALUE_MEMBERS = frozenset(("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"))
_ATTRIBUTE_VALUE_SHAPES = {}  # id(shape) -> (shape, is it DynamoDB's AttributeValue)


def _is_attribute_value(shape) -> bool:
    known = _ATTRIBUTE_VALUE_SHAPES.get(id(shape))
    if known is None or known[0] is not shape:
        fits = shape.type_name == "structure" and shape.name == "AttributeValue"
        known = _ATTRIBUTE_VALUE_SHAPES[id(shape)] = (shape, fits and set(shape.members) == _ATTRIBUTE_VALUE_MEMBERS)
    return known[1]


class _Unfit(Exception):
    """Not a plain {type: value} dict: left to moto's generic serializer."""


def _string(value):
    return str(value) if value not in (None, {}, []) else value  # as BaseJSONSerializer._serialize_type_string


def _attribute_value(serializer, value) -> dict:
    """An AttributeValue ({type: value}, from dynamo_to_dict) as moto's JSON serializer writes it."""
    if type(value) is not dict or len(value) != 1:
        raise _Unfit()
    ((member, content),) = value.items()
    if content is None or member not in _ATTRIBUTE_VALUE_MEMBERS:
        return {}
    if member == "S" or member == "N":
        return {member: _string(content)}
    if member == "M":
        return {"M": {name: _attribute_value(serializer, nested) for name, nested in content.items()}}
    if member == "L":
        return {"L": [_attribute_value(serializer, nested) for nested in content]}
    if member == "SS" or member == "NS":
        return {member: [_string(element) for element in content]}
    if member == "B":
        return {"B": serializer._base64(content)}
    if member == "BS":
        return {"BS": [serializer._base64(element) for element in content]}
    return {member: content}  # NULL, BOOL


def serialize_structure(self, serialized, value, shape, key):
    """BaseJSONSerializer._serialize_type_structure, with DynamoDB's AttributeValue written directly."""
    if key and _is_attribute_value(shape):
        try:
            serialized[key] = _attribute_value(self, value)
            return
        except _Unfit:
            pass
    original(BaseJSONSerializer, "_serialize_type_structure")(self, serialized, value, shape, key)


def serialize_map(self, serialized, value, shape, key):
    """BaseJSONSerializer._serialize_type_map: an item (names to AttributeValues) written directly."""
    if type(value) is dict and "" not in value and _is_attribute_value(shape.value):
        try:
            item = {name: _attribute_value(self, nested) for name, nested in value.items()}
        except _Unfit:
            pass
        else:
            self._default_serialize(serialized, item, shape, key)
            return
    original(BaseJSONSerializer, "_serialize_type_map")(self, serialized, value, shape, key)


# ---- requests: AttributeValues read straight in ---------------------------------------------------


def _parsed_attribute_value(parser, shape, value):
    """An AttributeValue as moto's JSON parser reads it (blobs decoded, null members dropped)."""
    if type(value) is not dict or len(value) != 1:
        return original(BaseJSONParser, "_parse_structure")(parser, shape, value)
    ((member, content),) = value.items()
    if content is None or member not in _ATTRIBUTE_VALUE_MEMBERS:
        return {}
    if member == "M":
        return {"M": {name: _parsed_attribute_value(parser, shape, nested) for name, nested in content.items()}}
    if member == "L":
        return {"L": [_parsed_attribute_value(parser, shape, nested) for nested in content]}
    if member == "B":
        return {"B": parser._blob_parser(content)}
    if member == "BS":
        return {"BS": [parser._blob_parser(element) for element in content]}
    if member == "SS" or member == "NS":
        return {member: list(content)}
    return {member: content}  # S, N, NULL, BOOL


def parse_structure(self, shape, value):
    """BaseJSONParser._parse_structure, with DynamoDB's AttributeValue read directly (moto walked its ten
    members for every attribute of every item of a request)."""
    if _is_attribute_value(shape):
        return _parsed_attribute_value(self, shape, value)
    return original(BaseJSONParser, "_parse_structure")(self, shape, value)


# ---- items: built in one pass ---------------------------------------------------------------------


def item_init(self, hash_key, range_key, attrs):
    """Item.__init__ measured the whole item again for every attribute it set (LimitedSizeDict); here the
    item is measured once, with the same limit and error."""
    self.hash_key = hash_key
    self.range_key = range_key
    self.attrs = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.update(self.attrs, {key: DynamoType(value) for key, value in attrs.items()})
    if self.size() > 405000:
        raise ItemSizeTooLarge


# ---- item sizes ----------------------------------------------------------------------------------


def size(self) -> int:
    """DynamoType.size (DynamoDB's size of an attribute value) without rebuilding nested values to measure them."""
    kind, value = self.type, self.value
    if kind == "N":
        return len(str(value))
    if kind == "M":
        return sum(
            bytesize(name) + (nested.size() if type(nested) is DynamoType else DynamoType(nested).size())
            for name, nested in value.items()
        )
    if kind == "L":
        return sum(nested.size() for nested in value)
    if kind == "NS":
        return sum(len(str(element)) for element in value)
    if kind in ("SS", "BS"):
        return sum(bytesize(element) for element in value)
    if isinstance(value, bool):
        return 1
    return bytesize(value)


# ---- key comparisons ------------------------------------------------------------------------------


def cast_value(self):
    """DynamoType.cast_value, strings and numbers first (moto tries every type in turn)."""
    if self.type == "S":
        return self.value
    if self.type == "N":
        return decimal.Decimal(self.value)
    return original(DynamoType, "cast_value").fget(self)


# ---- parsing, once ----------------------------------------------------------------------------------

_PARSED_CONDITIONS = collections.OrderedDict()
_PARSED_CONDITIONS_KEPT = 512


def parse_condition(self):
    """ConditionExpressionParser.parse, kept per (expression, names, values): its Op tree is only read."""
    try:
        key = (
            self.condition_expression,
            json.dumps(self.expression_attribute_names, sort_keys=True),
            json.dumps(self.expression_attribute_values, sort_keys=True),
        )
    except (TypeError, ValueError):  # binary values: not kept
        return original(ConditionExpressionParser, "parse")(self)
    parsed = _PARSED_CONDITIONS.get(key)
    if parsed is None:
        op = original(ConditionExpressionParser, "parse")(self)  # raises for a bad expression: nothing kept
        parsed = _PARSED_CONDITIONS[key] = (op, tuple(self.expr_attr_names_found), tuple(self.expr_attr_values_found))
        if len(_PARSED_CONDITIONS) > _PARSED_CONDITIONS_KEPT:
            _PARSED_CONDITIONS.popitem(last=False)
        return op
    _PARSED_CONDITIONS.move_to_end(key)
    op, names, values = parsed
    self.expr_attr_names_found.extend(names)
    self.expr_attr_values_found.extend(values)
    return op


class _ParsedUpdateExpressions:
    """UpdateExpressionParser, one tree per expression text: the tree is only read (find_clauses by the
    validation; the backend's UpdateExpressionValidator deep-copies it before changing the copy). A kept
    tree of a plain `SET a = :x, #b = :y` has its assignments beside it (see update_expression_validator)."""

    trees: typing.ClassVar[dict] = {}
    plain_sets: typing.ClassVar[dict] = {}  # id(tree) -> (tree, ((path, value placeholder), ...))

    @classmethod
    def make(cls, expression: str):
        tree = cls.trees.get(expression)
        if tree is None:
            tree = UpdateExpressionParser.make(expression)
            if len(cls.trees) < _PARSED_CONDITIONS_KEPT:
                cls.trees[expression] = tree
                assignments = _plain_sets_of(expression)
                if assignments:
                    cls.plain_sets[id(tree)] = (tree, assignments)
        return tree


_PLAIN_SET = re.compile(r"\s*SET\s+(.*)", re.IGNORECASE | re.DOTALL)
_PLAIN_ASSIGNMENT = re.compile(r"\s*(#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(:[A-Za-z0-9_]+)\s*")
_PLAIN_VALUE_TYPES = frozenset(("S", "N", "B", "BOOL", "NULL", "M", "L"))


def _plain_sets_of(expression: str) -> tuple | None:
    """((path, placeholder), ...) of `SET path = :value, ...` with top-level paths only; None otherwise."""
    plain = _PLAIN_SET.fullmatch(expression)
    if plain is None:
        return None
    assignments = [_PLAIN_ASSIGNMENT.fullmatch(part) for part in plain.group(1).split(",")]
    return tuple(found.groups() for found in assignments) if all(assignments) else None


class _PlainSets:
    """A validated plain SET (see update_expression_validator): (attribute name, value) in order. It stands
    for moto's validator (validate), its validated tree (normalize) and, given the item, its executor."""

    def __init__(self, assignments: list, item=None):
        self.assignments, self.item = assignments, item

    def validate(self):
        return self

    def normalize(self) -> None:
        """Nothing to sort: one SET clause, applied in order."""

    def execute(self) -> None:
        for name, value in self.assignments:
            self.item.attrs[name] = DynamoType(value)  # measured as moto measures each set (ItemSizeTooLarge)


def _plain_assignments(tree, names, values, table) -> list | None:
    known = _ParsedUpdateExpressions.plain_sets.get(id(tree))
    if known is None or known[0] is not tree:
        return None
    keys = {definition["AttributeName"] for definition in table.attr or ()} | set(table.table_key_attrs)
    reserved = ReservedKeywords.get_reserved_keywords()
    assignments, seen = [], set()
    for path, placeholder in known[1]:
        name = (names or {}).get(path) if path.startswith("#") else None if path.upper() in reserved else path
        value = (values or {}).get(placeholder)
        if name is None or name in keys or name in seen or type(value) is not dict or len(value) != 1:
            return None
        if next(iter(value)) not in _PLAIN_VALUE_TYPES:
            return None
        seen.add(name)
        assignments.append((name, value))
    return assignments


def update_expression_validator(expression, expression_attribute_names, expression_attribute_values, item, table):
    """UpdateExpressionValidator as DynamoDBBackend.update_item sees it. A plain SET of top-level attributes
    that are no key of the table or of an index, to values given by placeholders, is validated here: its
    names and values exist, no attribute twice, none reserved. moto's ten tree passes (a tenth of the
    embedded DynamoDB's time: a reserve bumps its guard's version) would find exactly that. Anything else,
    or anything that does not pass, goes to moto's validator (and its errors)."""
    assignments = _plain_assignments(expression, expression_attribute_names, expression_attribute_values, table)
    if assignments is None:
        return UpdateExpressionValidator(
            expression,
            expression_attribute_names=expression_attribute_names,
            expression_attribute_values=expression_attribute_values,
            item=item,
            table=table,
        )
    return _PlainSets(assignments)


def update_expression_executor(update_ast, item, expression_attribute_names):
    """UpdateExpressionExecutor as DynamoDBBackend.update_item sees it: a plain SET applies itself."""
    if isinstance(update_ast, _PlainSets):
        return _PlainSets(update_ast.assignments, item)
    return UpdateExpressionExecutor(update_ast, item, expression_attribute_names)


_IMMUTABLE = (str, int, float, bool, type(None))


def _copy_tree(node):
    """copy.deepcopy of an expression tree as the parser makes it (Nodes holding Nodes and plain values):
    a copy of each Node and of its list of children, not deepcopy's memo and reduce protocol per object."""
    copied = object.__new__(type(node))
    copied.__dict__.update(node.__dict__)
    if node.children is not None:
        copied.children = [_copied_child(child, copied) for child in node.children]
    return copied


def _copied_child(child, parent):
    if isinstance(child, Node):
        child = _copy_tree(child)
        child.parent = parent
        return child
    return child if type(child) in _IMMUTABLE else copy.deepcopy(child)


def validator_deepcopy(value, memo=None):
    """deepcopy as moto.dynamodb.parsing.validators sees it: the Validator copies the (kept) tree of an update
    expression before changing the copy, once per update."""
    if memo is None and isinstance(value, Node) and value.parent is None:
        return _copy_tree(value)
    return copy.deepcopy(value, memo)


def traverse(self, node):
    """DepthFirstTraverser.traverse, with the node types it processes computed once per pass, not per node."""
    processed = self.nodes_to_be_processed()

    def visit(node, child_id=-1):
        if isinstance(node, Node):
            parent_node = node.parent
            if node.children is not None:
                for i, child_node in enumerate(node.children):
                    self.pre_processing_of_child(node, i)
                    visit(child_node, i)
            if isinstance(node, processed):
                node = self.process(node)
                node.parent = parent_node
                if parent_node:
                    parent_node.children[child_id] = node
        return node

    return visit(node)


_METHOD_NAMES = {}


def method_names_from_class(clazz) -> list:
    if clazz not in _METHOD_NAMES:
        _METHOD_NAMES[clazz] = original(moto_core_responses, "method_names_from_class")(clazz)
    return _METHOD_NAMES[clazz]


# ---- the server's dispatch ------------------------------------------------------------------------


def get_backend_for_host(self, host):
    """DomainDispatcherApplication.get_backend_for_host, remembered per host."""
    known = self.__dict__.setdefault("_backend_of_host", {})
    if host not in known:
        known[host] = original(DomainDispatcherApplication, "get_backend_for_host")(self, host)
    return known[host]


def apply() -> None:
    """Apply every patch (once)."""
    if (Table, "query") in _original:
        return
    _stop_tracking()
    _replace(DynamoType, "cast_value", property(cast_value))
    _replace(DynamoType, "size", size)
    _replace(moto_dynamodb_models, "copy", _CopyOnce())
    _replace(BaseJSONSerializer, "_serialize_type_structure", serialize_structure)
    _replace(BaseJSONSerializer, "_serialize_type_map", serialize_map)
    _replace(BaseJSONParser, "_parse_structure", parse_structure)
    _replace(Item, "__init__", item_init)
    _replace(DomainDispatcherApplication, "get_backend_for_host", get_backend_for_host)
    _replace(ConditionExpressionParser, "parse", parse_condition)
    _replace(dynamodb_responses, "UpdateExpressionParser", _ParsedUpdateExpressions)
    _replace(moto_dynamodb_models, "UpdateExpressionParser", _ParsedUpdateExpressions)
    _replace(moto_dynamodb_models, "UpdateExpressionValidator", update_expression_validator)
    _replace(moto_dynamodb_models, "UpdateExpressionExecutor", update_expression_executor)
    _replace(DepthFirstTraverser, "traverse", traverse)
    _replace(moto_validators, "deepcopy", validator_deepcopy)
    _replace(moto_core_responses, "method_names_from_class", method_names_from_class)
    _replace(Table, "query", query)
    _replace(Table, "all_items", all_items)
    _replace(Table, "_item_comes_before_dct", item_comes_before_dct)
    _replace(Table, "put_item", put_item)
    _replace(Table, "get_item", get_item)
    _replace(Table, "delete_item", delete_item)
    _replace(DynamoDBBackend, "update_item", update_item)
    _replace(DynamoDBBackend, "transact_write_items", transact_write_items)
    _replace(StreamShard, "add", stream_add)
    _replace(StreamShard, "get", stream_get)
    _replace(ShardIterator, "__init__", shard_iterator_init)
    _replace(DynamoDBStreamsBackend, "get_shard_iterator", get_shard_iterator)
    _replace(DynamoDBStreamsBackend, "get_records", get_records)
    _replace(DynamoDBStreamsHandler, "get_records", get_records_answer)
