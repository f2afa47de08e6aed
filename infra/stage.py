"""What ties a chalice stage to the stacks of infra/, for both deploy paths of docs/deploy.md.

    python infra/stage.py merge-template prod > build/prod-infra.json
        Path (b), one stack: infra/table.json and infra/services.json as one template, plus what
        wires chalice's functions to them (stream ARN, secret ARN and the other names as
        environment variables, the stream as the event source of the push, function names as
        `chalice deploy` gives them, so that each policy's own log group is the function's).
        Give it to `chalice package --stage prod --merge-template build/prod-infra.json`.

    python infra/stage.py configure prod
        Path (a), after the stacks my-reservation-prod-table and my-reservation-prod-services
        exist: writes their stream ARN and secret ARN into the stage's environment variables in
        .chalice/config.json (they only exist once the stacks do), then `chalice deploy --stage prod`.

Both check that the names .chalice/config.json gives the stage (table, bus, tenant map) are the
ones the templates create for it: the IAM policies name them too.
"""

import argparse
import copy
import json
import pathlib
import re
import sys

INFRA = pathlib.Path(__file__).resolve().parent
ROOT = INFRA.parent
CONFIG = ROOT / ".chalice" / "config.json"
TABLE_TEMPLATE = INFRA / "table.json"
SERVICES_TEMPLATE = INFRA / "services.json"
# The @app.on_dynamodb_record function of app.py: its event source is the table's stream.
STREAM_FUNCTION = "push_changes"
# Environment variable -> where the stacks' value comes from (CloudFormation, for the merge
# template; the stack outputs, for configure).
FROM_STACKS = {
    "RESERVATION_TABLE": ({"Ref": "ReservationTable"}, "TableName"),
    "RESERVATION_STREAM_ARN": ({"Fn::GetAtt": ["ReservationTable", "StreamArn"]}, "StreamArn"),
    "EVENT_BUS_NAME": ({"Fn::GetAtt": ["EventBus", "Name"]}, "EventBusName"),
    "PAGE_TOKEN_SECRET_ARN": ({"Ref": "PageTokenSecret"}, "PageTokenSecretArn"),
    "TENANT_MAP_PARAMETER": ({"Ref": "TenantMapParameter"}, "TenantMapParameterName"),
}
# Known only once the stacks exist: configure writes them into .chalice/config.json.
DEPLOY_TIME = ("RESERVATION_STREAM_ARN", "PAGE_TOKEN_SECRET_ARN")


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def stage_config(stage: str, config: dict | None = None) -> dict:
    config = config if config is not None else load(CONFIG)
    if stage not in config["stages"]:
        raise SystemExit(f"no stage {stage!r} in {CONFIG}")
    return config["stages"][stage]


def app_name(config: dict | None = None) -> str:
    return (config if config is not None else load(CONFIG))["app_name"]


def stack_names(stage: str) -> dict:
    """Path (a)'s stacks of a stage."""
    return {"table": f"my-reservation-{stage}-table", "services": f"my-reservation-{stage}-services"}


def parameters(stage: str, config: dict | None = None) -> dict:
    """The templates' parameters for a stage."""
    return {"TableName": stage_config(stage, config)["environment_variables"]["RESERVATION_TABLE"], "Stage": stage}


