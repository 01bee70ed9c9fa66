"""The nightly run on AWS (scripts/emr/nightly.*), checked with AWS's own tools and a local AWS.

- cfn-lint (AWS's resource specifications) on the rendered template, state machine included;
- asl-validator (npm, installed by `make test` in tools/asl/) on the state machine, and a walk of
  its graph: every path after createCluster reaches terminateCluster;
- botocore's own EMR service model (ParamValidator) on the createCluster and addStep parameters,
  and the createCluster parameters equal the RunJobFlow request that create_cluster.sh makes the
  real AWS CLI send;
- the real AWS CLI (PyPI awscli, v1) driving nightly.sh and create_cluster.sh against a moto
  server on 127.0.0.1 (started and stopped here); every request the CLI makes is checked to go to
  127.0.0.1 (its --debug log), and an HTTP(S) proxy on a dead local port makes any other fail;
- the helper function's code (nightly_lambda.py) with boto3 against the same moto server's S3.

Not covered by moto (5.2.5): its CloudFormation skips AWS::Scheduler::Schedule and
AWS::SNS::TopicPolicy (created on AWS only; checked here by cfn-lint and the policy tests), returns
no stack Outputs for this template, does not apply the state machine's DefinitionSubstitutions,
and does not run state machines, so the state machine's
behaviour on AWS (the EMR .sync integrations) is checked by the validators and the graph walk only.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from conftest import stop_process_group

ROOT = Path(__file__).resolve().parents[1]
EMR = ROOT / "scripts" / "emr"
BASH = shutil.which("bash") or "/bin/bash"
BIN = Path(sys.executable).parent
BUCKET = "fruits-test-bucket"
ASL_VALIDATOR = ROOT / "tools" / "asl" / "node_modules" / ".bin" / "asl-validator"
ASL_HINT = "asl-validator is not installed: run `make test` (npm ci --prefix tools/asl)"

sys.path.insert(0, str(EMR))
import cluster  # noqa: E402
import nightly  # noqa: E402


def settings(**env: str) -> Dict[str, str]:
    return nightly.settings({"BUCKET": BUCKET, "USER": "tester", **env})


@pytest.fixture(scope="module")
def values() -> Dict[str, str]:
    return settings()


@pytest.fixture(scope="module")
def asl(values) -> dict:
    return nightly.definition(values)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, values) -> Path:
    out = tmp_path_factory.mktemp("nightly") / "nightly.yaml"
    out.write_text(nightly.template(values))
    return out


@pytest.fixture(scope="module")
def template(rendered) -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.loads(rendered.read_text())


# ---------------------------------------------------------------------------------------------
# cfn-lint


def _cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cfn-lint"), "--regions", "eu-west-3", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_rendered_template_passes_cfn_lint(rendered: Path) -> None:
    result = _cfn_lint(rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_checks_the_state_machine_inside(rendered: Path, tmp_path: Path) -> None:
    """A control: the same template with one bad state field is refused (E3601)."""
    bad = tmp_path / "bad.yaml"
    text = rendered.read_text()
    assert text.count('\\"Next\\":\\"AnythingNew\\"') == 1
    bad.write_text(
        text.replace('\\"Next\\":\\"AnythingNew\\"', '\\"Next\\":\\"AnythingNew\\",\\"Nxt\\":1')
    )
    result = _cfn_lint(bad)
    assert result.returncode != 0 and "E3601" in result.stdout, result.stdout


def test_template_holds_the_rendered_definition_and_code(template: dict, asl: dict) -> None:
    machine = template["Resources"]["StateMachine"]["Properties"]
    assert json.loads(machine["DefinitionString"]) == asl
    assert machine["StateMachineType"] == "STANDARD"
    assert set(machine["DefinitionSubstitutions"]) == {"HelperFunctionArn", "TopicArn"}
    code = template["Resources"]["HelperFunction"]["Properties"]["Code"]["ZipFile"]
    assert code.strip() == (EMR / "nightly_lambda.py").read_text().strip()
    assert len(code) <= 4096  # CloudFormation's limit for inline code


def test_schedule_defaults_and_flexible_window(template: dict) -> None:
    params = template["Parameters"]
    assert params["ScheduleExpression"]["Default"] == "cron(0 2 * * ? *)"
    assert params["ScheduleTimezone"]["Default"] == "Europe/Paris"
    schedule = template["Resources"]["Schedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert schedule["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert schedule["FlexibleTimeWindow"] == {
        "Mode": "FLEXIBLE",
        "MaximumWindowInMinutes": {"Ref": "FlexibleWindowMinutes"},
    }
    assert schedule["Target"]["Arn"] == {"Ref": "StateMachine"}
    subscription = template["Resources"]["Topic"]["Properties"]["Subscription"]
    assert subscription == {
        "Fn::If": [
            "HasEmail",
            [{"Protocol": "email", "Endpoint": {"Ref": "NotificationEmail"}}],
            {"Ref": "AWS::NoValue"},
        ]
    }


# ---------------------------------------------------------------------------------------------
# Least privilege


def _statements(template: dict, role: str) -> List[dict]:
    props = template["Resources"][role]["Properties"]
    assert "ManagedPolicyArns" not in props, role
    return [s for policy in props["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_action_no_admin_nothing_public(rendered: Path, template: dict) -> None:
    assert "AdministratorAccess" not in rendered.read_text()
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in _statements(template, name):
            assert statement["Effect"] == "Allow"
            for action in _listed(statement["Action"]):
                assert "*" not in action, (name, action)
        trust = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [list(s["Principal"]) for s in trust] == [["Service"]], name
    topic_policy = template["Resources"]["TopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for statement in topic_policy:
        if statement["Principal"] == "*":
            assert statement["Effect"] == "Deny", statement


def test_scheduler_may_only_start_this_state_machine(template: dict) -> None:
    (statement,) = _statements(template, "SchedulerRole")
    assert statement["Action"] == "states:StartExecution"
    assert statement["Resource"] == {"Ref": "StateMachine"}


def test_state_machine_role_is_scoped(template: dict, asl: dict) -> None:
    by_action = {}
    for statement in _statements(template, "StateMachineRole"):
        for action in _listed(statement["Action"]):
            by_action[action] = statement
    assert set(by_action) == {
        "elasticmapreduce:RunJobFlow",
        "elasticmapreduce:DescribeCluster",
        "elasticmapreduce:TerminateJobFlows",
        "elasticmapreduce:AddJobFlowSteps",
        "elasticmapreduce:DescribeStep",
        "elasticmapreduce:CancelSteps",
        "elasticmapreduce:ListClusters",
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
        "sns:Publish",
        "lambda:InvokeFunction",
    }
    # Clusters: created only with this stack's tag, touched only when they carry it ...
    assert by_action["elasticmapreduce:RunJobFlow"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/fruits-nightly": {"Ref": "AWS::StackName"}}
    }
    for action in (
        "DescribeCluster",
        "TerminateJobFlows",
        "AddJobFlowSteps",
        "DescribeStep",
        "CancelSteps",
    ):
        assert by_action[f"elasticmapreduce:{action}"]["Condition"] == {
            "StringEquals": {"aws:ResourceTag/fruits-nightly": {"Ref": "AWS::StackName"}}
        }
    # ... and the cluster request carries that tag (the stack is named STACK_NAME).
    tags = {t["Key"]: t["Value"] for t in asl["States"]["CreateCluster"]["Parameters"]["Tags"]}
    assert (
        tags["fruits-nightly"]
        == "fruits-nightly"
        == nightly.settings({"BUCKET": BUCKET})["STACK_NAME"]
    )
    # The two EMR roles only.
    passed = [r["Fn::Sub"] for r in by_action["iam:PassRole"]["Resource"]]
    assert passed == [
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ServiceRoleName}",
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${InstanceProfileName}",
    ]
    # The managed rules of the .sync EMR integrations, by name.
    rules = sorted(r["Fn::Sub"].rsplit("/", 1)[1] for r in by_action["events:PutRule"]["Resource"])
    assert rules == [
        "StepFunctionsGetEventForEMRAddJobFlowStepsRule",
        "StepFunctionsGetEventForEMRRunJobFlowRule",
        "StepFunctionsGetEventForEMRTerminateJobFlowsRule",
    ]
    assert by_action["sns:Publish"]["Resource"] == {"Ref": "Topic"}
    assert by_action["lambda:InvokeFunction"]["Resource"][0] == {
        "Fn::GetAtt": ["HelperFunction", "Arn"]
    }


def test_helper_reads_only_the_listing_and_two_output_files(template: dict) -> None:
    statements = _statements(template, "HelperRole")
    reads = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert [r["Fn::Sub"] for r in reads[0]["Resource"]] == [
        "arn:${AWS::Partition}:s3:::${Bucket}/${OutputPrefix}/manifest.json",
        "arn:${AWS::Partition}:s3:::${Bucket}/${OutputPrefix}/history/latest.json",
    ]
    for statement in statements:
        assert not set(_listed(statement["Action"])) & {"s3:PutObject", "s3:DeleteObject"}
        if statement["Action"] == "s3:ListBucket":
            assert "s3:prefix" in statement["Condition"]["StringLike"]


# ---------------------------------------------------------------------------------------------
# The state machine: asl-validator and its graph


def _asl_validate(path: Path) -> subprocess.CompletedProcess:
    if not ASL_VALIDATOR.exists():
        pytest.fail(ASL_HINT)
    return subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=120
    )


def test_state_machine_is_valid_asl(asl: dict, tmp_path: Path) -> None:
    path = tmp_path / "nightly.asl.json"
    path.write_text(json.dumps(asl))
    result = _asl_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_refuses_a_broken_machine(asl: dict, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(asl))
    broken["States"]["RunNotebook"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken))
    result = _asl_validate(path)
    assert result.returncode != 0 and "NoSuchState" in result.stdout + result.stderr


def _next_states(state: dict) -> List[str]:
    targets = [state[key] for key in ("Next", "Default") if key in state]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [catch["Next"] for catch in state.get("Catch", [])]
    return targets


def _terminates(state: dict) -> bool:
    resource = state.get("Resource", "")
    if resource.startswith("arn:aws:states:::elasticmapreduce:terminateCluster"):
        return True
    inner = state.get("ItemProcessor", state.get("Iterator"))
    return bool(inner) and any(_terminates(s) for s in inner["States"].values())


def _paths(states: dict, start: str) -> Iterator[List[str]]:
    """Every path from ``start`` to an end state (no state twice on a path)."""
    stack: List[Tuple[str, List[str]]] = [(start, [start])]
    while stack:
        name, path = stack.pop()
        state = states[name]
        nexts = _next_states(state)
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            yield path
        for target in nexts:
            assert target in states, f"{name} -> {target}: no such state"
            if target not in path:
                stack.append((target, path + [target]))


def test_every_path_after_create_cluster_reaches_terminate_cluster(asl: dict) -> None:
    states = asl["States"]
    (create,) = [
        n
        for n, s in states.items()
        if s.get("Resource", "").startswith("arn:aws:states:::elasticmapreduce:createCluster")
    ]
    paths = list(_paths(states, create))
    assert len(paths) >= 6
    for path in paths:
        # The only paths without a termination are those where createCluster failed and this
        # run's cluster was looked for: none is active, or the listing itself failed (then the
        # cluster's idle auto-termination ends it, and the notification says so).
        if "NoLeftoverCluster" in path or "LeftoverUnknown" in path:
            assert path[:3] == [create, "CreateClusterFailed", "FindLeftoverCluster"], path
            continue
        assert any(_terminates(states[name]) for name in path[1:]), " -> ".join(path)
    assert {n for p in paths for n in p} >= {
        "NoLeftoverCluster",
        "LeftoverUnknown",
        "TerminateLeftoverClusters",
    }
    assert "IDLE_TIMEOUT" in states["LeftoverUnknown"]["Comment"]
    # Both outcomes of the run exist after the cluster: success and failure.
    ends = {states[path[-1]]["Type"] for path in paths}
    assert ends == {"Succeed", "Fail"}


def test_graph_walk_catches_a_path_that_skips_termination(asl: dict) -> None:
    """A control: a Catch that jumps straight to the notification is found."""
    broken = json.loads(json.dumps(asl))
    broken["States"]["RunNotebook"]["Catch"][0]["Next"] = "NotifyFailure"
    with pytest.raises(AssertionError, match="RunNotebook -> NotifyFailure"):
        test_every_path_after_create_cluster_reaches_terminate_cluster(broken)


def test_nothing_new_starts_no_cluster(asl: dict) -> None:
    states = asl["States"]
    assert asl["StartAt"] == "CheckForNewImages"
    (choice,) = states["AnythingNew"]["Choices"]
    assert choice == {"Variable": "$.check.new", "BooleanEquals": True, "Next": "CreateCluster"}
    for path in _paths(states, states["AnythingNew"]["Default"]):
        assert path[-1] == "NothingNewNoCluster" and states[path[-1]]["Type"] == "Succeed"
        assert not any("elasticmapreduce" in states[n].get("Resource", "") for n in path)


def test_a_failed_termination_is_reported_as_such(asl: dict) -> None:
    states = asl["States"]
    for name in ("TerminateClusterAfterFailure", "TerminateLeftoverClusters"):
        (catch,) = states[name]["Catch"]
        assert catch["Next"] == "CleanupIncomplete", name
    assert states["CleanupIncomplete"]["ResultPath"] == "$.failure.cleanup"
    assert states["CleanupIncomplete"]["Result"].startswith("FAILED")
    assert states["TerminateClusterFailed"]["Parameters"]["cleanup"].startswith("FAILED")


def test_every_task_after_the_cluster_exists_catches_everything_and_times_out(
    asl: dict, values
) -> None:
    states = asl["States"]
    after = {name for path in _paths(states, "CreateCluster") for name in path}
    for name in after:
        state = states[name]
        if state["Type"] in ("Task", "Map"):
            assert any(c["ErrorEquals"] == ["States.ALL"] for c in state.get("Catch", [])), name
    for name in (
        "CreateCluster",
        "RunNotebook",
        "TerminateCluster",
        "TerminateClusterAfterFailure",
    ):
        assert states[name]["TimeoutSeconds"] > 0, name
    assert (
        states["RunNotebook"]["TimeoutSeconds"] == 60 * int(values["STEP_TIMEOUT_MINUTES"]) == 10800
    )


def test_failure_message_names_the_state_and_the_step_logs(asl: dict) -> None:
    states = asl["States"]
    failed = states["RunNotebookFailed"]["Parameters"]
    assert failed["state"] == "RunNotebook"
    assert (
        failed["logs.$"] == f"States.Format('s3://{BUCKET}/logs/{{}}/steps/', $.cluster.ClusterId)"
    )
    message = states["NotifyFailure"]["Parameters"]["Message.$"]
    for field in (
        "$.failure.state",
        "$.failure.cluster",
        "$.failure.cleanup",
        "$.failure.logs",
        "$.failure.error",
    ):
        assert field in message
    for name, state in states.items():
        if name.endswith("Failed") and state["Type"] == "Pass":
            assert {"state", "error.$", "cleanup"} <= set(state["Parameters"]), name
            assert {"cluster", "cluster.$"} & set(state["Parameters"]), name
            assert {"logs", "logs.$"} & set(state["Parameters"]), name


# ---------------------------------------------------------------------------------------------
# The EMR requests: botocore's own service model


def _botocore_validate(operation: str, params: dict) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("emr")
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def test_create_cluster_parameters_validate_against_botocore(asl: dict) -> None:
    params = asl["States"]["CreateCluster"]["Parameters"]
    _botocore_validate("RunJobFlow", params)
    # What Step Functions' createCluster adds to RunJobFlow's rules.
    assert params["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert "Steps" not in params
    assert params["AutoTerminationPolicy"]["IdleTimeout"] > 0  # the safety net
    assert not any(key.endswith(".$") for key in json.dumps(params).split('"'))


def test_botocore_validation_catches_a_bad_request(asl: dict) -> None:
    params = json.loads(json.dumps(asl["States"]["CreateCluster"]["Parameters"]))
    params["Instances"]["InstanceGroups"][0]["InstanceCount"] = "1"
    with pytest.raises(AssertionError, match="InstanceCount"):
        _botocore_validate("RunJobFlow", params)


def _intrinsic(expression: str, context: Dict[str, str]):
    """Evaluate the intrinsic functions the step uses: States.Array, States.Format, string
    literals and context paths (``$$.Execution.Name``)."""
    pos = 0

    def skip() -> None:
        nonlocal pos
        while pos < len(expression) and expression[pos] == " ":
            pos += 1

    def value():
        nonlocal pos
        skip()
        if expression[pos] == "'":
            pos += 1
            out = []
            while expression[pos] != "'":
                if expression[pos] == "\\":
                    pos += 1
                out.append(expression[pos])
                pos += 1
            pos += 1
            return "".join(out)
        match = re.compile(r"States\.(Array|Format)\(|\$\$?[A-Za-z0-9_.]*").match(expression, pos)
        assert match, expression[pos:]
        pos = match.end()
        if not match.group(1):
            return context[match.group(0)]
        args = []
        while True:
            args.append(value())
            skip()
            pos += 1
            if expression[pos - 1] == ")":
                break
            assert expression[pos - 1] == ",", expression[pos - 1 :]
        if match.group(1) == "Array":
            return args
        template, *rest = args
        parts = template.split("{}")
        assert len(parts) == len(rest) + 1
        return parts[0] + "".join(str(arg) + part for arg, part in zip(rest, parts[1:]))

    result = value()
    assert pos == len(expression)
    return result


def _step_params(asl: dict, run_id: str, cluster_id: str = "j-1ABCDEFGHIJKL") -> dict:
    params = json.loads(json.dumps(asl["States"]["RunNotebook"]["Parameters"]))
    assert params.pop("ClusterId.$") == "$.cluster.ClusterId"
    jar = params["Step"]["HadoopJarStep"]
    jar["Args"] = _intrinsic(jar.pop("Args.$"), {"$$.Execution.Name": run_id})
    return {"JobFlowId": cluster_id, "Steps": [params["Step"]]}


def test_add_step_parameters_validate_against_botocore(asl: dict, values) -> None:
    request = _step_params(asl, "0b7d2c1e-5f1a-4c1e-9d3b-2a6f7e8d9c0b")
    _botocore_validate("AddJobFlowSteps", request)
    (step,) = request["Steps"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert step["HadoopJarStep"]["Args"] == nightly.step_args(
        values, "0b7d2c1e-5f1a-4c1e-9d3b-2a6f7e8d9c0b"
    )


def test_nightly_step_runs_papermill_incrementally_into_the_fixed_output(asl: dict) -> None:
    run_id = "manual-20260101T020000Z"
    args = _step_params(asl, run_id)["Steps"][0]["HadoopJarStep"]["Args"]
    # No empty argument anywhere: command-runner.jar would drop it and papermill would fail.
    assert all(isinstance(a, str) and a for a in args)
    papermill_cli = pytest.importorskip("papermill.cli")
    assert args[0] == "/opt/fruits/venv/bin/papermill"
    ctx = papermill_cli.papermill.make_context("papermill", list(args[1:]))
    assert ctx.params["kernel"] == "python3"
    assert ctx.params["notebook_path"] == f"s3://{BUCKET}/notebooks/cloud.ipynb"
    assert (
        ctx.params["output_path"]
        == f"s3://{BUCKET}/outputs/nightly/history/{run_id}/cloud.executed.ipynb"
    )
    assert dict(ctx.params["parameters_raw"]) == {
        "input_path": f"s3://{BUCKET}/fruits-360",
        "output_path": f"s3://{BUCKET}/outputs/nightly",
        "run_id": run_id,
    }
    assert dict(ctx.params["parameters"]) == {"incremental": "True", "cost_per_hour": "0.84"}


def test_cost_per_hour_follows_the_cluster(tmp_path: Path) -> None:
    assert settings(CORE_COUNT="4")["COST_PER_HOUR"] == "1.40"
    with pytest.raises(cluster.SettingError, match="COST_PER_HOUR"):
        settings(INSTANCE_TYPE="m5.2xlarge")
    assert settings(INSTANCE_TYPE="m5.2xlarge", COST_PER_HOUR="1.68")["COST_PER_HOUR"] == "1.68"


@pytest.mark.parametrize(
    "bad",
    [
        {"OUTPUT_PATH": f"s3://{BUCKET}/elsewhere"},
        {"INPUT_PATH": "s3://other-bucket/fruits-360"},
        {"SCHEDULE_EXPRESSION": "every night"},
        {"NOTIFICATION_EMAIL": "not-an-address"},
        {"STEP_TIMEOUT_MINUTES": "0"},
    ],
)
def test_bad_settings_are_refused_with_their_name(bad: Dict[str, str]) -> None:
    with pytest.raises(cluster.SettingError, match=next(iter(bad))):
        settings(**bad)


# ---------------------------------------------------------------------------------------------
# A local AWS: moto server on 127.0.0.1, driven by the real AWS CLI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    server = BIN / "moto_server"
    if not server.exists():
        pytest.fail("moto_server is missing: pip install 'moto[server]' (see requirements.txt)")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto_server exited with {process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline:
                pytest.fail(f"moto_server did not answer on {endpoint}")
            time.sleep(0.2)
        yield endpoint
    finally:
        stop_process_group(process)
        log.close()


class AwsCli:
    """The real AWS CLI (awscli v1 from the venv), every call logged with --debug, only to 127.0.0.1."""

    def __init__(self, endpoint: str, folder: Path) -> None:
        self.endpoint = endpoint
        self.debug_log = folder / "aws-debug.log"
        self.bin = folder / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        wrapper = self.bin / "aws"
        # The real CLI, its --debug output (and error messages) appended to a log the test reads.
        wrapper.write_text(
            f'#!{BASH}\nexec {shlex.quote(str(BIN / "aws"))} --debug "$@" '
            f"2>>{shlex.quote(str(self.debug_log))}\n"
        )
        wrapper.chmod(0o755)
        dead = _free_port()  # nothing listens there: a request that skips the endpoint fails
        self.env = {
            "PATH": f"{self.bin}:{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "USER": "tester",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-3",
            "AWS_CONFIG_FILE": str(folder / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "HTTPS_PROXY": f"http://127.0.0.1:{dead}",
            "HTTP_PROXY": f"http://127.0.0.1:{dead}",
            "NO_PROXY": "127.0.0.1",
            "ENDPOINT_URL": endpoint,
            "PYTHON": sys.executable,
        }

    def script(self, name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BASH, str(EMR / name), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def requests(self) -> List[Tuple[str, str]]:
        """(operation, url) of every request the CLI made."""
        text = self.debug_log.read_text() if self.debug_log.exists() else ""
        return re.findall(
            r"Making request for OperationModel\(name=(\w+)\) with params: .*?'url': '([^']+)'",
            text,
        )

    def request_body(self, operation: str) -> dict:
        text = self.debug_log.read_text()
        (body,) = re.findall(
            rf"Making request for OperationModel\(name={operation}\) with params: "
            r".*?'body': (b'(?:[^'\\]|\\.)*')",
            text,
        )
        return json.loads(ast.literal_eval(body))

    def assert_only_local(self) -> None:
        text = self.debug_log.read_text()
        hosts = re.findall(r"Starting new HTTPS? connection \(\d+\): ([^:\s]+)", text)
        requests = self.requests()
        assert requests and hosts, "the CLI made no request"
        assert set(hosts) == {"127.0.0.1"}, hosts
        for operation, url in requests:
            assert url.startswith(self.endpoint + "/"), (operation, url)


@pytest.fixture
def aws(moto_endpoint, tmp_path) -> AwsCli:
    return AwsCli(moto_endpoint, tmp_path)


def _boto3(endpoint: str, service: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="eu-west-3",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_create_cluster_sh_sends_the_state_machines_cluster_request(aws: AwsCli, asl: dict) -> None:
    """create_cluster.sh through the real CLI sends exactly the nightly createCluster request
    when given the nightly's settings (cluster name and tag; KEY_NAME is optional for the nightly)."""
    env = {
        "BUCKET": BUCKET,
        "KEY_NAME": "my-key",
        "CLUSTER_NAME": "fruits-nightly",
        "EXTRA_TAGS": "fruits-nightly=fruits-nightly",
        "OWNER": "tester",
    }
    result = aws.script("create_cluster.sh", **env)
    assert result.returncode == 0, result.stderr + aws.debug_log.read_text()[-3000:]
    assert re.fullmatch(r"j-[A-Z0-9]+", result.stdout.strip().splitlines()[-1])
    sent = aws.request_body("RunJobFlow")
    expected = nightly.definition(settings(KEY_NAME="my-key", OWNER="tester"))["States"][
        "CreateCluster"
    ]["Parameters"]
    assert sent == expected
    aws.assert_only_local()
    # and the default nightly request is the same but for the key pair (no SSH needed at night)
    without_key = json.loads(json.dumps(expected))
    del without_key["Instances"]["Ec2KeyName"]
    assert without_key == asl["States"]["CreateCluster"]["Parameters"]


