#!/usr/bin/env python3
"""The nightly run on AWS: renders its state machine and the CloudFormation template nightly.yaml.

nightly.yaml holds every resource (schedule, state machine, roles, topic, helper function); two
parts of it are filled in here, so that nothing is written twice:

- the state machine definition (Amazon States Language), whose ``createCluster.sync`` parameters
  are the RunJobFlow request of cluster.py (the same cluster as create_cluster.sh) and whose
  ``addStep.sync`` runs notebooks/cloud.ipynb with papermill into one fixed output_path;
- the helper function's code, nightly_lambda.py.

Forms: ``definition`` (the ASL JSON), ``template --out FILE`` (the deployable template),
``parameters`` (the template's parameter values, one Key=Value per line), ``step-args RUN_ID``
(the papermill command of the step for that run). Settings come from the environment: those of
cluster.py, plus STACK_NAME (default fruits-nightly), INPUT_PATH (default s3://BUCKET/fruits-360),
OUTPUT_PATH (default s3://BUCKET/outputs/nightly), NOTEBOOK_URI (default
s3://BUCKET/notebooks/cloud.ipynb), COST_PER_HOUR (USD per hour of the cluster; default: instances.py's
eu-west-3 price of a node of INSTANCE_TYPE x nodes), STEP_TIMEOUT_MINUTES (default 180), CREATE_TIMEOUT_MINUTES (default 60),
SCHEDULE_EXPRESSION (default cron(0 2 * * ? *)), SCHEDULE_TIMEZONE (default Europe/Paris),
FLEXIBLE_WINDOW_MINUTES (default 15), NOTIFICATION_EMAIL (default none). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster  # noqa: E402  (the cluster definition beside this file)
import instances  # noqa: E402  (the instance types' prices, beside this file)

EMR_DIR = Path(__file__).resolve().parent
TEMPLATE = EMR_DIR / "nightly.yaml"
LAMBDA_CODE = EMR_DIR / "nightly_lambda.py"
DEFINITION_MARKER = "DefinitionString: '{}'  # rendered by nightly.py"
CODE_MARKER = "ZipFile: ''  # rendered by nightly.py"
#: Cluster states in which a cluster still costs money.
ACTIVE_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
SDK_RETRY = [
    {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 3, "BackoffRate": 2.0}
]
LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 10,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
    }
]
S3_URI = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*[A-Za-z0-9._-])?"
PATTERNS = {
    "STACK_NAME": r"[A-Za-z][A-Za-z0-9-]{0,100}",
    "INPUT_PATH": S3_URI,
    "OUTPUT_PATH": S3_URI,
    "NOTEBOOK_URI": S3_URI,
    "COST_PER_HOUR": r"[0-9]+(\.[0-9]+)?",
    "STEP_TIMEOUT_MINUTES": r"[1-9][0-9]*",
    "CREATE_TIMEOUT_MINUTES": r"[1-9][0-9]*",
    "SCHEDULE_EXPRESSION": r"(cron|rate)\([A-Za-z0-9 *?/,#L-]+\)",
    "SCHEDULE_TIMEZONE": r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*",
    "FLEXIBLE_WINDOW_MINUTES": r"[1-9][0-9]*",
    "NOTIFICATION_EMAIL": r"([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?",
}


def settings(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """cluster.py's settings for the nightly cluster, and the nightly run's own, checked."""
    env = dict(environ)
    stack = env.get("STACK_NAME") or "fruits-nightly"
    env.setdefault("CLUSTER_NAME", stack)
    env["CLUSTER_NAME"] = env["CLUSTER_NAME"] or stack
    # The stack's roles may only touch clusters that carry this tag (nightly.yaml).
    env["EXTRA_TAGS"] = " ".join(
        filter(None, [env.get("EXTRA_TAGS", ""), f"fruits-nightly={stack}"])
    )
    values = cluster.settings(env)
    bucket = values["BUCKET"]
    defaults = {
        "STACK_NAME": stack,
        "INPUT_PATH": f"s3://{bucket}/fruits-360",
        "OUTPUT_PATH": f"s3://{bucket}/outputs/nightly",
        "NOTEBOOK_URI": f"s3://{bucket}/notebooks/cloud.ipynb",
        "STEP_TIMEOUT_MINUTES": "180",
        "CREATE_TIMEOUT_MINUTES": "60",
        "SCHEDULE_EXPRESSION": "cron(0 2 * * ? *)",
        "SCHEDULE_TIMEZONE": "Europe/Paris",
        "FLEXIBLE_WINDOW_MINUTES": "15",
        "NOTIFICATION_EMAIL": "",
    }
    for name, default in defaults.items():
        values[name] = (
            (env.get(name) or default).rstrip("/")
            if name.endswith("_PATH")
            else (env.get(name) or default)
        )
    if env.get("COST_PER_HOUR"):
        values["COST_PER_HOUR"] = env["COST_PER_HOUR"]
    elif instances.node_price_per_hour(values["INSTANCE_TYPE"]) is not None:
        nodes = 1 + int(values["CORE_COUNT"])
        values["COST_PER_HOUR"] = (
            f"{instances.node_price_per_hour(values['INSTANCE_TYPE']) * nodes:.2f}"
        )
    else:
        raise cluster.SettingError(
            f"set COST_PER_HOUR to the hourly price of 1 + {values['CORE_COUNT']} {values['INSTANCE_TYPE']} "
            "nodes (EC2 + EMR), for the run's cost estimate"
        )
    for name, pattern in PATTERNS.items():
        if not re.fullmatch(pattern, values[name]):
            raise cluster.SettingError(f"{name}='{values[name]}' is not valid (expected {pattern})")
    for name in ("INPUT_PATH", "OUTPUT_PATH", "NOTEBOOK_URI"):
        if not values[name].startswith(f"s3://{bucket}/"):
            raise cluster.SettingError(f"{name} must be in the project bucket s3://{bucket}/")
    if not values["OUTPUT_PATH"].startswith(f"s3://{bucket}/outputs/"):
        raise cluster.SettingError(
            "OUTPUT_PATH must be under s3://BUCKET/outputs/ (the nodes may write only there)"
        )
    return values


def prefix(uri: str) -> str:
    """The key prefix of an s3:// location (no bucket, no slashes around)."""
    return uri.split("/", 3)[3] if uri.count("/") >= 3 else ""


