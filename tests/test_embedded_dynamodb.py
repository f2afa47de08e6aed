"""The embedded DynamoDB (moto patched by devserver/moto_patches.py): all-or-nothing transactions that
copy only what they touch, Queries that read only their key range, stream records, and nothing kept alive."""

import base64
import errno
import gc
import http.client
import itertools
import json
import random
import struct

import boto3
import pytest
from botocore.config import Config
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

from devserver import moto_patches
from harness.moto import TABLE, scan_all


def _item(pk: str, sk: str, **attributes) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}, **{name: {"S": value} for name, value in attributes.items()}}


def _key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _table() -> Table:
    return dynamodb_backends["123456789012"]["us-east-1"].get_table(TABLE)


def _by_user(client, user: str) -> list:
    return client.query(
        TableName=TABLE,
        IndexName="by_user",
        KeyConditionExpression="uk = :u",
        ExpressionAttributeValues={":u": {"S": user}},
    )["Items"]


def _streams():
    """In process, moto routes DynamoDB Streams only on its regional host, not on botocore's account-based one."""
    return boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))


def _stream_records(client) -> list:
    streams = _streams()
    arn = client.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]


def test_a_transaction_whose_last_action_fails_leaves_every_item_as_before(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={**_item("B", "B", uk="room", start_key="2", note="b"), "ver": {"N": "1"}})
    dynamodb.put_item(TableName=TABLE, Item=_item("C", "C", uk="room", start_key="3"))
    dynamodb.put_item(TableName=TABLE, Item={**_item("D", "D"), "ver": {"N": "7"}})
    before, indexed_before, records_before = scan_all(dynamodb), _by_user(dynamodb, "room"), _stream_records(dynamodb)

    with pytest.raises(dynamodb.exceptions.TransactionCanceledException) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item("A", "A", uk="room", start_key="1"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key("B", "B"),
                        "UpdateExpression": "SET uk = :other, ver = ver + :one REMOVE note",
                        "ConditionExpression": "ver = :one",
                        "ExpressionAttributeValues": {":other": {"S": "hall"}, ":one": {"N": "1"}},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": _key("C", "C")}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item("D", "D", note="never"),
                        "ConditionExpression": "ver = :read",
                        "ExpressionAttributeValues": {":read": {"N": "6"}},
                    }
                },
            ]
        )

    reasons = [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert scan_all(dynamodb) == before
    assert _by_user(dynamodb, "room") == indexed_before and not _by_user(dynamodb, "hall")
    assert _stream_records(dynamodb) == records_before  # a cancelled transaction leaves no stream record


def test_a_transaction_applies_all_of_its_actions(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item={**_item("B", "B", uk="room", start_key="2"), "ver": {"N": "1"}})
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("A", "A", uk="room", start_key="1")}},
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": _key("B", "B"),
                    "UpdateExpression": "SET uk = :other",
                    "ExpressionAttributeValues": {":other": {"S": "hall"}},
                }
            },
        ]
    )
    assert [item["pk"]["S"] for item in _by_user(dynamodb, "room")] == ["A"]
    assert [item["pk"]["S"] for item in _by_user(dynamodb, "hall")] == ["B"]


def test_two_actions_on_one_item_are_refused_and_change_nothing(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item=_item("B", "B"))
    before = scan_all(dynamodb)
    with pytest.raises(dynamodb.exceptions.ClientError, match="multiple operations on one item"):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item("A", "A")}},
                {"Delete": {"TableName": TABLE, "Key": _key("B", "B")}},
                {"Put": {"TableName": TABLE, "Item": _item("B", "B", note="again")}},
            ]
        )
    assert scan_all(dynamodb) == before