def test_emr_offers_every_tabled_instance_type(aws: AwsCli) -> None:
    """EMR's own list for the cluster's release (moto's copy of ListSupportedInstanceTypes, asked
    with the real CLI) holds every type of scripts/emr/instances.py, the default included."""
    import instances

    release = cluster.DEFAULTS["RELEASE_LABEL"]
    result = subprocess.run(
        [
            "aws",
            "emr",
            "list-supported-instance-types",
            "--release-label",
            release,
            "--region",
            "eu-west-3",
            "--endpoint-url",
            aws.endpoint,
            "--output",
            "json",
        ],
        env=aws.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    offered = {t["Type"]: t for t in json.loads(result.stdout)["SupportedInstanceTypes"]}
    assert len(offered) > 100
    for t in instances.TYPES:
        assert t.name in offered, t.name
        assert offered[t.name]["VCPU"] == t.vcpus, t.name
        assert t.memory_gib - 1 <= offered[t.name]["MemoryGB"] <= t.memory_gib, (
            t.name
        )  # 15.25 for 16 GiB
        assert (
            offered[t.name]["Architecture"] == {"x86_64": "X86_64", "arm64": "AARCH64"}[t.arch]
        ), t.name
    assert cluster.DEFAULTS["INSTANCE_TYPE"] in offered
    aws.assert_only_local()


def test_deploy_describe_run_now_remove_on_a_local_aws(aws: AwsCli, values, asl: dict) -> None:
    env = {
        "BUCKET": BUCKET,
        "NOTIFICATION_EMAIL": "team@example.org",
        "STACK_NAME": "fruits-nightly-t1",
    }
    deployed = aws.script("nightly.sh", "deploy", **env)
    assert deployed.returncode == 0, deployed.stderr
    cfn = _boto3(aws.endpoint, "cloudformation")
    stack = cfn.describe_stacks(StackName="fruits-nightly-t1")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["Bucket"] == BUCKET and params["OutputPrefix"] == "outputs/nightly"
    assert (
        params["ScheduleExpression"] == "cron(0 2 * * ? *)"
        and params["ScheduleTimezone"] == "Europe/Paris"
    )
    assert params["NotificationEmail"] == "team@example.org"

    # The state machine moto holds is the rendered one, with the function and topic filled in.
    sfn = _boto3(aws.endpoint, "stepfunctions")
    (machine,) = [
        m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "fruits-nightly-t1"
    ]
    described = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
    assert described["type"] == "STANDARD"
    function = [
        f
        for f in _boto3(aws.endpoint, "lambda").list_functions()["Functions"]
        if "HelperFunction" in f["FunctionName"]
    ]
    (topic,) = [
        t["TopicArn"]
        for t in _boto3(aws.endpoint, "sns").list_topics()["Topics"]
        if "fruits-nightly-t1" in t["TopicArn"]
    ]
    sent = json.dumps(
        nightly.definition(settings(STACK_NAME="fruits-nightly-t1")), separators=(",", ":")
    )
    substituted = sent.replace("${HelperFunctionArn}", function[0]["FunctionArn"]).replace(
        "${TopicArn}", topic
    )
    # moto 5.2.5 stores DefinitionString without applying DefinitionSubstitutions (AWS applies them).
    assert json.loads(described["definition"]) in (json.loads(sent), json.loads(substituted))
    assert function[0]["Runtime"] == "python3.12"
    subscriptions = _boto3(aws.endpoint, "sns").list_subscriptions_by_topic(TopicArn=topic)[
        "Subscriptions"
    ]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [
        ("email", "team@example.org")
    ]
    roles = {
        r["RoleName"]: r
        for r in _boto3(aws.endpoint, "iam").list_roles()["Roles"]
        if r["RoleName"].startswith("fruits-nightly-t1-")
    }
    assert {name.split("-")[3] for name in roles} >= {
        "StateMachineRole",
        "SchedulerRole",
        "HelperRole",
    }

    again = aws.script("nightly.sh", "deploy", **env)  # unchanged: a no-op, not an error
    assert again.returncode == 0, again.stderr
    updated = aws.script("nightly.sh", "deploy", **{**env, "NOTIFICATION_EMAIL": ""})  # an update
    assert updated.returncode == 0, updated.stderr
    stack = cfn.describe_stacks(StackName="fruits-nightly-t1")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}[
        "NotificationEmail"
    ] == ""

    described_text = aws.script("nightly.sh", "describe", **env)
    assert described_text.returncode == 0, described_text.stderr
    assert json.loads(described_text.stdout)["status"] == "UPDATE_COMPLETE"

    started = aws.script("nightly.sh", "run-now", **env)
    assert started.returncode == 0, started.stderr
    execution_arn = started.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"arn:aws:states:eu-west-3:\d+:execution:fruits-nightly-t1:manual-\d{8}T\d{6}Z",
        execution_arn,
    )

    status = sfn.describe_execution(executionArn=execution_arn)["status"]
    removed = aws.script("nightly.sh", "remove", **env)
    if status == "RUNNING":  # a run in progress keeps the stack unless FORCE=1
        assert removed.returncode != 0 and "in progress" in removed.stderr
        removed = aws.script("nightly.sh", "remove", FORCE="1", **env)
    assert removed.returncode == 0, removed.stderr
    assert not [
        s
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackName"] == "fruits-nightly-t1" and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert not [
        m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "fruits-nightly-t1"
    ]
    aws.assert_only_local()
    operations = {operation for operation, _ in aws.requests()}
    assert {
        "CreateChangeSet",
        "ExecuteChangeSet",
        "DescribeStacks",
        "ListStateMachines",
        "StartExecution",
        "ListExecutions",
        "DeleteStack",
    } <= operations