def executed_notebook(values: Mapping[str, str], run_id: str) -> str:
    return f"{values['OUTPUT_PATH']}/history/{run_id}/cloud.executed.ipynb"


def step_args(values: Mapping[str, str], run_id: str) -> List[str]:
    """The papermill command of the nightly step for ``run_id``: only parameters that differ
    from the cloud notebook's defaults, and never an empty argument (command-runner.jar drops
    those)."""
    return [
        "/opt/fruits/venv/bin/papermill",
        "--kernel",
        "python3",
        "--log-output",
        values["NOTEBOOK_URI"],
        executed_notebook(values, run_id),
        "-r",
        "input_path",
        values["INPUT_PATH"],
        "-r",
        "output_path",
        values["OUTPUT_PATH"],
        "-p",
        "incremental",
        "True",
        "-r",
        "run_id",
        run_id,
        "-p",
        "cost_per_hour",
        values["COST_PER_HOUR"],
    ]


def _escape(text: str) -> str:
    """Text inside an intrinsic-function string literal (the characters ' { } \\ escaped)."""
    return re.sub(r"([\\'{}])", r"\\\1", text)


def _literal(text: str) -> str:
    return "'" + _escape(text) + "'"


RUN_ID_PATH = "$$.Execution.Name"
RUN_ID_MARK = "\0run-id\0"


def step_args_expression(values: Mapping[str, str]) -> str:
    """``States.Array(...)`` giving step_args(values, <execution name>) at run time."""
    parts = []
    for arg in step_args(values, RUN_ID_MARK):
        if arg == RUN_ID_MARK:
            parts.append(RUN_ID_PATH)
        elif RUN_ID_MARK in arg:
            before, after = arg.split(RUN_ID_MARK)
            parts.append(f"States.Format('{_escape(before)}{{}}{_escape(after)}', {RUN_ID_PATH})")
        else:
            parts.append(_literal(arg))
    return "States.Array(" + ", ".join(parts) + ")"


def _failure(state: str, cluster_id: object, logs: object, cleanup: str) -> Dict[str, object]:
    """A Pass state recording which state failed, the cluster, where its logs are and what
    became of the cluster (a later state may correct ``cleanup``)."""
    params: Dict[str, object] = {"state": state, "error.$": "$.error", "cleanup": cleanup}
    params["cluster.$" if str(cluster_id).startswith("$") else "cluster"] = cluster_id
    params["logs.$" if str(logs).startswith("States.") else "logs"] = logs
    return {"Type": "Pass", "Parameters": params, "ResultPath": "$.failure"}