def test_writes_show_up_in_the_stream_with_old_and_new_images(dynamodb):
    dynamodb.put_item(TableName=TABLE, Item=_item("A", "A", note="first"))
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": _key("A", "A"),
                    "UpdateExpression": "SET note = :n",
                    "ExpressionAttributeValues": {":n": {"S": "second"}},
                }
            }
        ]
    )
    dynamodb.delete_item(TableName=TABLE, Key=_key("A", "A"))

    records = _stream_records(dynamodb)
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY", "REMOVE"]
    inserted, modified, removed = (record["dynamodb"] for record in records)
    assert inserted["StreamViewType"] == "NEW_AND_OLD_IMAGES" and inserted["Keys"] == _key("A", "A")
    assert inserted["NewImage"] == _item("A", "A", note="first") and "OldImage" not in inserted
    assert modified["OldImage"]["note"] == {"S": "first"} and modified["NewImage"]["note"] == {"S": "second"}
    assert removed["OldImage"]["note"] == {"S": "second"} and "NewImage" not in removed
    sequence = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3


def test_stream_records_are_written_out_as_moto_writes_them(dynamodb, monkeypatch):
    """GetRecords writes the stored records' JSON out directly: the same records as moto's own way (which
    parsed each back and serialized it), except binary values, base64-encoded once as DynamoDB does."""
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with_every_kind = {**_item("K", "1"), **{name: value for name, value in EVERY_KIND.items() if "b" not in name}}
    dynamodb.put_item(TableName=TABLE, Item=with_every_kind)
    dynamodb.put_item(TableName=TABLE, Item={**with_every_kind, "s": {"S": "changed"}})
    dynamodb.put_item(TableName=TABLE, Item={**_item("K", "2"), "b": {"B": b"\x00\xff"}, "bs": {"BS": [b"\x01"]}})
    dynamodb.delete_item(TableName=TABLE, Key=_key("K", "1"))

    direct = _stream_records(dynamodb)
    assert direct[2]["dynamodb"]["NewImage"]["b"] == {"B": b"\x00\xff"}  # moto gave base64 of the base64
    assert direct[2]["dynamodb"]["NewImage"]["bs"] == {"BS": [b"\x01"]}
    monkeypatch.setattr(
        DynamoDBStreamsHandler, "get_records", moto_patches.original(DynamoDBStreamsHandler, "get_records")
    )
    by_moto = _stream_records(dynamodb)
    assert len(direct) == len(by_moto) == 4
    for ours, theirs in zip(direct, by_moto, strict=True):
        if ours["dynamodb"].get("NewImage", {}).get("b"):
            ours, theirs = _without_binary(ours), _without_binary(theirs)
        assert ours == theirs


def _without_binary(record: dict) -> dict:
    record = json.loads(json.dumps(record, default=str))
    record["dynamodb"]["NewImage"].pop("b")
    record["dynamodb"]["NewImage"].pop("bs")
    return record


def test_the_stream_keeps_its_newest_records_within_its_cap(dynamodb, monkeypatch):
    monkeypatch.setattr(moto_patches, "STREAM_MAX_BYTES", 2000)
    streams = _streams()
    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    first = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    for n in range(50):
        dynamodb.put_item(TableName=TABLE, Item=_item(f"P{n}", "S", note="x" * 50))

    records = _stream_records(dynamodb)
    assert 5 < len(records) < 50 and records[-1]["dynamodb"]["Keys"]["pk"] == {"S": "P49"}
    assert sum(record["dynamodb"]["SizeBytes"] for record in records) <= 2000
    with pytest.raises(streams.exceptions.ClientError, match="TrimmedDataAccessException"):
        streams.get_records(ShardIterator=first["ShardIterator"])
    latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
    dynamodb.put_item(TableName=TABLE, Item=_item("last", "S"))
    (record,) = streams.get_records(ShardIterator=latest["ShardIterator"])["Records"]
    assert record["dynamodb"]["Keys"]["pk"] == {"S": "last"}