def test_the_guard_catches_a_request_that_escapes_the_local_endpoint(aws: AwsCli) -> None:
    """A control: without ENDPOINT_URL the CLI goes for AWS's real endpoint; the dead proxy makes
    it fail, and the debug-log check names it."""
    result = aws.script(
        "nightly.sh",
        "describe",
        BUCKET=BUCKET,
        ENDPOINT_URL="",
        AWS_MAX_ATTEMPTS="1",
        AWS_RETRY_MODE="standard",
    )
    assert result.returncode != 0
    (operation, url), *_ = aws.requests()
    assert operation == "ListStateMachines" and "amazonaws.com" in url
    with pytest.raises(AssertionError, match="amazonaws.com"):
        aws.assert_only_local()


def test_describe_and_remove_without_a_stack_say_so(aws: AwsCli) -> None:
    for action in ("describe", "remove", "run-now"):
        result = aws.script("nightly.sh", action, BUCKET=BUCKET, STACK_NAME="fruits-nightly-none")
        assert result.returncode != 0
        assert "no state machine fruits-nightly-none" in result.stderr, result.stderr


def test_dry_run_deploy_prints_the_full_plan_and_calls_nothing(aws: AwsCli, values) -> None:
    result = aws.script("nightly.sh", "deploy", DRY_RUN="1", BUCKET=BUCKET)
    assert result.returncode == 0, result.stderr
    assert aws.requests() == []
    lines = result.stdout.splitlines()
    template = "\n".join(line[2:] for line in lines if line.startswith("# ") and "---" not in line)
    assert template.strip() == nightly.template(values).strip()
    (deploy,) = [shlex.split(line) for line in lines if line.startswith("aws ")]
    assert deploy[:3] == ["aws", "cloudformation", "deploy"]
    overrides = deploy[deploy.index("--parameter-overrides") + 1 : deploy.index("--tags")]
    assert overrides == nightly.parameters(values)
    assert "CAPABILITY_IAM" in deploy and "--no-fail-on-empty-changeset" in deploy


