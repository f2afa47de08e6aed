"""Deployability, checked offline (docs/deploy.md): the templates of infra/ lint clean and deploy into
moto's CloudFormation, `chalice package` of both stages (with the merge template of path (b)) lints
clean and wires the schedule, the stream and the stack values into the functions, every function's
IAM policy grants exactly what its code calls, and the Lambda package carries only runtime needs.

Self-contained on purpose: it uses devserver.dynamodb and moto directly, not tests/conftest.py.
"""

import ast
import json
import pathlib
import re
import subprocess
import sys
import zipfile

import boto3
import botocore.session
import pytest
from botocore.config import Config
from moto import mock_aws

from chalicelib import layout
from devserver.dynamodb import FAKE_CREDENTIALS, create_table
from infra import stage as infra

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
STAGES = ("dev", "prod")
TEMPLATES = (ROOT / "infra" / "table.json", ROOT / "infra" / "services.json")
FUNCTIONS = ("api_handler", "sweep_expired_holds", "push_changes")
# What Lambda's event source mapping calls with the function's role to read the table's stream.
STREAM_POLLING = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}
LOG_WRITING = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
# IAM has no TransactWriteItems action: each action of the transaction needs its item action.
TRANSACTION_KINDS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Never in the Lambda package: dev and test tools, the SDK the runtime brings, and the repo's other folders.
NOT_IN_PACKAGE = (
    "grpc",
    "moto",
    "pytest",
    "_pytest",
    "hypothesis",
    "boto3",
    "botocore",
    "s3transfer",
    "cfnlint",
    "chalice/cli/",
    "chalice/deploy/",
    "connectrpc",
    "harness/",
    "ops/",
    "devserver/",
    "tests/",
    "bench/",
    "infra/",
    "rsvp/",
    "scripts/",
    "protos/",
)


def cfn_lint(*paths: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cfn-lint"), *map(str, paths)], check=False, capture_output=True, text=True, timeout=600
    )


# ---- templates -------------------------------------------------------------------------------------


def test_infra_templates_lint_clean():
    linted = cfn_lint(*TEMPLATES)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_table_template_keeps_what_production_needs_and_the_indexes_of_the_layout():
    table = json.loads(TEMPLATES[0].read_text())["Resources"]["ReservationTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["DeletionProtectionEnabled"] is True and table["DeletionPolicy"] == "Retain"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert {index["IndexName"] for index in properties["GlobalSecondaryIndexes"]} == {
        layout.BY_USER,
        layout.BY_TENANT,
        layout.HOLDS,
        layout.RESOURCES,
        layout.EVENTS_BY_USER,
        layout.EVENTS_BY_TENANT,
    }


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_names_what_infra_creates_for_it(stage):
    environment = CONFIG["stages"][stage]["environment_variables"]
    made = infra.names(stage)
    infra.check_names(stage)
    assert environment["RESERVATION_TABLE"] == made["table"] == f"my-reservation-{stage}"
    assert environment["EVENT_BUS_NAME"] == made["bus"]
    assert environment["RESERVATION_STREAM_ARN"].startswith(
        f"arn:aws:dynamodb:us-east-1:000000000000:table/{made['table']}/stream/"
    )
    assert f":secret:{made['secret']}-" in environment["PAGE_TOKEN_SECRET_ARN"]
    if stage == "prod":
        assert environment["TENANT_SOURCE"] == "principal" and environment["REQUIRE_IAM_AUTH"] == "true"
        assert environment["TENANT_MAP_PARAMETER"] == made["tenant_map"]
    else:
        assert environment["TENANT_SOURCE"] == "default" and "REQUIRE_IAM_AUTH" not in environment
        assert "TENANT_MAP_PARAMETER" not in environment


# ---- what the code calls --------------------------------------------------------------------------


def _sources() -> dict:
    """The modules the Lambda package runs: app.py and chalicelib/."""
    paths = [ROOT / "app.py", *sorted((ROOT / "chalicelib").glob("*.py"))]
    return {path.name: ast.parse(path.read_text(), str(path)) for path in paths}