def test_no_copy_stays_alive(dynamodb):
    """moto tracked every instance (copies too) and deep-copied the table per transaction action."""
    for n in range(30):
        dynamodb.put_item(
            TableName=TABLE, Item={**_item(f"R{n}", "R", uk="room", start_key=f"{n:03}"), "ver": {"N": "1"}}
        )
    for n in range(30):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key(f"R{n}", "R"),
                        "UpdateExpression": "SET ver = ver + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {"Put": {"TableName": TABLE, "Item": _item(f"N{n}", "N")}},
            ]
        )
        with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
            dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": _item(f"X{n}", "X")}},
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": _key(f"R{n}", "R"),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        _by_user(dynamodb, "room")
        dynamodb.get_item(TableName=TABLE, Key=_key(f"missing{n}", "M"))
    gc.collect()
    alive = sum(isinstance(thing, Item) for thing in gc.get_objects())
    assert alive == len(scan_all(dynamodb)) == 60
    assert Item.instances_tracked == [] and Table.instances_tracked == []
    assert not any(pk.value.startswith("missing") for pk in _table().items)  # no empty partition left behind


def _query_both_ways(
    table: Table, index_name, hash_name, hash_value, range_name, comparison, values, limit, forward
) -> tuple:
    """Every page of one Query, through the patched Table.query and through moto's own."""
    answers = []
    for query in (table.query, moto_patches.original(Table, "query").__get__(table)):
        pages, start = [], None
        while True:
            items, scanned, last = query(
                DynamoType(hash_value),
                comparison,
                values,
                limit,
                start,
                forward,
                None,
                index_name=index_name,
                hash_key_conditions=[(hash_name, DynamoType(hash_value))],
                range_key_conditions=[(range_name, comparison, values)] if comparison else [],
            )
            pages.append(([item.to_json() for item in items], scanned, last))
            if last is None or len(pages) > 200:
                break
            start = {name: value.to_json() if isinstance(value, DynamoType) else value for name, value in last.items()}
        answers.append(pages)
    return tuple(answers)


@pytest.mark.parametrize("seed", range(6))
def test_queries_answer_as_moto_does_over_the_whole_table(dynamodb, seed):
    """Random items and Queries (the table, a string-keyed index projecting everything and the number-keyed
    keys-only `holds` index; every range operator, both orders, limits, every page)."""
    chance = random.Random(seed)
    letters = "abcde"
    for _n in range(150):
        item = _item(f"p{chance.choice(letters)}", f"s{chance.randrange(40):02}")
        if chance.random() < 0.8:
            item.update(uk={"S": chance.choice(letters)}, start_key={"S": f"k{chance.randrange(10)}"})
        if chance.random() < 0.3:  # numbers sort by value, not as text: 9 < 10 < 100
            item.update(hk={"S": chance.choice("ab")}, hexp={"N": str(chance.choice([9, 10, 100, 2, 25, 250]))})
        dynamodb.put_item(TableName=TABLE, Item=item)
        if chance.random() < 0.2:
            dynamodb.delete_item(TableName=TABLE, Key=_key(f"p{chance.choice(letters)}", f"s{chance.randrange(40):02}"))
        if chance.random() < 0.2:
            dynamodb.update_item(
                TableName=TABLE,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET uk = :r",
                ExpressionAttributeValues={":r": {"S": chance.choice(letters)}},
            )
        if chance.random() < 0.1:
            dynamodb.update_item(
                TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]}, UpdateExpression="REMOVE hk, hexp"
            )
    table = _table()
    answered = set()  # where a Query found something (the comparison must not be of empty answers only)
    for _ in range(60):
        where = chance.choice(["table", "by_user", "holds"])
        comparison = chance.choice([None, "=", "<", "<=", ">", ">=", "BETWEEN", "BEGINS_WITH"])
        if where == "holds":
            index_name, hash_name, range_name = "holds", "hk", "hexp"
            hash_value = {"S": chance.choice("abz")}
            comparison = None if comparison == "BEGINS_WITH" else comparison
            bound = [{"N": str(chance.choice([1, 2, 9, 10, 11, 25, 99, 100, 250, 1000]))} for _ in range(2)]
            bound.sort(key=lambda value: int(value["N"]))
        else:
            index_name, hash_name, range_name, prefix, width = (
                ("by_user", "uk", "start_key", "k", 1) if where == "by_user" else (None, "pk", "sk", "s", 2)
            )
            hash_value = {"S": ("" if index_name else "p") + chance.choice(letters + "z")}
            bound = [
                {"S": value}
                for value in sorted(f"{prefix}{chance.randrange(12 if index_name else 42):0{width}}" for _ in range(2))
            ]
        if comparison == "BEGINS_WITH":
            values = [{"S": bound[0]["S"][:-1]}]
        else:
            values = {None: [], "BETWEEN": bound}.get(comparison, bound[:1])
        limit = chance.choice([None, 1, 2, 3, 7, 50])
        patched, moto = _query_both_ways(
            table,
            index_name,
            hash_name,
            hash_value,
            range_name,
            comparison,
            [DynamoType(value) for value in values],
            limit,
            chance.random() < 0.5,
        )
        assert patched == moto, (index_name, hash_value, comparison, values, limit)
        if any(items for items, _, _ in patched):
            answered.add(where)
    assert answered == {"table", "by_user", "holds"}


