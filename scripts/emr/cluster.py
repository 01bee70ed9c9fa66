#!/usr/bin/env python3
"""The project's EMR cluster definition, one source for create_cluster.sh and the nightly run.

Builds the RunJobFlow request of the cluster from the JSON files beside this script
(instance-groups.json, configurations.json, bootstrap-actions.json) and the settings below, and
renders it two ways:

- ``create-cluster-args``: the options of ``aws emr create-cluster`` (one per line, the JSON
  files filled in under ``--render-dir``), used by create_cluster.sh;
- ``run-job-flow``: the RunJobFlow request itself (JSON), the ``Parameters`` of the nightly state
  machine's ``createCluster.sync`` task (scripts/emr/nightly.py).

The AWS CLI turns the first into the second; tests/test_emr_nightly.py checks, with the real CLI,
that both are the same request. Settings come from the environment, as in create_cluster.sh:
BUCKET (required), KEY_NAME, RELEASE_LABEL, INSTANCE_TYPE, CORE_COUNT, INSTANCE_PROFILE,
SERVICE_ROLE, CLUSTER_NAME, IDLE_TIMEOUT, EBS_ROOT_GB, OWNER, DATA_CLASSIFICATION, SUBNET_ID,
ADDITIONAL_MASTER_SG, EXTRA_TAGS (space-separated key=value). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Mapping

EMR_DIR = Path(__file__).resolve().parent
PYPROJECT = EMR_DIR.parent.parent / "pyproject.toml"
APPLICATIONS = ("Hadoop", "Spark", "Livy", "JupyterHub")
TEMPLATES = ("instance-groups.json", "configurations.json", "bootstrap-actions.json")
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]*$")
DEFAULTS = {
    "RELEASE_LABEL": "emr-7.5.0",
    "INSTANCE_TYPE": "m6i.xlarge",  # instances.best_default(): most images per dollar (projected)
    "CORE_COUNT": "2",
    "INSTANCE_PROFILE": "fruits-emr-ec2",
    "SERVICE_ROLE": "EMR_DefaultRole",
    "CLUSTER_NAME": "fruits-featurization",
    "IDLE_TIMEOUT": "3600",
    "EBS_ROOT_GB": "32",
    "DATA_CLASSIFICATION": "internal",
}
#: What each setting must look like (the message names the setting when it does not).
PATTERNS = {
    "BUCKET": r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    "KEY_NAME": r"[A-Za-z0-9._-]*",
    "RELEASE_LABEL": r"emr-7\.[0-9]+\.[0-9]+",
    "INSTANCE_TYPE": r"[a-z0-9]+\.[a-z0-9]+",
    "CORE_COUNT": r"[1-9][0-9]*",
    "INSTANCE_PROFILE": r"[A-Za-z0-9+=,.@_-]+",
    "SERVICE_ROLE": r"[A-Za-z0-9+=,.@_-]+",
    "CLUSTER_NAME": r"[A-Za-z0-9._-]+",
    "IDLE_TIMEOUT": r"[0-9]+",
    "EBS_ROOT_GB": r"[0-9]+",
    "OWNER": r"[A-Za-z0-9._@+-]+",
    "DATA_CLASSIFICATION": r"[A-Za-z0-9._-]+",
    "SUBNET_ID": r"(subnet-[0-9a-f]+)?",
    "ADDITIONAL_MASTER_SG": r"(sg-[0-9a-f]+|<sg-id>)?",
    "EXTRA_TAGS": r"([A-Za-z0-9._-]+=[A-Za-z0-9._@+-]*( +[A-Za-z0-9._-]+=[A-Za-z0-9._@+-]*)*)?",
}


class SettingError(ValueError):
    """A setting is missing or malformed."""


def settings(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """The cluster settings from ``environ`` with their defaults, each checked."""
    values = {name: environ.get(name, "") or DEFAULTS.get(name, "") for name in PATTERNS}
    values["OWNER"] = values["OWNER"] or environ.get("USER", "") or "unknown"
    if not values["BUCKET"]:
        raise SettingError("set BUCKET to the project's S3 bucket name")
    for name, pattern in PATTERNS.items():
        if not re.fullmatch(pattern, values[name]):
            raise SettingError(f"{name}='{values[name]}' is not valid (expected {pattern})")
    return values


def _fill(text: str, values: Mapping[str, str]) -> object:
    """A JSON template with ``"{{#NAME}}"`` as a number and ``{{NAME}}`` as a string, parsed."""
    for name, value in values.items():
        if not SAFE_VALUE.match(value):
            raise SettingError(f"unsafe value for {name}: '{value}'")
        text = text.replace('"{{#' + name + '}}"', value).replace("{{" + name + "}}", value)
    left = re.search(r"\{\{[^}]*\}\}", text)
    if left:
        raise SettingError(f"placeholder {left.group(0)} left in a cluster template")
    return json.loads(text)


def helpers_version(pyproject: Path = PYPROJECT) -> str:
    """The ``version`` of the ``[project]`` table of ``pyproject.toml``: the helpers' one version."""
    section = ""
    for line in pyproject.read_text().splitlines():
        header = re.fullmatch(r"\s*\[([^\]]+)\]\s*(#.*)?", line)
        if header:
            section = header.group(1).strip()
            continue
        found = re.fullmatch(r'\s*version\s*=\s*"([^"]+)"\s*(#.*)?', line)
        if section == "project" and found:
            return found.group(1)
    raise SettingError(f"no version in the [project] table of {pyproject}")


def helpers_wheel() -> str:
    """File name of the helpers wheel that ``pip wheel`` builds for this version."""
    return f"fruits_helpers-{helpers_version()}-py3-none-any.whl"