def code_actions() -> set:
    """IAM actions of every AWS call the app's code makes: a method of a botocore client it creates
    (`create_client("<service>")`) called or passed on through an expression naming a client; a
    TransactWriteItems counts as the item actions of the action kinds chalicelib/dynamo.py builds."""
    trees = _sources()
    session = botocore.session.get_session()
    services = {
        node.args[0].value
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "create_client"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    operations = {}
    for service in services:
        model = session.get_service_model(service)
        operations.update({botocore.xform_name(name): (model.signing_name, name) for name in model.operation_names})
    used = {
        operations[node.attr]
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in operations and "client" in ast.unparse(node.value)
    }
    actions = {f"{prefix}:{name}" for prefix, name in used if name != "TransactWriteItems"}
    if ("dynamodb", "TransactWriteItems") in used:
        kinds = {
            key.value
            for node in ast.walk(trees["dynamo.py"])
            if isinstance(node, ast.Dict)
            for key in node.keys
            if isinstance(key, ast.Constant) and key.value in TRANSACTION_KINDS
        }
        actions |= {TRANSACTION_KINDS[kind] for kind in kinds}
    return actions


def test_code_actions_are_found():
    """The scan sees every kind of call the code makes (a blind scan would pass any policy)."""
    assert {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "events:PutEvents",
    } == code_actions()


def _store_methods_by_index() -> dict:
    """{index: public DynamoStore methods that query it, directly or through a helper method}"""
    tree = _sources()["dynamo.py"]
    store = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "DynamoStore")
    methods = {node.name: node for node in store.body if isinstance(node, ast.FunctionDef)}
    indexes = {getattr(layout, name) for name in dir(layout) if name.isupper()} & set(table_index_names())
    direct, helpers = {}, {}
    for name, method in methods.items():
        attributes = [
            node for node in ast.walk(method) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        ]
        direct[name] = {
            getattr(layout, node.attr)
            for node in attributes
            if node.value.id == "layout" and getattr(layout, node.attr, None) in indexes
        }
        helpers[name] = {node.attr for node in attributes if node.value.id == "self" and node.attr in methods}
    reach = {name: set(direct[name]) for name in methods}
    for _ in methods:
        for name in methods:
            for helper in helpers[name]:
                reach[name] |= reach[helper]
    found = {}
    for name, used in reach.items():
        if not name.startswith("_"):
            for index in used:
                found.setdefault(index, set()).add(name)
    return found


def _callers(method: str) -> set:
    """Names of the functions of app.py and chalicelib (the store itself aside) that call `.method(`."""
    found = set()
    for module, tree in _sources().items():
        if module in ("dynamo.py", "ports.py"):
            continue
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
                        found.add(function.name)
    return found


def table_index_names() -> list:
    properties = json.loads(TEMPLATES[0].read_text())["Resources"]["ReservationTable"]["Properties"]
    return [index["IndexName"] for index in properties["GlobalSecondaryIndexes"]]


def api_indexes() -> set:
    """Indexes the API function queries: all the store queries but those only the sweep's methods use."""
    return {
        index
        for index, methods in _store_methods_by_index().items()
        if any(_callers(method) - {"sweep_expired"} or not _callers(method) for method in methods)
    }


def test_index_analysis_sees_the_store():
    by_index = _store_methods_by_index()
    assert by_index[layout.HOLDS] == {"expired_holds"} and _callers("expired_holds") == {"sweep_expired"}
    assert api_indexes() == set(table_index_names()) - {layout.HOLDS}


# ---- policies --------------------------------------------------------------------------------------


def policy_of(stage: str, function: str) -> dict:
    name = CONFIG["stages"][stage]["lambda_functions"][function]["iam_policy_file"]
    return json.loads((ROOT / ".chalice" / name).read_text())


def grants(policy: dict) -> set:
    """{(action, resource)} of an Allow-only policy."""
    found = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource"}
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        found |= {(action, resource) for action in actions for resource in resources}
    return found


# Wildcards a resource may carry: any region and account, any stream label of the table, the random
# suffix Secrets Manager gives a secret's ARN, the log streams of a log group. Nothing else.
ALLOWED_WILDCARDS = (r"^arn:aws:[a-z0-9-]+:\*:\*:", r"/stream/\*$", r"-\?{6}$", r":\*$")