def test_the_server_keeps_a_connection_alive_across_dynamodb_calls():
    """Each call on a new TCP connection (and a new thread in the server) cost `make serve` a third
    of a reserve; the app's botocore client keeps its connections, so the server must too."""
    from devserver.dynamodb import EmbeddedDynamoDB

    server = EmbeddedDynamoDB().start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
        ports = set()
        for target, body in [("ListTables", b"{}"), ("DescribeTable", b'{"TableName": "none"}'), ("ListTables", b"{}")]:
            connection.request(
                "POST",
                "/",
                body=body,
                headers={
                    "X-Amz-Target": f"DynamoDB_20120810.{target}",
                    "Content-Type": "application/x-amz-json-1.0",
                    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20261126/us-east-1/dynamodb/aws4_request, "
                    "SignedHeaders=host, Signature=0",
                },
            )
            answer = connection.getresponse()
            assert answer.status == (200 if target == "ListTables" else 400), answer.read()
            assert answer.getheader("Connection") != "close"
            answer.read()
            ports.add(connection.sock.getsockname()[1])
        assert len(ports) == 1
        connection.close()
    finally:
        server.stop()


@pytest.fixture
def embedded():
    """A DynamoDB client of the embedded server (in a thread of this process) with the table of infra/, and
    the moto table behind it: the server packs the items at rest after each call."""
    from devserver.dynamodb import FAKE_CREDENTIALS, EmbeddedDynamoDB, create_table

    server = EmbeddedDynamoDB().start()
    name = f"packed-{next(_TABLE_NUMBERS)}"  # moto's backends outlive the server in this process
    try:
        with pytest.MonkeyPatch.context() as patch:
            for variable, value in FAKE_CREDENTIALS.items():
                patch.setenv(variable, value)
            create_table(name, server.endpoint_url)
            client = boto3.client("dynamodb", endpoint_url=server.endpoint_url)
        yield client, name, dynamodb_backends["123456789012"]["us-east-1"].get_table(name)
        client.update_table(TableName=name, DeletionProtectionEnabled=False)
        client.delete_table(TableName=name)
    finally:
        server.stop()


_TABLE_NUMBERS = itertools.count()

EVERY_KIND = {
    "s": {"S": "text é"},
    "n": {"N": "-12"},
    "b": {"B": b"\x00\xffbytes"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"nested": {"L": [{"S": "x"}, {"N": "1"}, {"M": {}}, {"NULL": True}]}, "flag": {"BOOL": False}}},
    "l": {"L": []},
    "null": {"NULL": True},
    "bool": {"BOOL": True},
}