def definition(values: Mapping[str, str]) -> Dict[str, object]:
    """The state machine (ASL). ``${HelperFunctionArn}`` and ``${TopicArn}`` are filled in by
    CloudFormation (DefinitionSubstitutions)."""
    bucket, name = values["BUCKET"], values["CLUSTER_NAME"]
    catch = lambda nxt: [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": nxt}]  # noqa: E731
    step_logs = f"States.Format('s3://{bucket}/logs/{{}}/steps/', $.cluster.ClusterId)"
    states: Dict[str, Dict[str, object]] = {
        "CheckForNewImages": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Comment": "Is any image under input_path newer than the run published in output_path?",
            "Parameters": {
                "FunctionName": "${HelperFunctionArn}",
                "Payload": {
                    "action": "check",
                    "input_path": values["INPUT_PATH"],
                    "output_path": values["OUTPUT_PATH"],
                },
            },
            "ResultSelector": {"new.$": "$.Payload.new", "reason.$": "$.Payload.reason"},
            "ResultPath": "$.check",
            "TimeoutSeconds": 360,
            "Retry": LAMBDA_RETRY,
            "Catch": catch("CheckFailed"),
            "Next": "AnythingNew",
        },
        "AnythingNew": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.check.new", "BooleanEquals": True, "Next": "CreateCluster"}
            ],
            "Default": "NothingNew",
        },
        "NothingNew": {
            "Type": "Pass",
            "Parameters": {
                "result": "nothing new: no cluster was started",
                "reason.$": "$.check.reason",
            },
            "Next": "NothingNewNoCluster",
        },
        "NothingNewNoCluster": {
            "Type": "Succeed",
            "Comment": "Nothing new under input_path since the last published run: no cluster, no cost.",
        },
        "CheckFailed": dict(
            _failure(
                "CheckForNewImages",
                "none",
                "the helper function's log group (stack output HelperLogGroup)",
                "no cluster was started",
            ),
            Next="NotifyFailure",
        ),
        "CreateCluster": {
            "Type": "Task",
            "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
            "Comment": "The cluster of create_cluster.sh (cluster.py); it also ends itself when idle.",
            "Parameters": cluster.run_job_flow(values),
            "ResultPath": "$.cluster",
            "TimeoutSeconds": 60 * int(values["CREATE_TIMEOUT_MINUTES"]),
            "Catch": catch("CreateClusterFailed"),
            "Next": "RunNotebook",
        },
        "CreateClusterFailed": dict(
            _failure(
                "CreateCluster",
                "the cluster named " + name + " started by this run, if any",
                f"s3://{bucket}/logs/<cluster-id>/node/ (bootstrap actions)",
                "this run's active cluster, if any, was looked for and terminated",
            ),
            Next="FindLeftoverCluster",
        ),
        "FindLeftoverCluster": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:emr:listClusters",
            "Comment": "A failed or timed-out createCluster.sync can leave a cluster: find this run's.",
            "Parameters": {
                "CreatedAfter.$": "$$.Execution.StartTime",
                "ClusterStates": ACTIVE_STATES,
            },
            "ResultPath": "$.leftover",
            "Retry": SDK_RETRY,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.cleanup_error",
                    "Next": "LeftoverUnknown",
                }
            ],
            "Next": "AnyLeftoverCluster",
        },
        "AnyLeftoverCluster": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": "$.leftover.Clusters[0]",
                    "IsPresent": True,
                    "Next": "TerminateLeftoverClusters",
                }
            ],
            "Default": "NoLeftoverCluster",
        },
        "NoLeftoverCluster": {
            "Type": "Pass",
            "Comment": "No active cluster was created by this run: nothing to terminate.",
            "Result": "no active cluster of this run",
            "ResultPath": "$.failure.cluster",
            "Next": "NotifyFailure",
        },
        "LeftoverUnknown": {
            "Type": "Pass",
            "Comment": "The clusters could not be listed: a cluster of this run, if any, ends itself "
            "after IDLE_TIMEOUT seconds (its AutoTerminationPolicy).",
            "Result": f"UNKNOWN: the clusters could not be listed; a cluster named {name} started by "
            f"this run ends itself after {values['IDLE_TIMEOUT']} s idle",
            "ResultPath": "$.failure.cleanup",
            "Next": "NotifyFailure",
        },
        "CleanupIncomplete": {
            "Type": "Pass",
            "Comment": "Terminating the cluster failed (after retries): say so, loudly.",
            "Result": f"FAILED: the cluster could not be terminated; terminate it by hand (aws emr "
            f"terminate-clusters); it ends itself after {values['IDLE_TIMEOUT']} s idle",
            "ResultPath": "$.failure.cleanup",
            "Next": "NotifyFailure",
        },
        "TerminateLeftoverClusters": {
            "Type": "Map",
            "ItemsPath": "$.leftover.Clusters",
            "MaxConcurrency": 5,
            "ItemSelector": {"id.$": "$$.Map.Item.Value.Id", "name.$": "$$.Map.Item.Value.Name"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "IsThisRunsCluster",
                "States": {
                    "IsThisRunsCluster": {
                        "Type": "Choice",
                        "Choices": [
                            {
                                "Variable": "$.name",
                                "StringEquals": name,
                                "Next": "TerminateLeftoverCluster",
                            }
                        ],
                        "Default": "NotThisRunsCluster",
                    },
                    "TerminateLeftoverCluster": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
                        "Parameters": {"ClusterId.$": "$.id"},
                        "TimeoutSeconds": 1800,
                        "Retry": SDK_RETRY,
                        "End": True,
                    },
                    "NotThisRunsCluster": {"Type": "Pass", "End": True},
                },
            },
            "ResultPath": None,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.cleanup_error",
                    "Next": "CleanupIncomplete",
                }
            ],
            "Next": "NotifyFailure",
        },
        "RunNotebook": {
            "Type": "Task",
            "Resource": "arn:aws:states:::elasticmapreduce:addStep.sync",
            "Comment": "papermill runs cloud.ipynb incrementally into output_path; the executed "
            "notebook goes to output_path/history/<run_id>/.",
            "Parameters": {
                "ClusterId.$": "$.cluster.ClusterId",
                "Step": {
                    "Name": f"{name}-papermill",
                    "ActionOnFailure": "TERMINATE_CLUSTER",
                    "HadoopJarStep": {
                        "Jar": "command-runner.jar",
                        "Args.$": step_args_expression(values),
                    },
                },
            },
            "ResultPath": "$.step",
            "TimeoutSeconds": 60 * int(values["STEP_TIMEOUT_MINUTES"]),
            "Catch": catch("RunNotebookFailed"),
            "Next": "TerminateCluster",
        },
        "RunNotebookFailed": dict(
            _failure("RunNotebook", "$.cluster.ClusterId", step_logs, "terminated by this run"),
            Next="TerminateClusterAfterFailure",
        ),
        "TerminateClusterAfterFailure": {
            "Type": "Task",
            "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
            "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
            "ResultPath": None,
            "TimeoutSeconds": 1800,
            "Retry": SDK_RETRY,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.cleanup_error",
                    "Next": "CleanupIncomplete",
                }
            ],
            "Next": "NotifyFailure",
        },
        "TerminateCluster": {
            "Type": "Task",
            "Resource": "arn:aws:states:::elasticmapreduce:terminateCluster.sync",
            "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
            "ResultPath": None,
            "TimeoutSeconds": 1800,
            "Retry": SDK_RETRY,
            "Catch": catch("TerminateClusterFailed"),
            "Next": "Summarize",
        },
        "TerminateClusterFailed": dict(
            _failure(
                "TerminateCluster",
                "$.cluster.ClusterId",
                step_logs,
                f"FAILED: the notebook ran, but the cluster could not be terminated; terminate it by "
                f"hand (aws emr terminate-clusters); it ends itself after {values['IDLE_TIMEOUT']} s idle",
            ),
            Next="NotifyFailure",
        ),
        "Summarize": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${HelperFunctionArn}",
                "Payload": {
                    "action": "summary",
                    "output_path": values["OUTPUT_PATH"],
                    "run_id.$": RUN_ID_PATH,
                    "cluster_id.$": "$.cluster.ClusterId",
                },
            },
            "ResultSelector": {"subject.$": "$.Payload.subject", "message.$": "$.Payload.message"},
            "ResultPath": "$.summary",
            "TimeoutSeconds": 120,
            "Retry": LAMBDA_RETRY,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.error",
                    "Next": "SummaryUnavailable",
                }
            ],
            "Next": "NotifySuccess",
        },
        "SummaryUnavailable": {
            "Type": "Pass",
            "ResultPath": "$.summary",
            "Parameters": {
                "subject": "Fruits! nightly run succeeded",
                "message.$": f"States.Format('Fruits! nightly run {{}} succeeded (cluster {{}} "
                f"terminated) but its summary could not be read: {{}}. Outputs: "
                f"{values['OUTPUT_PATH']}/', $$.Execution.Name, $.cluster.ClusterId, "
                f"States.JsonToString($.error))",
            },
            "Next": "NotifySuccess",
        },
        "NotifySuccess": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {
                "TopicArn": "${TopicArn}",
                "Subject.$": "$.summary.subject",
                "Message.$": "$.summary.message",
            },
            "ResultPath": None,
            "Retry": SDK_RETRY,
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.error",
                    "Next": "NotificationFailed",
                }
            ],
            "Next": "Succeeded",
        },
        "Succeeded": {"Type": "Succeed"},
        "NotifyFailure": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {
                "TopicArn": "${TopicArn}",
                "Subject.$": "States.Format('Fruits! nightly run FAILED in {}', $.failure.state)",
                "Message.$": "States.Format('The Fruits! nightly run {} failed in state {}.\n"
                "Cluster: {}\nCluster clean-up: {}\n"
                "Logs: {}\nError: {}\nExecution: {}', $$.Execution.Name, "
                "$.failure.state, $.failure.cluster, $.failure.cleanup, $.failure.logs, "
                "States.JsonToString($.failure.error), $$.Execution.Id)",
            },
            "ResultPath": None,
            "Retry": SDK_RETRY,
            "Catch": [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "Failed"}
            ],
            "Next": "Failed",
        },
        "NotificationFailed": {
            "Type": "Fail",
            "Error": "NotificationFailed",
            "Cause": "the run succeeded and its cluster was terminated, but the SNS notification failed",
        },
        "Failed": {
            "Type": "Fail",
            "Error": "NightlyRunFailed",
            "Cause": "see the SNS notification and this execution's history",
        },
    }
    return {
        "Comment": f"Fruits! nightly featurization ({values['STACK_NAME']}): new images under "
        f"{values['INPUT_PATH']} -> transient EMR cluster -> {values['OUTPUT_PATH']}",
        "StartAt": "CheckForNewImages",
        "States": states,
    }