def _sub(value, values: dict):
    """A name of the templates with its parameters filled in (Ref and Fn::Sub of parameters only)."""
    if isinstance(value, dict) and "Ref" in value:
        return values[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{(\w+)\}", lambda match: values[match.group(1)], value["Fn::Sub"])
    return value


def names(stage: str, config: dict | None = None) -> dict:
    """The names the templates create for a stage: table, bus, secret (without the random suffix
    Secrets Manager adds to its ARN) and tenant map parameter."""
    values = parameters(stage, config)
    table = load(TABLE_TEMPLATE)["Resources"]["ReservationTable"]["Properties"]
    services = load(SERVICES_TEMPLATE)["Resources"]
    return {
        "table": _sub(table["TableName"], values),
        "bus": _sub(services["EventBus"]["Properties"]["Name"], values),
        "secret": _sub(services["PageTokenSecret"]["Properties"]["Name"], values),
        "tenant_map": _sub(services["TenantMapParameter"]["Properties"]["Name"], values),
    }


def check_names(stage: str, config: dict | None = None) -> None:
    """Fail unless the stage's environment names what the templates create."""
    environment = stage_config(stage, config)["environment_variables"]
    made = names(stage, config)
    expected = {
        "RESERVATION_TABLE": made["table"],
        "EVENT_BUS_NAME": made["bus"],
        "TENANT_MAP_PARAMETER": made["tenant_map"],
    }
    wrong = {
        key: (environment[key], value)
        for key, value in expected.items()
        if key in environment and environment[key] != value
    }
    if wrong:
        raise SystemExit(
            f"stage {stage}: .chalice/config.json names differ from what infra/ creates (config, infra): {wrong}"
        )


def function_names(stage: str, config: dict | None = None) -> dict:
    """CloudFormation logical id -> Lambda function name, as `chalice deploy` names them."""
    config = config if config is not None else load(CONFIG)
    found = {}
    for function in stage_config(stage, config).get("lambda_functions", {}):
        if function == "api_handler":
            found["APIHandler"] = f"{app_name(config)}-{stage}"
        else:
            logical = "".join(part[:1].upper() + part[1:] for part in function.split("_"))
            found[logical] = f"{app_name(config)}-{stage}-{function}"
    return found


def merge_template(stage: str, config: dict | None = None) -> dict:
    """Path (b): the template to give `chalice package --stage <stage> --merge-template`."""
    config = config if config is not None else load(CONFIG)
    check_names(stage, config)
    table, services = load(TABLE_TEMPLATE), load(SERVICES_TEMPLATE)
    merged = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"my-reservation, stage {stage}: the table, the bus, the page-token key, the tenant "
        "map and the functions (chalice package with infra/stage.py merge-template).",
        "Parameters": {},
        "Resources": {},
        "Outputs": {},
    }
    for template in (table, services):
        for section in ("Parameters", "Resources", "Outputs"):
            clash = set(merged[section]) & set(template.get(section, {}))
            if clash:
                raise SystemExit(f"infra templates both define {section} {sorted(clash)}")
            merged[section].update(copy.deepcopy(template.get(section, {})))
    # One value per parameter: the stage's (its policies and environment name these resources).
    for name, value in parameters(stage, config).items():
        merged["Parameters"][name].update(Default=value, AllowedValues=[value])
    environment = stage_config(stage, config)["environment_variables"]
    wired = {key: value for key, (value, _) in FROM_STACKS.items() if key in environment}
    for logical, function_name in function_names(stage, config).items():
        merged["Resources"][logical] = {
            "Properties": {"FunctionName": function_name, "Environment": {"Variables": copy.deepcopy(wired)}}
        }
    stream_function = "".join(part[:1].upper() + part[1:] for part in STREAM_FUNCTION.split("_"))
    merged["Resources"][stream_function]["Properties"]["Events"] = {
        f"{stream_function}DynamodbEventSource": {"Properties": {"Stream": FROM_STACKS["RESERVATION_STREAM_ARN"][0]}}
    }
    return merged


def stack_outputs(cloudformation, stack_name: str) -> dict:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def configure(stage: str, cloudformation=None, config_path: pathlib.Path = CONFIG) -> dict:
    """Path (a): write the stacks' deploy-time values into the stage's environment; returns them."""
    config = load(config_path)
    check_names(stage, config)
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation")
    outputs = {}
    for stack_name in stack_names(stage).values():
        outputs.update(stack_outputs(cloudformation, stack_name))
    environment = stage_config(stage, config)["environment_variables"]
    for key, (_, output) in FROM_STACKS.items():
        if key in environment and key not in DEPLOY_TIME and outputs[output] != environment[key]:
            raise SystemExit(
                f"stack output {output} is {outputs[output]!r}, .chalice/config.json has {environment[key]!r} for {key}"
            )
    written = {key: outputs[FROM_STACKS[key][1]] for key in DEPLOY_TIME}
    environment.update(written)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return written


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["merge-template", "configure"])
    parser.add_argument("stage")
    arguments = parser.parse_args(argv)
    if arguments.command == "merge-template":
        json.dump(merge_template(arguments.stage), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in configure(arguments.stage).items():
            print(f"{arguments.stage}: {key} = {value}")


if __name__ == "__main__":
    main(sys.argv[1:])