def test_items_at_rest_are_packed_and_read_back_exactly(embedded):
    """moto held an object per attribute (about 4.3 KiB for a reservation's 19 attributes); the embedded
    server keeps each item it has answered for as one packed string, and every read gives what was written."""
    from devserver.packed_items import _PackedItem

    client, name, table = embedded
    client.put_item(TableName=name, Item={**_item("A", "1", uk="room", start_key="k1"), **EVERY_KIND})
    client.put_item(TableName=name, Item=_item("A", "2", uk="room", start_key="k2"))
    assert {type(item) for partition in table.items.values() for item in partition.values()} == {_PackedItem}
    assert all(item._unpacked is None for partition in table.items.values() for item in partition.values())

    read = client.get_item(TableName=name, Key=_key("A", "1"), ConsistentRead=True)["Item"]
    assert read == {**_item("A", "1", uk="room", start_key="k1"), **EVERY_KIND}
    client.update_item(  # in place, on a packed item: kept
        TableName=name,
        Key=_key("A", "1"),
        UpdateExpression="SET m.flag = :t, n = n + :one REMOVE bs",
        ExpressionAttributeValues={":t": {"BOOL": True}, ":one": {"N": "1"}},
    )
    read = client.get_item(TableName=name, Key=_key("A", "1"), ConsistentRead=True)["Item"]
    assert read["m"]["M"]["flag"] == {"BOOL": True} and read["n"] == {"N": "-11"} and "bs" not in read
    queried = client.query(
        TableName=name,
        IndexName="by_user",
        KeyConditionExpression="uk = :u",
        ExpressionAttributeValues={":u": {"S": "room"}},
    )["Items"]
    assert [item["sk"]["S"] for item in queried] == ["1", "2"] and queried[0] == read
    assert all(item._unpacked is None for partition in table.items.values() for item in partition.values())