@pytest.mark.parametrize(
    "args,message",
    [((), "one action expected"), (("start",), "unknown action"), (("deploy",), "OUTPUT_PATH")],
)
def test_nightly_sh_refuses_bad_input(aws: AwsCli, args, message) -> None:
    result = aws.script("nightly.sh", *args, BUCKET=BUCKET, OUTPUT_PATH=f"s3://{BUCKET}/elsewhere")
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert aws.requests() == []


# ---------------------------------------------------------------------------------------------
# The helper function's code, against moto's S3


@pytest.fixture
def helper(moto_endpoint, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "S3_ENDPOINT": moto_endpoint,
        "HTTPS_PROXY": "",
        "HTTP_PROXY": "",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "nightly_lambda_under_test", EMR / "nightly_lambda.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    s3 = _boto3(moto_endpoint, "s3")
    bucket = f"helper-{_free_port()}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    return module, s3, bucket


def _manifest(s3, bucket: str, started_at: dt.datetime) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="outputs/nightly/manifest.json",
        Body=json.dumps({"started_at": started_at.isoformat()}).encode(),
    )


def test_helper_first_run_then_nothing_new_then_new(helper) -> None:
    module, s3, bucket = helper
    event = {
        "action": "check",
        "input_path": f"s3://{bucket}/fruits-360",
        "output_path": f"s3://{bucket}/outputs/nightly",
    }
    s3.put_object(Bucket=bucket, Key="fruits-360/Training/Apple/1.jpg", Body=b"jpeg")
    first = module.handler(event)
    assert first["new"] is True and "first run" in first["reason"]

    uploaded = s3.head_object(Bucket=bucket, Key="fruits-360/Training/Apple/1.jpg")["LastModified"]
    _manifest(s3, bucket, uploaded + dt.timedelta(seconds=5))
    s3.put_object(
        Bucket=bucket, Key="fruits-360-old/Training/Apple/2.jpg", Body=b"jpeg"
    )  # other prefix
    nothing = module.handler(event)
    assert nothing["new"] is False and "no image under" in nothing["reason"]

    _manifest(s3, bucket, uploaded - dt.timedelta(seconds=5))
    s3.put_object(Bucket=bucket, Key="fruits-360/notes.txt", Body=b"not an image")
    new = module.handler(event)
    assert new["new"] is True and "fruits-360/Training/Apple/1.jpg" in new["reason"]