def cli_files(values: Mapping[str, str]) -> Dict[str, object]:
    """The three JSON files of ``aws emr create-cluster`` (CLI shapes), filled in."""
    fill = {
        "BUCKET": values["BUCKET"],
        "INSTANCE_TYPE": values["INSTANCE_TYPE"],
        "CORE_COUNT": values["CORE_COUNT"],
        "HELPERS_WHEEL": helpers_wheel(),
    }
    return {name: _fill((EMR_DIR / name).read_text(), fill) for name in TEMPLATES}


def tags(values: Mapping[str, str]) -> List[Dict[str, str]]:
    pairs = [
        ("project", "fruits"),
        ("owner", values["OWNER"]),
        ("data-classification", values["DATA_CLASSIFICATION"]),
        ("for-use-with-amazon-emr-managed-policies", "true"),
    ]
    pairs += [tuple(tag.split("=", 1)) for tag in values["EXTRA_TAGS"].split()]
    return [{"Key": key, "Value": value} for key, value in pairs]


def run_job_flow(values: Mapping[str, str]) -> Dict[str, object]:
    """The RunJobFlow request (API shapes), as the AWS CLI sends it for create_cluster_args."""
    files = cli_files(values)
    groups = []
    for group in files["instance-groups.json"]:
        api = {
            "Name": group["Name"],
            "InstanceType": group["InstanceType"],
            "InstanceCount": group["InstanceCount"],
            "InstanceRole": group["InstanceGroupType"].upper(),
            "Market": "ON_DEMAND",
        }
        unknown = set(group) - {"Name", "InstanceGroupType", "InstanceType", "InstanceCount"}
        if unknown:
            raise SettingError(
                f"instance-groups.json: fields {sorted(unknown)} are not mapped here"
            )
        groups.append(api)
    instances: Dict[str, object] = {
        "InstanceGroups": groups,
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    }
    if values["KEY_NAME"]:
        instances["Ec2KeyName"] = values["KEY_NAME"]
    if values["SUBNET_ID"]:
        instances["Ec2SubnetId"] = values["SUBNET_ID"]
    if values["ADDITIONAL_MASTER_SG"]:
        instances["AdditionalMasterSecurityGroups"] = [values["ADDITIONAL_MASTER_SG"]]
    return {
        "Name": values["CLUSTER_NAME"],
        "ReleaseLabel": values["RELEASE_LABEL"],
        "LogUri": f"s3://{values['BUCKET']}/logs/",
        "ServiceRole": values["SERVICE_ROLE"],
        "VisibleToAllUsers": True,
        "Tags": tags(values),
        "Instances": instances,
        "JobFlowRole": values["INSTANCE_PROFILE"],
        "Applications": [{"Name": name} for name in APPLICATIONS],
        "Configurations": files["configurations.json"],
        "BootstrapActions": [
            {
                "Name": action["Name"],
                "ScriptBootstrapAction": {"Path": action["Path"], "Args": action["Args"]},
            }
            for action in files["bootstrap-actions.json"]
        ],
        "EbsRootVolumeSize": int(values["EBS_ROOT_GB"]),
        "AutoTerminationPolicy": {"IdleTimeout": int(values["IDLE_TIMEOUT"])},
    }


def create_cluster_args(values: Mapping[str, str], render_dir: Path) -> List[str]:
    """The options of ``aws emr create-cluster`` for the same request; writes the JSON files."""
    render_dir.mkdir(parents=True, exist_ok=True)
    for name, content in cli_files(values).items():
        (render_dir / name).write_text(json.dumps(content, indent=2) + "\n")
    ec2 = f"KeyName={values['KEY_NAME']}," if values["KEY_NAME"] else ""
    ec2 += f"InstanceProfile={values['INSTANCE_PROFILE']}"
    if values["SUBNET_ID"]:
        ec2 += f",SubnetId={values['SUBNET_ID']}"
    if values["ADDITIONAL_MASTER_SG"]:
        ec2 += f",AdditionalMasterSecurityGroups=[{values['ADDITIONAL_MASTER_SG']}]"
    return [
        "--name",
        values["CLUSTER_NAME"],
        "--release-label",
        values["RELEASE_LABEL"],
        "--applications",
        *(f"Name={name}" for name in APPLICATIONS),
        "--instance-groups",
        f"file://{render_dir / 'instance-groups.json'}",
        "--configurations",
        f"file://{render_dir / 'configurations.json'}",
        "--bootstrap-actions",
        f"file://{render_dir / 'bootstrap-actions.json'}",
        "--ec2-attributes",
        ec2,
        "--service-role",
        values["SERVICE_ROLE"],
        "--log-uri",
        f"s3://{values['BUCKET']}/logs/",
        "--auto-termination-policy",
        f"IdleTimeout={values['IDLE_TIMEOUT']}",
        "--ebs-root-volume-size",
        values["EBS_ROOT_GB"],
        "--tags",
        *(f"{tag['Key']}={tag['Value']}" for tag in tags(values)),
    ]


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("form", choices=("run-job-flow", "create-cluster-args", "helpers-wheel"))
    parser.add_argument(
        "--render-dir", type=Path, help="where create-cluster-args writes its JSON files"
    )
    args = parser.parse_args(argv)
    try:
        if args.form == "helpers-wheel":
            print(helpers_wheel())
            return 0
        values = settings()
        if args.form == "run-job-flow":
            print(json.dumps(run_job_flow(values), indent=2))
        else:
            if args.render_dir is None:
                parser.error("create-cluster-args needs --render-dir")
            print("\n".join(create_cluster_args(values, args.render_dir)))
    except SettingError as error:
        print(f"cluster.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
