"""Deployability, checked offline: templates lint clean, IAM is least-privilege, the package is lean."""
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import boto3
import pytest
from chalice.test import Client

from chalicelib.gen import reservation_pb2 as pb
from devserver.dynamodb import FAKE_CREDENTIALS
from tests.conftest import ROOT, moto_table
from tests.helpers import reservation

BIN = pathlib.Path(sys.executable).parent
CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
# What chalicelib.store calls (TransactWriteItems is authorised by the per-item actions).
NEEDED_ACTIONS = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                  "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan"}
# chalice adds its own small runtime (chalice/app.py) to every package; the rest must stay out.
DEV_ONLY_PACKAGES = ("grpc", "moto", "pytest", "hypothesis", "cfnlint", "boto3", "botocore", "chalice/cli/", "chalice/deploy/", "connectrpc")


def cfn_lint(path: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cfn-lint"), str(path)], capture_output=True, text=True, timeout=300)


def test_table_template_lints_clean_and_has_what_production_needs():
    linted = cfn_lint(ROOT / "infra" / "table.json")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    table = json.loads((ROOT / "infra" / "table.json").read_text())["Resources"]["ReservationTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["DeletionProtectionEnabled"] is True and table["DeletionPolicy"] == "Retain"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert properties["SSESpecification"]["SSEEnabled"] is True


def policy_problems(stage: str) -> list:
    """Every way the stage's IAM policy is broader than the app needs."""
    policy = json.loads((ROOT / ".chalice" / CONFIG["stages"][stage]["iam_policy_file"]).read_text())
    table = CONFIG["stages"][stage]["environment_variables"]["RESERVATION_TABLE"]
    allowed_resources = {f"arn:aws:dynamodb:*:*:table/{table}", f"arn:aws:dynamodb:*:*:table/{table}/index/*",
                         f"arn:aws:logs:*:*:log-group:/aws/lambda/my-reservation-{stage}",
                         f"arn:aws:logs:*:*:log-group:/aws/lambda/my-reservation-{stage}:*"}
    problems, granted = [], set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        problems += [f"wildcard action {a}" for a in actions if "*" in a]
        problems += [f"resource {r} is not the stage's table, its indexes or its log group"
                     for r in resources if r not in allowed_resources]
        granted.update(actions)
    problems += [f"unneeded action {a}" for a in granted - NEEDED_ACTIONS if not a.startswith("logs:")]
    problems += [f"missing action {a}" for a in NEEDED_ACTIONS - granted]
    return problems


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_iam_policy_is_least_privilege(stage):
    assert CONFIG["autogen_policy"] is False
    assert policy_problems(stage) == []


def test_the_policy_check_catches_wildcards(tmp_path, monkeypatch):
    broad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": "*"}]}
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "broad.json").write_text(json.dumps(broad))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setitem(CONFIG["stages"]["dev"], "iam_policy_file", "broad.json")
    problems = policy_problems("dev")
    assert "wildcard action dynamodb:*" in problems and any(p.startswith("resource *") for p in problems)


def test_infra_stack_in_moto_cloudformation_serves_the_app():
    """moto_table deploys infra/table.json through CloudFormation; then a whole scenario."""
    with moto_table() as dynamodb:
        stack = boto3.client("cloudformation").describe_stacks()["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        table = dynamodb.describe_table(TableName=CONFIG["stages"]["dev"]["environment_variables"][
            "RESERVATION_TABLE"])["Table"]
        assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {"by_resource", "by_user"}
        import app

        with Client(app.app) as client:
            def call(method, request, answer_type):
                answer = client.http.post(f"/reservation.ReservationService/{method}",
                                          headers={"content-type": "application/proto"},
                                          body=request.SerializeToString())
                return answer.status_code, answer_type.FromString(answer.body) if answer.status_code == 200 \
                    else json.loads(answer.body)

            status, made = call("reserve", pb.ReserveRequest(reservation=reservation()), pb.ReserveResponse)
            assert status == 200
            status, error = call("reserve", pb.ReserveRequest(reservation=reservation(user="bob")), pb.ReserveResponse)
            assert (status, error["code"]) == (400, "failed_precondition")
            status, page = call("filter", pb.FilterRequest(query=pb.QueryRequest(resource_id="room-1")),
                                pb.FilterResponse)
            assert [r.id for r in page.reservations] == [made.reservation.id]
            assert call("cancel", pb.CancelRequest(id=made.reservation.id), pb.CancelResponse)[0] == 200
            assert call("reserve", pb.ReserveRequest(reservation=reservation(user="bob")), pb.ReserveResponse)[0] \
                == 200


@pytest.fixture(scope="module")
def prod_package(tmp_path_factory):
    """`chalice package --stage prod --merge-template infra/table.json` (downloads Lambda wheels from PyPI)."""
    out = tmp_path_factory.mktemp("package")
    environment = {**os.environ, **FAKE_CREDENTIALS, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    packaged = subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", "prod", "--merge-template", str(ROOT / "infra" / "table.json"),
         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    return out


def test_packaged_template_lints_clean_and_wires_everything(prod_package):
    template_path = prod_package / "sam.json"
    linted = cfn_lint(template_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    template = json.loads(template_path.read_text())
    resources = template["Resources"]
    assert resources["ReservationTable"]["Type"] == "AWS::DynamoDB::Table"
    function = resources["APIHandler"]["Properties"]
    assert function["Environment"]["Variables"]["RESERVATION_TABLE"] == "my-reservation-prod"
    assert function["MemorySize"] == 512 and function["Timeout"] == 20
    policy = json.loads((ROOT / ".chalice" / "policy-prod.json").read_text())
    assert function["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    assert [p["PolicyDocument"] for p in resources["ApiHandlerRole"]["Properties"]["Policies"]] == [policy]
    api = resources["RestAPI"]["Properties"]["DefinitionBody"]
    assert api["x-amazon-apigateway-binary-media-types"] == ["*/*"]
    operation = api["paths"]["/reservation.ReservationService/{method}"]["post"]
    assert operation["security"] == [{"sigv4": []}]
    assert api["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_lambda_package_carries_only_runtime_needs(prod_package):
    with zipfile.ZipFile(prod_package / "deployment.zip") as package:
        names = package.namelist()
    assert "app.py" in names and "chalicelib/store.py" in names
    assert any(name.startswith("google/protobuf/") for name in names)
    assert not [name for name in names if name.startswith(DEV_ONLY_PACKAGES) or name.startswith("rsvp/")]
    size = (prod_package / "deployment.zip").stat().st_size
    print(f"\nLambda deployment.zip: {size / 1024:.0f} KiB, {len(names)} files")
    assert size < 5 * 1024 * 1024