def test_helper_summary_from_the_history_row(helper) -> None:
    module, s3, bucket = helper
    row = {
        "run_id": "r1",
        "started_at": "2026-01-01T01:00:00+00:00",
        "minutes": 31.5,
        "images_total": 90000,
        "images_new": 1200,
        "images_failed": 0,
        "k": 120,
        "explained_variance_kept": 0.951,
        "test_accuracy": 0.9734,
        "estimated_cost_usd": 0.44,
    }
    s3.put_object(
        Bucket=bucket, Key="outputs/nightly/history/latest.json", Body=json.dumps(row).encode()
    )
    out = module.handler(
        {
            "action": "summary",
            "output_path": f"s3://{bucket}/outputs/nightly",
            "run_id": "r1",
            "cluster_id": "j-ABC",
        }
    )
    assert out["subject"] == "Fruits! nightly r1: succeeded" and len(out["subject"]) <= 100
    for expected in (
        "new images: 1200",
        "total images: 90000",
        "k (PCA components): 120",
        "explained variance: 95.1%",
        "Test accuracy: 97.3%",
        "minutes: 31.50",
        "estimated cost (USD): 0.44",
        "cluster j-ABC terminated",
        f"s3://{bucket}/outputs/nightly/history/r1/cloud.executed.ipynb",
    ):
        assert expected in out["message"], expected
    skipped = dict(row, test_accuracy=None, classifier_skipped="no Test split in the input")
    s3.put_object(
        Bucket=bucket, Key="outputs/nightly/history/latest.json", Body=json.dumps(skipped).encode()
    )
    out = module.handler(
        {
            "action": "summary",
            "output_path": f"s3://{bucket}/outputs/nightly",
            "run_id": "r1",
            "cluster_id": "j-ABC",
        }
    )
    assert "Test accuracy: n/a (no Test split in the input)" in out["message"]
    missing = module.handler(
        {
            "action": "summary",
            "output_path": f"s3://{bucket}/outputs/other",
            "run_id": "r2",
            "cluster_id": "j-ABC",
        }
    )
    assert "history row is missing" in missing["message"]