def policy_problems(policy: dict) -> list:
    """Every wildcard action and every wildcard resource beyond ALLOWED_WILDCARDS."""
    problems = []
    for action, resource in sorted(grants(policy)):
        if "*" in action or "?" in action:
            problems.append(f"wildcard action {action}")
        stripped = resource
        for pattern in ALLOWED_WILDCARDS:
            stripped = re.sub(pattern, "", stripped)
        if "*" in stripped or "?" in stripped:
            problems.append(f"wildcard resource {resource} for {action}")
    return problems


def expected_grants(stage: str, function: str) -> set:
    """What each function's policy must grant, from the code's calls and the names infra creates."""
    made = infra.names(stage)
    table = f"arn:aws:dynamodb:*:*:table/{made['table']}"
    log_group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{infra.function_names(stage)[_logical(function)]}"
    logs = {(action, resource) for action in LOG_WRITING for resource in (log_group, log_group + ":*")}
    code = code_actions()
    if function == "api_handler":
        dynamodb = {action for action in code if action.startswith("dynamodb:")}
        found = {(action, table) for action in dynamodb}
        found |= {("dynamodb:Query", f"{table}/index/{index}") for index in api_indexes()}
        found.add(("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:*:*:secret:{made['secret']}-??????"))
        if CONFIG["stages"][stage]["environment_variables"]["TENANT_SOURCE"] == "principal":
            found.add(("ssm:GetParameter", f"arn:aws:ssm:*:*:parameter{made['tenant_map']}"))
        return found | logs
    if function == "sweep_expired_holds":
        return {grant for grant in grants(policy_of(stage, function)) if grant[0].startswith("dynamodb:")} | logs
    return (
        {(action, f"{table}/stream/*") for action in STREAM_POLLING}
        | {("events:PutEvents", f"arn:aws:events:*:*:event-bus/{made['bus']}")}
        | logs
    )


def _logical(function: str) -> str:
    return (
        "APIHandler"
        if function == "api_handler"
        else "".join(part[:1].upper() + part[1:] for part in function.split("_"))
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_has_its_own_least_privilege_policy(stage):
    assert CONFIG["autogen_policy"] is False and "iam_policy_file" not in CONFIG["stages"][stage]
    assert set(CONFIG["stages"][stage]["lambda_functions"]) == set(FUNCTIONS)
    assert "events:PutEvents" in code_actions()
    for function in FUNCTIONS:
        policy = policy_of(stage, function)
        assert policy_problems(policy) == [], function
        granted = grants(policy)
        unused = {action for action, _ in granted} - code_actions() - STREAM_POLLING - LOG_WRITING
        assert not unused, f"{function} is granted actions the code never calls: {unused}"
        assert granted == expected_grants(stage, function), function
    used = set().union(*({action for action, _ in grants(policy_of(stage, f))} for f in FUNCTIONS))
    unused_by_stage = {"ssm:GetParameter"} if stage == "dev" else set()
    assert code_actions() - used == unused_by_stage, "every call of the code is granted to some function"


def test_the_policy_check_catches_wildcards():
    broad = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": "*"},
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "arn:aws:events:*:*:event-bus/*"},
            {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "arn:aws:dynamodb:*:*:table/t/index/*"},
        ],
    }
    assert policy_problems(broad) == [
        "wildcard action dynamodb:*",
        "wildcard resource * for dynamodb:*",
        "wildcard resource arn:aws:dynamodb:*:*:table/t/index/* for dynamodb:Query",
        "wildcard resource arn:aws:events:*:*:event-bus/* for events:PutEvents",
    ]


class RecordingClient:
    """A DynamoDB client that records each call (operation, index, transaction action kinds)."""

    def __init__(self, client):
        self.client = client
        self.calls = []

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name.startswith("_") or name in ("exceptions", "meta") or not callable(attribute):
            return attribute

        def call(**arguments):
            self.calls.append((name, arguments))
            return attribute(**arguments)

        return call

    def grants(self, table_arn: str) -> set:
        found = set()
        for name, arguments in self.calls:
            if name == "transact_write_items":
                found |= {(TRANSACTION_KINDS[next(iter(action))], table_arn) for action in arguments["TransactItems"]}
            else:
                operation = self.client.meta.method_to_api_mapping[name]
                index = arguments.get("IndexName")
                found.add((f"dynamodb:{operation}", f"{table_arn}/index/{index}" if index else table_arn))
        return found


