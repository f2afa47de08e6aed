"""What AWS runs beside the API, run by make serve: the hold sweep and the change-feed push.

On AWS a schedule calls app.sweep_expired_holds every minute and the table's
DynamoDB stream triggers app.push_changes, which publishes each change event on
EventBridge. Here two daemon threads do the same with the same code: the sweep
calls ReservationService.sweep_expired, and the pump reads the embedded table's
stream and hands its records to chalicelib.publish, printing (on stderr) each
event it would publish instead of sending it.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

import boto3

from chalicelib.publish import entries_from_records
from chalicelib.runtime import default_api

LOCAL_BUS = "my-reservation-local"


def every(seconds: float, work, name: str) -> threading.Thread:
    """Run work() every `seconds` in a daemon thread; a failing round is reported and the next goes on."""

    def loop():
        while True:
            time.sleep(seconds)
            try:
                work()
            except Exception as error:
                print(f"my-reservation: {name} failed: {error!r}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=loop, daemon=True, name=name)
    thread.start()
    return thread


def start_sweep(seconds: float) -> threading.Thread:
    return every(seconds, lambda: default_api().reservations.sweep_expired(), "hold sweep")


class StreamPump:
    """Follows every shard of the table's stream from now on; publish(entries) gets each batch.

    GetRecords is read as the Lambda trigger gets its records, DynamoDB JSON as sent: botocore's parse of
    every image of every record (most are not change events) was a quarter of the local server's time.
    """

    def __init__(self, endpoint_url: str, table_name: str, publish=None):
        settings = dict(
            endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
        )
        self.streams = boto3.client("dynamodbstreams", **settings)
        self.arn = boto3.client("dynamodb", **settings).describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self.connection = http.client.HTTPConnection(urllib.parse.urlsplit(endpoint_url).netloc, timeout=30)
        self.publish = publish or print_entries
        self.iterators = {}

    def _get_records(self, iterator: str) -> dict:
        self.connection.request(
            "POST",
            "/",
            body=json.dumps({"ShardIterator": iterator}),
            headers={
                "X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        answer = self.connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GetRecords answered {answer.status}: {body[:300].decode(errors='replace')}")
        return json.loads(body)

    def _shards(self) -> None:
        for shard in self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
                )["ShardIterator"]

    def pump(self) -> None:
        """One round: every record since the last round, in order per shard."""
        self._shards()
        for shard, iterator in list(self.iterators.items()):
            while iterator:
                answer = self._get_records(iterator)
                if answer["Records"]:
                    self.publish(entries_from_records(answer["Records"], LOCAL_BUS))
                iterator = answer.get("NextShardIterator")
                if not answer["Records"]:
                    break
            self.iterators[shard] = iterator


def print_entries(entries: list) -> None:
    for entry in entries:
        print(f"my-reservation: EventBridge {entry['DetailType']} {entry['Detail']}", file=sys.stderr, flush=True)


def start_pump(endpoint_url: str, table_name: str, seconds: float) -> threading.Thread:
    pump = StreamPump(endpoint_url, table_name)
    pump.pump()  # takes its iterators now: what is written from here on is published
    return every(seconds, pump.pump, "change-feed push")