def parameters(values: Mapping[str, str]) -> List[str]:
    """The template's parameters for these settings, as ``Key=Value``."""
    return [
        f"Bucket={values['BUCKET']}",
        f"InputPrefix={prefix(values['INPUT_PATH'])}",
        f"OutputPrefix={prefix(values['OUTPUT_PATH'])}",
        f"ScheduleExpression={values['SCHEDULE_EXPRESSION']}",
        f"ScheduleTimezone={values['SCHEDULE_TIMEZONE']}",
        f"FlexibleWindowMinutes={values['FLEXIBLE_WINDOW_MINUTES']}",
        f"NotificationEmail={values['NOTIFICATION_EMAIL']}",
        f"ServiceRoleName={values['SERVICE_ROLE']}",
        f"InstanceProfileName={values['INSTANCE_PROFILE']}",
    ]


def _indent(text: str, spaces: int) -> str:
    return "".join(
        (" " * spaces + line) if line.strip() else line for line in text.splitlines(True)
    )


def template(values: Mapping[str, str]) -> str:
    """nightly.yaml with the state machine and the helper function's code filled in."""
    text = TEMPLATE.read_text()
    code = LAMBDA_CODE.read_text()
    if len(code) > 4096:
        raise cluster.SettingError(
            f"{LAMBDA_CODE.name} is {len(code)} characters; inline code is limited to 4096"
        )
    for marker in (DEFINITION_MARKER, CODE_MARKER):
        if text.count(marker) != 1:
            raise cluster.SettingError(f"nightly.yaml must hold the line '{marker}' once")
    indent = len(re.search(r"^( *)" + re.escape(CODE_MARKER), text, re.MULTILINE).group(1))
    text = text.replace(CODE_MARKER, "ZipFile: |\n" + _indent(code, indent + 2).rstrip("\n"))
    # A JSON string (DefinitionString), in YAML's double-quoted form (JSON's string syntax).
    asl = json.dumps(json.dumps(definition(values), separators=(",", ":")))
    return text.replace(DEFINITION_MARKER, "DefinitionString: " + asl)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("form", choices=("definition", "template", "parameters", "step-args"))
    parser.add_argument("run_id", nargs="?", help="for step-args")
    parser.add_argument("--out", type=Path, help="for template: the file to write")
    args = parser.parse_args(argv)
    try:
        values = settings()
        if args.form == "definition":
            print(json.dumps(definition(values), indent=2))
        elif args.form == "parameters":
            print("\n".join(parameters(values)))
        elif args.form == "step-args":
            if not args.run_id or not re.fullmatch(r"[A-Za-z0-9._-]+", args.run_id):
                parser.error("step-args needs a RUN_ID (letters, digits, . _ -)")
            print(json.dumps(step_args(values, args.run_id), indent=2))
        else:
            if args.out is None:
                parser.error("template needs --out FILE")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(template(values))
    except cluster.SettingError as error:
        print(f"nightly.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