# ---------------------------------------------------------------------------------------------
# README, "Scheduled runs" / "On AWS": every command is nightly.sh or a checked aws call


def _readme_nightly_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n### On AWS (nightly EMR run)")
    heading = text.rfind("\n## ", 0, start)
    assert text.startswith("\n## Scheduled runs\n", heading), (
        "the subsection belongs under '## Scheduled runs'"
    )
    end = min(
        [i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i != -1]
        or [len(text)]
    )
    return text[start:end]


def test_readme_nightly_commands_are_checked() -> None:
    section = _readme_nightly_section()
    documented = set(
        re.findall(r"\b([A-Z][A-Z_]+)\b", (EMR / "nightly.sh").read_text().split("set -Eeuo")[0])
    )
    commands = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
        if line.strip()
    ]
    actions = set()
    for command in commands:
        words = shlex.split(command)
        while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            assert words.pop(0).split("=")[0] in documented, command
        if words[0] == "scripts/emr/nightly.sh":
            actions.add(words[1])
        else:
            assert words[:3] == ["aws", "s3", "cp"] and words[3:5] == ["--region", "eu-west-3"], (
                command
            )
            assert words[5].startswith("s3://<your-bucket>/outputs/nightly/"), command
    assert actions == {"deploy", "run-now", "describe", "remove"}
    for needed in (
        "history/runs.jsonl",
        "history/<run_id>/cloud.executed.ipynb",
        "NothingNewNoCluster",
        "cron(0 2 * * ? *)",
        "Europe/Paris",
        "$0.84",
        "~15 min",
        "tests/test_emr_nightly.py",
    ):
        assert needed in section, needed
    assert "NothingNewNoCluster" in nightly.definition(settings())["States"]
