"""An in-process moto DynamoDB holding the table of infra/, with the app pointed at it."""

import contextlib
import json
import pathlib

import boto3
import pytest
from moto import mock_aws

from devserver.dynamodb import FAKE_CREDENTIALS, create_table
from ops.checker import scan_items

ROOT = pathlib.Path(__file__).resolve().parent.parent
# chalice.test.Client applies the dev stage's environment from .chalice/config.json
TABLE = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]["environment_variables"][
    "RESERVATION_TABLE"
]
# what the local server sets too: a page-token key of its own, and a change feed without delay
LOCAL_ENVIRONMENT = {"PAGE_TOKEN_SECRET": "tests and benchmarks", "FEED_SETTLE_MS": "0"}


@contextlib.contextmanager
def moto_table(**environment):
    """Yield a DynamoDB client of an in-process moto with the table of infra/; the app's
    default_api (rebuilt) uses it. `environment` adds or overrides variables meanwhile."""
    from chalicelib.runtime import default_api

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**FAKE_CREDENTIALS, **LOCAL_ENVIRONMENT, **environment}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
        patch.setenv("RESERVATION_TABLE", TABLE)
        with mock_aws():
            create_table(TABLE)
            client = boto3.client("dynamodb")
            default_api.cache_clear()
            try:
                yield client
            finally:
                default_api.cache_clear()


def scan_all(client, table: str = TABLE) -> list:
    """Every item of the table, strongly consistent (the checker's own scan)."""
    return list(scan_items(client, table))