@pytest.fixture
def aws(monkeypatch):
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "PAGE_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


HOUR_NS = 3600 * 10**9
MINUTE_NS = 60 * 10**9


@pytest.mark.parametrize("stage", STAGES)
def test_the_sweep_policy_is_exactly_what_a_sweep_calls(stage, aws):
    """Expired holds of an exclusive resource and of a pool, swept with a recording client."""
    from chalicelib.dynamo import DynamoStore
    from chalicelib.model import Caller, Reservation, Resource, Status
    from chalicelib.runtime import build_api

    table = infra.names(stage)["table"]
    create_table(table)
    now = [(1_900_000_000 * 10**9 // HOUR_NS) * HOUR_NS]
    maker = build_api(DynamoStore(table, boto3.client("dynamodb")), clock=lambda: now[0])
    maker.resources.define("team-a", Resource("pool-1", capacity=3, step_ns=15 * MINUTE_NS))
    for resource_id in ("room-1", "pool-1"):
        maker.reservations.reserve(
            Caller("team-a"),
            Reservation("", "u1", resource_id, Status.PENDING, now[0] + HOUR_NS, now[0] + HOUR_NS + 30 * MINUTE_NS),
            hold_for_ns=5 * MINUTE_NS,
        )
    now[0] += 10 * MINUTE_NS
    recording = RecordingClient(boto3.client("dynamodb"))
    sweeper = build_api(DynamoStore(table, recording), clock=lambda: now[0])
    assert sweeper.reservations.sweep_expired() == 2
    called = recording.grants(f"arn:aws:dynamodb:*:*:table/{table}")
    granted = {grant for grant in grants(policy_of(stage, "sweep_expired_holds")) if grant[0].startswith("dynamodb:")}
    assert granted == called


# ---- chalice package (path (b)) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """`chalice package --stage <stage> --merge-template <infra/stage.py merge-template <stage>>`, both stages
    (downloads the Lambda wheels of requirements.txt from PyPI unless chalice has them cached)."""
    import os

    out = {}
    environment = {**os.environ, **FAKE_CREDENTIALS, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for stage in STAGES:
        folder = tmp_path_factory.mktemp(f"package-{stage}")
        merge = folder / "infra.json"
        merge.write_text(json.dumps(infra.merge_template(stage), indent=2))
        made = subprocess.run(
            [str(BIN / "chalice"), "package", "--stage", stage, "--merge-template", str(merge), str(folder / "out")],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=environment,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        out[stage] = folder / "out"
    return out


def test_packaged_templates_lint_clean(packages):
    linted = cfn_lint(*(packages[stage] / "sam.json" for stage in STAGES))
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_packaged_template_wires_schedule_stream_and_stack_values(packages, stage):
    template = json.loads((packages[stage] / "sam.json").read_text())
    resources = template["Resources"]
    table = json.loads(TEMPLATES[0].read_text())["Resources"]["ReservationTable"]
    services = json.loads(TEMPLATES[1].read_text())["Resources"]
    assert resources["ReservationTable"] == table
    assert {name: resources[name] for name in services} == services
    assert {name: spec["AllowedValues"] for name, spec in template["Parameters"].items()} == {
        name: [value] for name, value in infra.parameters(stage).items()
    }
    assert {"StreamArn", "EventBusName", "EventBusArn", "PageTokenSecretArn", "TenantMapParameterName"} <= set(
        template["Outputs"]
    )
    environment = CONFIG["stages"][stage]["environment_variables"]
    stack_values = {key: value for key, (value, _) in infra.FROM_STACKS.items() if key in environment}
    assert {"RESERVATION_STREAM_ARN", "PAGE_TOKEN_SECRET_ARN"} <= set(stack_values)
    for function in FUNCTIONS:
        properties = resources[_logical(function)]["Properties"]
        assert properties["FunctionName"] == infra.function_names(stage)[_logical(function)]
        assert properties["Environment"]["Variables"] == {**environment, **stack_values}
        assert properties["MemorySize"] == 512 and properties["Timeout"] == 20
        role = properties["Role"]["Fn::GetAtt"][0]
        assert [p["PolicyDocument"] for p in resources[role]["Properties"]["Policies"]] == [policy_of(stage, function)]
    roles = [resources[_logical(f)]["Properties"]["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS]
    assert len(set(roles)) == len(FUNCTIONS), "one role per function"

    sweep = resources["SweepExpiredHolds"]["Properties"]
    assert sweep["Handler"] == "app.sweep_expired_holds"
    assert [event["Properties"]["Schedule"] for event in sweep["Events"].values() if event["Type"] == "Schedule"] == [
        "rate(1 minute)"
    ]
    push = resources["PushChanges"]["Properties"]
    assert push["Handler"] == "app.push_changes"
    (source,) = push["Events"].values()
    assert source["Type"] == "DynamoDB"
    assert source["Properties"]["Stream"] == {"Fn::GetAtt": ["ReservationTable", "StreamArn"]}
    assert source["Properties"]["StartingPosition"] == "TRIM_HORIZON"

    api = resources["RestAPI"]["Properties"]["DefinitionBody"]
    assert api["x-amazon-apigateway-binary-media-types"] == ["*/*"]
    operation = api["paths"]["/reservation.ReservationService/{method}"]["post"]
    if stage == "prod":
        assert operation["security"] == [{"sigv4": []}]
        assert api["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    else:
        assert "security" not in operation


def test_lambda_package_carries_only_runtime_needs(packages):
    for stage in STAGES:
        with zipfile.ZipFile(packages[stage] / "deployment.zip") as package:
            names = package.namelist()
        assert "app.py" in names and "chalicelib/dynamo.py" in names and "chalicelib/publish.py" in names
        assert any(name.startswith("google/protobuf/") for name in names)
        assert [name for name in names if name.startswith(NOT_IN_PACKAGE)] == []
        size = (packages[stage] / "deployment.zip").stat().st_size
        print(f"\n{stage} deployment.zip: {size / 1024:.0f} KiB, {len(names)} files")
        assert size < 5 * 1024 * 1024


# ---- chalice deploy (path (a)) ---------------------------------------------------------------------

DEPLOY_GRAPH = """
import json, os, sys
from chalice.cli.factory import CLIFactory
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder

stage = sys.argv[1]
config = CLIFactory(os.getcwd(), environ=os.environ).create_config_obj(stage)
found = {"functions": {}, "schedules": [], "streams": []}
for resource in DependencyBuilder().build_dependencies(ApplicationGraphBuilder().build(config, stage)):
    if isinstance(resource, models.LambdaFunction):
        found["functions"][resource.resource_name] = {
            "name": resource.function_name, "role": resource.role.role_name,
            "policy": os.path.basename(resource.role.policy.filename), "environment": resource.environment_variables}
    elif isinstance(resource, models.ScheduledEvent):
        found["schedules"].append([resource.lambda_function.resource_name, resource.schedule_expression])
    elif isinstance(resource, models.DynamoDBEventSource):
        found["streams"].append([resource.lambda_function.resource_name, resource.stream_arn])
print(json.dumps(found))
"""


@pytest.mark.parametrize("stage", STAGES)
def test_chalice_deploy_would_make_what_the_policies_name(stage):
    """What `chalice deploy --stage <stage>` plans (its application graph, built offline, as the CLI
    loads the app: with the stage's environment): function names whose log groups the policies name,
    one role per function with its own policy file, the schedule, and the stream ARN of the config."""
    import os

    environment = {**os.environ, **FAKE_CREDENTIALS}
    planned = subprocess.run(
        [sys.executable, "-c", DEPLOY_GRAPH, stage],
        cwd=ROOT,
        env=environment,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert planned.returncode == 0, planned.stderr
    graph = json.loads(planned.stdout)
    stage_config = CONFIG["stages"][stage]
    assert {function: (spec["name"], spec["policy"]) for function, spec in graph["functions"].items()} == {
        function: (
            infra.function_names(stage)[_logical(function)],
            stage_config["lambda_functions"][function]["iam_policy_file"],
        )
        for function in FUNCTIONS
    }
    assert len({spec["role"] for spec in graph["functions"].values()}) == len(FUNCTIONS)
    assert all(spec["environment"] == stage_config["environment_variables"] for spec in graph["functions"].values())
    assert graph["schedules"] == [["sweep_expired_holds", "rate(1 minute)"]]
    assert graph["streams"] == [["push_changes", stage_config["environment_variables"]["RESERVATION_STREAM_ARN"]]]


# ---- the stacks in moto (path (a)) ---------------------------------------------------------------------


def _create_stacks(stage: str) -> str:
    """Path (a)'s two stacks, as docs/deploy.md deploys them. moto has no CloudFormation support for
    AWS::SecretsManager::Secret: it skips it (with a warning), so the secret is made as the template
    describes it, through the Secrets Manager API. Returns the secret's ARN."""
    cloudformation = boto3.client("cloudformation")
    values = infra.parameters(stage)
    for key, template in zip(("table", "services"), TEMPLATES):
        declared = json.loads(template.read_text())["Parameters"]
        cloudformation.create_stack(
            StackName=infra.stack_names(stage)[key],
            TemplateBody=template.read_text(),
            Parameters=[
                {"ParameterKey": name, "ParameterValue": value} for name, value in values.items() if name in declared
            ],
        )
        stack = cloudformation.describe_stacks(StackName=infra.stack_names(stage)[key])["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
    secrets = boto3.client("secretsmanager")
    assert secrets.list_secrets()["SecretList"] == [], "moto now creates the secret: drop the stand-in below"
    generate = json.loads(TEMPLATES[1].read_text())["Resources"]["PageTokenSecret"]["Properties"][
        "GenerateSecretString"
    ]
    key = secrets.get_random_password(**generate)["RandomPassword"]
    return secrets.create_secret(Name=infra.names(stage)["secret"], SecretString=key)["ARN"]


class WithSecretOutput:
    """moto's CloudFormation, with the PageTokenSecretArn output the skipped secret would have given."""

    def __init__(self, client, secret_arn: str):
        self.client, self.secret_arn = client, secret_arn

    def describe_stacks(self, StackName):
        answer = self.client.describe_stacks(StackName=StackName)
        if StackName.endswith("-services"):
            answer["Stacks"][0]["Outputs"].append({"OutputKey": "PageTokenSecretArn", "OutputValue": self.secret_arn})
        return answer


MOTO_SKIPS_SECRET = pytest.mark.filterwarnings("ignore:Tried to parse AWS.*SecretsManager")


@MOTO_SKIPS_SECRET
def test_path_a_stacks_deploy_in_moto_and_configure_fills_the_stage(aws, tmp_path, monkeypatch):
    stage = "prod"
    secret_arn = _create_stacks(stage)
    made = infra.names(stage)
    table = boto3.client("dynamodb").describe_table(TableName=made["table"])["Table"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == set(table_index_names())
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert boto3.client("events").describe_event_bus(Name=made["bus"])["Name"] == made["bus"]
    ssm = boto3.client("ssm")
    assert ssm.get_parameter(Name=made["tenant_map"])["Parameter"]["Value"] == "{}"

    config = tmp_path / "config.json"
    config.write_text((ROOT / ".chalice" / "config.json").read_text())
    written = infra.configure(stage, WithSecretOutput(boto3.client("cloudformation"), secret_arn), config)
    assert written == {"RESERVATION_STREAM_ARN": table["LatestStreamArn"], "PAGE_TOKEN_SECRET_ARN": secret_arn}
    environment = json.loads(config.read_text())["stages"][stage]["environment_variables"]
    assert {key: environment[key] for key in written} == written
    assert {key: value for key, value in environment.items() if key not in written} == {
        key: value for key, value in CONFIG["stages"][stage]["environment_variables"].items() if key not in written
    }

    # The page-token key comes from the secret...
    from chalicelib import paging

    monkeypatch.setenv("PAGE_TOKEN_SECRET_ARN", environment["PAGE_TOKEN_SECRET_ARN"])
    paging._secret_from_arn.cache_clear()
    try:
        position = "0" * 21
        assert paging.decode(paging.encode(position, "query"), "query") == position
        assert len(paging._key()) == 64
    finally:
        paging._secret_from_arn.cache_clear()
    # ...and a team added to the tenant map as docs/deploy.md shows is its tenant within a minute.
    from chalicelib.tenancy import TenantMap

    ssm.put_parameter(
        Name=environment["TENANT_MAP_PARAMETER"],
        Type="String",
        Overwrite=True,
        Value=json.dumps(
            {
                "arn:aws:sts::123456789012:assumed-role/team-a-service/*": "team-a",
                "arn:aws:iam::123456789012:user/alice": "team-b",
            }
        ),
    )
    tenants = TenantMap(environment["TENANT_MAP_PARAMETER"], lambda: boto3.client("ssm"))
    assert tenants.tenant_of("arn:aws:sts::123456789012:assumed-role/team-a-service/i-0123") == "team-a"
    assert tenants.tenant_of("arn:aws:iam::123456789012:user/alice") == "team-b"
    assert tenants.tenant_of("arn:aws:sts::123456789012:assumed-role/other/x") is None


def test_infra_stage_refuses_a_stage_whose_names_differ_from_infra(tmp_path):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["prod"]["environment_variables"]["EVENT_BUS_NAME"] = "somebody-elses-bus"
    with pytest.raises(SystemExit, match="EVENT_BUS_NAME"):
        infra.merge_template("prod", config)


def _docs_rule_pattern() -> dict:
    """The EventBridge rule docs/deploy.md gives subscribers."""
    found = re.search(r"--event-pattern '(\{.*?\})'", (ROOT / "docs" / "deploy.md").read_text(), re.DOTALL)
    assert found, "docs/deploy.md shows an `aws events put-rule ... --event-pattern '{...}'`"
    return json.loads(found.group(1))


@MOTO_SKIPS_SECRET
def test_change_feed_reaches_a_subscriber_through_the_stream_and_the_bus(aws, monkeypatch):
    """Reserves of two tenants; the table's stream records (read as Lambda's event source would) go
    through app.push_changes to the stage's bus; the docs' rule for one team's creations gets that team's only."""
    from chalicelib.dynamo import DynamoStore
    from chalicelib.model import Caller, Reservation, Status
    from chalicelib.runtime import build_api

    stage = "dev"
    _create_stacks(stage)
    made = infra.names(stage)
    events, sqs = boto3.client("events"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="team-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = _docs_rule_pattern()
    assert pattern["detail-type"] == ["reservation.created"]
    (team,) = pattern["detail"]["tenant"]
    events.put_rule(Name="team-created", EventBusName=made["bus"], EventPattern=json.dumps(pattern))
    events.put_targets(Rule="team-created", EventBusName=made["bus"], Targets=[{"Id": "inbox", "Arn": queue_arn}])

    api = build_api(DynamoStore(made["table"], boto3.client("dynamodb")))
    start = (1_900_000_000 * 10**9 // HOUR_NS) * HOUR_NS
    made_ids = {}
    for tenant in (team, "someone-else"):
        made_ids[tenant] = api.reservations.reserve(
            Caller(tenant), Reservation("", "u1", "room-1", Status.CONFIRMED, start, start + HOUR_NS)
        ).id

    stream_arn = boto3.client("dynamodb").describe_table(TableName=made["table"])["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = [
        {
            **record,
            "eventSourceARN": stream_arn,
            "dynamodb": {
                **record["dynamodb"],
                "ApproximateCreationDateTime": record["dynamodb"]["ApproximateCreationDateTime"].timestamp(),
            },
        }
        for record in streams.get_records(ShardIterator=iterator)["Records"]
    ]
    monkeypatch.setenv("EVENT_BUS_NAME", CONFIG["stages"][stage]["environment_variables"]["EVENT_BUS_NAME"])
    import app

    assert app.push_changes({"Records": records}, None) == {"published": 2}
    delivered = [
        json.loads(message["Body"])
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    ]
    assert [
        (event["source"], event["detail-type"], event["detail"]["tenant"], event["detail"]["reservation"]["id"])
        for event in delivered
    ] == [("my-reservation", "reservation.created", team, made_ids[team])]