def test_a_cancelled_transaction_over_packed_items_leaves_them_as_before(embedded):
    client, name, table = embedded
    client.put_item(TableName=name, Item={**_item("T", "1"), "ver": {"N": "1"}, **EVERY_KIND})
    client.put_item(TableName=name, Item=_item("T", "3"))
    before = scan_all(client, name)
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": name,
                        "Key": _key("T", "1"),
                        "UpdateExpression": "SET ver = ver + :one, m.flag = :t",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": {"BOOL": True}},
                    }
                },
                {"Put": {"TableName": name, "Item": _item("T", "2")}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": _key("T", "3"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert scan_all(client, name) == before
    assert all(item._unpacked is None for partition in table.items.values() for item in partition.values())


def test_an_item_over_the_size_limit_is_refused_as_dynamodb_does(dynamodb):
    """moto measured the whole item again for each attribute it set; the item is now measured once."""
    with pytest.raises(dynamodb.exceptions.ClientError, match="Item size has exceeded the maximum allowed size"):
        dynamodb.put_item(TableName=TABLE, Item={**_item("big", "1"), "blob": {"S": "x" * 410_000}})
    dynamodb.put_item(TableName=TABLE, Item={**_item("big", "2"), "blob": {"S": "x" * 390_000}})
    assert len(scan_all(dynamodb)) == 1


ODD_VALUES = [{"S": "a", "N": "1"}, {}, {"S": None}, {"X": "unknown member"}, {"M": {"inner": {"S": "a", "N": "1"}}}]


@pytest.mark.parametrize("value", [*EVERY_KIND.values(), *ODD_VALUES])
def test_attribute_values_are_read_and_written_as_moto_does(value, monkeypatch):
    """The direct AttributeValue reader and writer give what moto's generic ones give, odd values too."""
    from moto.core.parse import BaseJSONParser, JSONParser
    from moto.core.responses import get_service_model
    from moto.core.serialize import BaseJSONSerializer, JSONSerializer

    model = get_service_model("dynamodb")
    put, query = model.operation_model("PutItem"), model.operation_model("Query")
    wire = {
        "TableName": TABLE,
        "Item": {"v": json.loads(json.dumps(value, default=lambda raw: base64.b64encode(raw).decode()))},
    }
    request = {"method": "POST", "headers": {}, "body": json.dumps(wire).encode(), "url_path": "/"}
    answer = {"Items": [{"v": value, "w": {"S": "plain"}}], "Count": 1, "ScannedCount": 1}

    def both_ways() -> tuple:
        return JSONParser(put).parse(request), JSONSerializer(query).serialize(answer)["body"]

    patched = both_ways()
    for owner, name in [
        (BaseJSONParser, "_parse_structure"),
        (BaseJSONSerializer, "_serialize_type_structure"),
        (BaseJSONSerializer, "_serialize_type_map"),
    ]:
        monkeypatch.setattr(owner, name, moto_patches.original(owner, name))
    assert patched == both_ways()


def test_a_bad_request_or_a_failing_call_leaves_the_server_serving(monkeypatch):
    """The embedded DynamoDB answers in one thread: nothing a request does may stop it."""
    import socket

    from devserver.dynamodb import EmbeddedDynamoDB

    server = EmbeddedDynamoDB().start()
    try:
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            assert raw.recv(200).startswith(b"HTTP/1.1 400 ")
        monkeypatch.setattr(EmbeddedDynamoDB, "_through_wsgi", lambda self, environ: 1 / 0)
        connection = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
        connection.request("GET", "/moto-api/")
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (500, b"internal error")
        monkeypatch.undo()
        connection.request("GET", "/moto-api/data.json")
        assert connection.getresponse().status == 200
        connection.close()

        accept = socket.socket.accept  # a client gone before it was accepted, then one that resets
        aborted = []

        def aborts_once(listener):
            if not aborted:
                aborted.append(True)
                raise ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort")
            return accept(listener)

        monkeypatch.setattr(socket.socket, "accept", aborts_once)
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=5)
        connection.request("GET", "/moto-api/data.json")
        assert connection.getresponse().status == 200 and aborted
        connection.close()
    finally:
        server.stop()


UPDATE_EXPRESSIONS = [
    "SET ver = :next",
    "SET ver = ver + :one, busy.#s0 = :s0, busy.#s1 = :s1 REMOVE busy.#r0",
    "SET a[2] = list_append(if_not_exists(a, :empty), :more), #b = :b - :c ADD n :one DELETE s :gone",
]


@pytest.mark.parametrize("expression", UPDATE_EXPRESSIONS)
def test_an_update_expression_tree_is_copied_as_deepcopy_copies_it(expression):
    """The Validator's copy of a kept tree: the same tree as copy.deepcopy's, sharing no node with the original."""
    import copy

    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    def shape(node, parent=None) -> tuple:
        assert node.parent is parent
        children = [shape(child, node) if isinstance(child, Node) else child for child in node.children or []]
        return type(node).__name__, node.type, tuple(children) if node.children is not None else None

    def nodes(node) -> list:
        return [node, *(found for child in node.children or [] if isinstance(child, Node) for found in nodes(child))]

    tree = UpdateExpressionParser.make(expression)
    copied = moto_patches.validator_deepcopy(tree)
    assert shape(copied) == shape(copy.deepcopy(tree)) == shape(tree)
    assert not {id(node) for node in nodes(copied)} & {id(node) for node in nodes(tree)}


