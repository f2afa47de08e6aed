"""Cold start: a fresh process that imports the Lambda entry point and serves the first reserve,
as deployed (app.py and chalicelib/ copied aside with chalicelib's bytecode compiled as
docs/deploy.md has it, checked-hash .pyc files), against the floor, the least any Lambda of this design can do: a fresh process that imports
botocore, creates the DynamoDB client (same config as the app) and imports protobuf and the
generated messages. DynamoDB is canned (a before-call handler answers the reserve's BatchGetItem,
Query and TransactWriteItems by operation: the first two run at once, so botocore's Stubber, which
expects one order, cannot serve them), so no network is involved.

    python -m bench.cold_start [--runs 9]
"""

import argparse
import compileall
import contextlib
import os
import pathlib
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

FLOOR = """
import botocore.session
from botocore.config import Config
config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=200)
botocore.session.get_session().create_client("dynamodb", config=config)
from google.protobuf import message, timestamp_pb2
from chalicelib.gen import reservation_pb2
"""
GOAL = 1.2

FIRST_RESERVE = """
import app
from botocore.awsrequest import AWSResponse
from chalicelib.runtime import default_api
from harness.lambda_events import proxy_event, reserve_request
CANNED = {"BatchGetItem": {"Responses": {"t": []}}, "Query": {"Items": [], "Count": 0, "ScannedCount": 0},
          "TransactWriteItems": {}}
def canned(model, **_):
    return AWSResponse("http://canned", 200, {}, None), CANNED[model.name]
default_api().reservations.store.client.meta.events.register_first("before-call.dynamodb", canned)
answer = app.app(proxy_event("reserve", reserve_request()), None)
assert answer["statusCode"] == 200, answer
"""


@contextlib.contextmanager
def _as_deployed():
    """A directory holding app.py and chalicelib/ as the Lambda package does, bytecode included."""
    with tempfile.TemporaryDirectory() as directory:
        shipped = pathlib.Path(directory)
        shutil.copy(ROOT / "app.py", shipped / "app.py")
        shutil.copytree(ROOT / "chalicelib", shipped / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(
            shipped / "chalicelib", quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        yield shipped


def _seconds(code: str, shipped: pathlib.Path) -> float:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{shipped}{os.pathsep}{ROOT}",  # the harness (canned DynamoDB) from the checkout
        "RESERVATION_TABLE": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=shipped, env=environment, check=True)
    return time.perf_counter() - began


IMPORT_APP = """
import app
"""


def run(runs: int = 9) -> dict:
    floor, imported, first = [], [], []
    with _as_deployed() as shipped:
        for _ in range(runs):  # interleaved, so that machine noise hits all alike
            floor.append(_seconds(FLOOR, shipped))
            imported.append(_seconds(IMPORT_APP, shipped))
            first.append(_seconds(FIRST_RESERVE, shipped))
    result = {
        "floor_ms": statistics.median(floor) * 1000,
        "import_app_ms": statistics.median(imported) * 1000,
        "first_reserve_ms": statistics.median(first) * 1000,
    }
    result["ratio"] = result["first_reserve_ms"] / result["floor_ms"]
    print(f"cold start, median of {runs} fresh processes each (interleaved):")
    print(
        f"  floor: import botocore, create the DynamoDB client, import protobuf + chalicelib.gen  "
        f"{result['floor_ms']:.0f} ms"
    )
    print(
        f"  import app (the Lambda entry point) alone                                            "
        f"{result['import_app_ms']:.0f} ms"
    )
    print(
        f"  import app + serve the first reserve (API Gateway event in, response out)            "
        f"{result['first_reserve_ms']:.0f} ms"
    )
    print(f"  ratio first reserve / floor {result['ratio']:.2f} (goal <= {GOAL})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    run(parser.parse_args().runs)