def test_a_scan_page_unpacks_only_what_it_answers(embedded, monkeypatch):
    """A Scan's later page skipped to its start by comparing every item before it: by their keys now, so the
    embedded server unpacks only the items of the page (and the one that tells the page is full)."""
    from devserver import packed_items

    client, name, _ = embedded
    for n in range(40):
        client.put_item(TableName=name, Item=_item(f"S{n:02}", "1", payload="x" * 20))
    first = client.scan(TableName=name, Limit=30)
    unpacked = []
    real_unpack = packed_items._unpack
    monkeypatch.setattr(packed_items, "_unpack", lambda packed: unpacked.append(packed) or real_unpack(packed))
    rest = client.scan(TableName=name, Limit=30, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert len(first["Items"]) + len(rest["Items"]) == 40 and "LastEvaluatedKey" not in rest
    assert {item["pk"]["S"] for item in first["Items"] + rest["Items"]} == {f"S{n:02}" for n in range(40)}
    assert len(unpacked) <= len(rest["Items"]) + 1


PLAIN_SETS = [  # (expression, names, values): moto's validator and the plain-SET one must agree, errors too
    ("SET ver = :next", {}, {":next": {"N": "2"}}),
    (
        "SET ver = :one, busy = :busy, dense = :dense",
        {},
        {":one": {"N": "1"}, ":busy": {"M": {}}, ":dense": {"BOOL": True}},
    ),
    ("set #n = :n,note=:s", {"#n": "name"}, {":n": {"L": [{"S": "a"}, {"NULL": True}]}, ":s": {"S": ""}}),
    ("SET uk = :u", {}, {":u": {"S": "other"}}),  # an index key: moto's validator
    ("SET pk = :u", {}, {":u": {"S": "other"}}),  # the table's key: refused
    ("SET ver = :a, ver = :b", {}, {":a": {"N": "1"}, ":b": {"N": "2"}}),  # the same attribute twice
    ("SET size = :a", {}, {":a": {"N": "1"}}),  # a reserved word
    ("SET #missing = :a", {"#other": "x"}, {":a": {"N": "1"}}),
    ("SET ver = :missing", {}, {":a": {"N": "1"}}),
    ("SET tags = :s", {}, {":s": {"SS": ["a"]}}),  # a set: moto's validator
]


def _apply_updates(dynamodb) -> list:
    outcomes = []
    for number, (expression, names, values) in enumerate(PLAIN_SETS):
        key = _key("U", str(number))
        dynamodb.put_item(TableName=TABLE, Item={**key, "ver": {"N": "1"}, "uk": {"S": "room"}})
        arguments = {"TableName": TABLE, "Key": key, "UpdateExpression": expression, "ReturnValues": "ALL_NEW"}
        if names:
            arguments["ExpressionAttributeNames"] = names
        arguments["ExpressionAttributeValues"] = values
        try:
            outcomes.append(dynamodb.update_item(**arguments)["Attributes"])
        except dynamodb.exceptions.ClientError as error:
            outcomes.append(error.response["Error"])
    return outcomes


def test_a_plain_set_is_validated_and_applied_as_moto_does(dynamodb, monkeypatch):
    from moto.dynamodb import models

    plain = _apply_updates(dynamodb)
    assert plain[0]["ver"] == {"N": "2"} and plain[4]["Code"] == "ValidationException"
    for name in ("UpdateExpressionValidator", "UpdateExpressionExecutor"):
        monkeypatch.setattr(models, name, moto_patches.original(models, name))
    assert _apply_updates(dynamodb) == plain


def test_stop_when_the_thread_has_already_seen_it_coming():
    """stop() sets its flag, then wakes the thread; another event may wake the thread first, and it ends
    before the wake-up is sent (which then failed: the thread had closed the socket it is sent on)."""
    import socket

    from devserver.one_thread_http import OneThreadHTTPServer

    server = OneThreadHTTPServer("127.0.0.1", 0, lambda request: (200, [], b"")).start()
    server._stopping = True
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # wakes the thread: it ends
    except (ConnectionRefusedError, ConnectionResetError):
        pass  # it had already seen the flag (before its first wait, or before accepting this connection)
    server._thread.join(timeout=5)
    assert not server._thread.is_alive()
    server.stop()
