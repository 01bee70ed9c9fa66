"""oneDNN wherever TensorFlow runs for the chain, and the cluster check (real TensorFlow, real
Spark, real worker processes, the real weights and photos).

The scenarios that need a fresh process (TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at
import; a process holds one SparkContext) run ``tests/onednn_driver.py`` with a clean
environment: no ``TF_ENABLE_ONEDNN_OPTS`` unless the test sets one. The state checked is
TensorFlow's own runtime switch (``IsMklEnabled``), which follows the variable on this CPU
(on AVX2-only x86, TensorFlow 2.20 leaves oneDNN off by itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import onednn
from helpers.cluster import executor_table, failure_sentence, job_failure_sentence

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
DRIVER = os.path.join(REPO, "tests", "onednn_driver.py")
X86 = onednn.is_x86()
#: The rule sets the variable here (x86 and aarch64).
SWITCH = onednn.has_onednn_switch()

needs_switch = pytest.mark.skipif(not SWITCH, reason="the rule turns oneDNN on x86 and aarch64")
needs_x86 = pytest.mark.skipif(not X86, reason="TensorFlow's own default is told on x86 only")


def clean_environment(**extra: str) -> dict:
    """What a new user's shell holds: no TF_ENABLE_ONEDNN_OPTS, helpers from this checkout."""
    keep = ("PATH", "HOME", "JAVA_HOME", "JDK_JAVA_OPTIONS", "LANG", "TMPDIR")
    environment = {name: os.environ[name] for name in keep if name in os.environ}
    environment.update(
        PYTHONPATH=REPO, SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2", **extra
    )
    return environment


def run_driver(tmp_path, mode: str, *args: str, **environment: str) -> dict:
    result = tmp_path / f"{mode}.json"
    completed = subprocess.run(
        [sys.executable, DRIVER, mode, str(result), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_environment(**environment),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(result.read_text())


# -- the rule, the ISA, the report line -------------------------------------------------------


def test_rule_sets_onednn_on_x86_and_aarch64_and_keeps_an_explicit_value() -> None:
    for machine in ("x86_64", "AMD64", "aarch64", "arm64"):
        unset: dict = {}
        assert onednn.enable_onednn(unset, machine=machine) == "1" and unset == {
            onednn.ONEDNN_ENV: "1"
        }, machine
        for explicit in ("0", "1", "false"):
            chosen = {onednn.ONEDNN_ENV: explicit}
            assert onednn.enable_onednn(chosen, machine=machine) == explicit
            assert chosen == {onednn.ONEDNN_ENV: explicit}
    for machine in ("ppc64le", "s390x", "riscv64"):  # no oneDNN switch in their TensorFlow
        other: dict = {}
        assert onednn.enable_onednn(other, machine=machine) == "" and other == {}, machine


def test_isa_from_cpu_flags() -> None:
    assert onednn.cpu_isa({"avx2", "fma", "sse4_2"}, machine="x86_64") == "avx2"
    assert onednn.cpu_isa({"avx2", "avx512f"}, machine="x86_64") == "avx512f"
    assert onednn.cpu_isa({"avx2", "avx512f", "avx512_vnni"}, machine="x86_64") == "avx512_vnni"
    assert onednn.cpu_isa({"avx512f", "avx512_vnni", "avx512_bf16"}, "x86_64") == "avx512_bf16"
    assert onednn.cpu_isa({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "x86_64") == "amx"
    assert onednn.cpu_isa({"sse4_2"}, machine="x86_64") == "x86-64"
    assert onednn.cpu_isa({"avx512f"}, machine="aarch64") == "aarch64"
    # This machine's, from /proc/cpuinfo: the best of its own flags.
    flags = set(onednn.cpu_flags())
    if X86:
        assert onednn.cpu_isa() == onednn.cpu_isa(flags) and ("avx2" in flags) == (
            onednn.cpu_isa() != "x86-64"
        )


def test_expected_switch_follows_the_variable_then_the_isa() -> None:
    for isa in ("avx2", "avx512_vnni", "x86-64", "aarch64"):
        assert onednn.expected_onednn("1", isa) is True
        assert onednn.expected_onednn("0", isa) is False
        assert onednn.expected_onednn("False", isa) is False
        assert onednn.expected_onednn("maybe", isa) is None
    assert [onednn.expected_onednn(None, isa) for isa in ("amx", "avx512_bf16", "avx512_vnni")] == [
        True
    ] * 3
    assert [onednn.expected_onednn(None, isa) for isa in ("avx512f", "avx2", "x86-64")] == [
        False
    ] * 3
    assert onednn.expected_onednn(None, "aarch64") is None


#: In a process where helpers' rule has not run (helpers/onednn.py loaded on its own): the
#: state told without TensorFlow, then TensorFlow's own once imported.
EXPECTED_THEN_REAL = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("onednn_alone", sys.argv[1])
onednn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(onednn)
told = onednn.process_state()
imported_before = "tensorflow" in sys.modules
import tensorflow
real = onednn.process_state()
print(json.dumps([told, imported_before, real]))
"""


@needs_x86
def test_the_state_told_without_tensorflow_is_the_one_it_then_sets() -> None:
    """The driver runs no CNN, so the manifest tells its switch without importing TensorFlow;
    with the variable unset (TensorFlow's own rule, from the ISA) that is checked against
    TensorFlow's own switch on this CPU."""
    completed = subprocess.run(
        [sys.executable, "-c", EXPECTED_THEN_REAL, os.path.join(REPO, "helpers", "onednn.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_environment(),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    told, imported_before, real = json.loads(completed.stdout.strip().splitlines()[-1])
    assert imported_before is False and told["imported"] is False and real["imported"] is True
    assert told["env"] is None and told["isa"] == onednn.cpu_isa()
    assert told["onednn"] is real["onednn"] is (onednn.cpu_isa() in onednn.ONEDNN_BY_DEFAULT)
    assert told["tensorflow"] == real["tensorflow"]


def test_report_line_names_both_sides() -> None:
    record = {
        "driver": {"onednn": True, "isa": "avx2"},
        "executors": [
            {"host": "a", "onednn": True, "isa": "avx2", "workers": 2},
            {"host": "b", "onednn": True, "isa": "avx512_vnni", "workers": 4},
        ],
    }
    assert onednn.describe(record) == "on (driver AVX2; executors AVX2 x2, AVX-512 VNNI x4)"
    record["executors"][0]["onednn"] = False
    assert onednn.describe(record) == "mixed (driver AVX2; executors AVX2 off x2, AVX-512 VNNI x4)"
    assert onednn.describe({}) == "unknown"


def test_failures_name_the_host_and_the_import() -> None:
    records = [
        {
            "host": "ip-10-0-0-11",
            "pid": 1,
            "python": "/p",
            "error": None,
            "helpers": "0.1.0",
            "tensorflow": "2.20.0",
            "onednn": True,
            "isa": "avx2",
        },
        {
            "host": "ip-10-0-0-12",
            "pid": 2,
            "python": "/p",
            "error": "cannot import tensorflow (ModuleNotFoundError: No module named 'tensorflow')",
        },
    ]
    assert failure_sentence(records) == (
        "node ip-10-0-0-12: cannot import tensorflow (ModuleNotFoundError: No module named "
        "'tensorflow'): did the bootstrap action run there?"
    )
    assert failure_sentence(records[:1]) is None
    table = executor_table(records)
    assert list(table.host) == ["ip-10-0-0-11", "ip-10-0-0-12"] and "error" in table.columns
    message = (
        "Job aborted due to stage failure: Task 0 in stage 0.0 failed 4 times, most recent "
        "failure: Lost task 0.3 in stage 0.0 (TID 3) (ip-10-0-0-13 executor 2): "
        "org.apache.spark.SparkException: Python worker exited unexpectedly (crashed)\n"
        "Caused by: java.io.EOFException\n"
    )
    assert job_failure_sentence(message) == (
        "node ip-10-0-0-13: the Python worker failed to start (Python worker exited unexpectedly "
        "(crashed)): did the bootstrap action run there?"
    )


# -- real processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_default(tmp_path_factory):
    """The chain's driver and session, TF_ENABLE_ONEDNN_OPTS unset where they started."""
    folder = tmp_path_factory.mktemp("onednn_default")
    result = run_driver(folder, "chain", str(folder / "features.npy"))
    return result, np.load(folder / "features.npy")


@pytest.fixture(scope="module")
def chain_user_off(tmp_path_factory):
    """The same with TF_ENABLE_ONEDNN_OPTS=0 set by the user."""
    folder = tmp_path_factory.mktemp("onednn_off")
    result = run_driver(folder, "chain", str(folder / "features.npy"), TF_ENABLE_ONEDNN_OPTS="0")
    return result, np.load(folder / "features.npy")


@needs_switch
def test_driver_and_chain_workers_run_onednn_when_unset(chain_default) -> None:
    result, _ = chain_default
    assert result["started_with"] is None
    assert result["driver"]["onednn"] is True and result["driver"]["env"] == "1"
    assert result["executor_env"] is None  # each worker applies the rule on its own CPU
    records = result["records"]
    assert len(records) == 2 and not any(record["error"] for record in records)
    assert all(record["onednn"] is True for record in records), records
    assert all(record["pid"] != os.getpid() for record in records)
    assert {record["isa"] for record in records} == {onednn.cpu_isa()}
    (row,) = result["table"]
    assert row["onednn"] is True and row["workers"] >= 1 and row["isa"] == onednn.cpu_isa()
    assert row["tensorflow"] and row["helpers"] and row["python"] == sys.executable


def test_a_run_starts_the_worker_daemon_the_cnn_and_the_check_then_use(chain_default) -> None:
    """WorkerStart (what a run starts as it begins) starts the one worker daemon, with one task
    in local mode (the other task slot stays free); the check's workers are forked from it."""
    result, _ = chain_default
    start = result["start"]
    assert start["ended"] and start["error"] is None and start["tasks"] == 1, start
    (daemon,) = start["daemons"]  # up before any other job of the session
    assert result["daemons_after"] == [daemon]
    assert result["probe_parents"] == [daemon]


def test_user_setting_zero_is_respected_on_driver_and_workers(chain_user_off) -> None:
    result, _ = chain_user_off
    assert result["started_with"] == "0"
    assert result["driver"]["onednn"] is False and result["driver"]["env"] == "0"
    assert result["executor_env"] == "0"  # passed on to executors (YARN does not inherit it)
    assert [record["onednn"] for record in result["records"]] == [False, False]
    assert {record["env"] for record in result["records"]} == {"0"}


@needs_switch
def test_workers_of_an_existing_session_run_onednn(tmp_path) -> None:
    # Like Livy: the JVM and pyspark's own daemon started without the variable; the workers
    # get it when they import helpers, before TensorFlow.
    result = run_driver(tmp_path, "existing")
    assert result["records"] and not any(record["error"] for record in result["records"])
    assert all(record["onednn"] is True for record in result["records"]), result["records"]


def test_features_with_onednn_match_torchvision_and_default_kernels(
    chain_default, chain_user_off
) -> None:
    from test_features import FIXTURE, MIN_COSINE, TOLERANCE, agreement

    on, off = chain_default[1], chain_user_off[1]
    assert (
        chain_default[0]["driver"]["onednn"] is SWITCH
        and chain_user_off[0]["driver"]["onednn"] is False
    )
    with np.load(FIXTURE, allow_pickle=False) as reference:
        torchvision = reference["features"]
    assert on.shape == off.shape == torchvision.shape
    # torchvision's own features (real PyTorch, committed), within the chain's tolerance...
    difference, cosine = agreement(on, torchvision)
    assert difference <= TOLERANCE and cosine >= MIN_COSINE, (difference, cosine)
    # ... and the same numbers as TensorFlow's default kernels.
    difference, cosine = agreement(on, off)
    assert difference <= TOLERANCE and cosine >= MIN_COSINE, (difference, cosine)


def test_cluster_check_names_the_node_and_the_import(tmp_path) -> None:
    bare = tmp_path / "bare"  # a Python without TensorFlow, as on a node the bootstrap missed
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = run_driver(tmp_path, "broken", str(bare / "bin" / "python"))
    import socket

    host = socket.gethostname()
    assert result["without_tensorflow"].startswith(
        f"node {host}: cannot import tensorflow (ModuleNotFoundError: No module named 'tensorflow')"
    ), result["without_tensorflow"]
    assert result["without_tensorflow"].endswith("did the bootstrap action run there?")
    # Spark's own words for a worker Python that exits at once, with the host it names
    assert result["cannot_start"].startswith(
        "node localhost: the Python worker failed to start ("
        "EOFException occurred while reading the port number "
        "from pyspark.daemon's stdout"
    ), result["cannot_start"]
    assert result["cannot_start"].endswith("did the bootstrap action run there?")
    # Starting such workers in the background ends with the error kept, not raised.
    # (Spark's words vary from one try to the next: whether the exit code was known yet.)
    assert result["start"]["ended"], result["start"]
    assert result["start"]["error"].startswith(result["cannot_start"].split(" stdout")[0])
    assert result["start"]["error"].endswith("did the bootstrap action run there?")
    assert result["cancelled_ended"] is True


# -- the run's manifest and report ------------------------------------------------------------


def test_manifest_records_the_kernels_of_driver_and_executors(pipeline_run) -> None:
    tensorflow = pipeline_run.manifest["tensorflow"]
    expected = os.environ.get(onednn.ONEDNN_ENV, "1" if SWITCH else "") not in ("0", "")
    assert tensorflow["driver"]["onednn"] is expected
    assert tensorflow["driver"]["isa"] == onednn.cpu_isa()
    assert tensorflow["executors"], tensorflow
    assert all(
        entry["onednn"] is expected and entry["isa"] == onednn.cpu_isa()
        for entry in tensorflow["executors"]
    )
    assert sum(entry["workers"] for entry in tensorflow["executors"]) >= 1
    assert tensorflow["summary"].startswith("on (driver " if expected else "off (driver ")
    assert 0 <= tensorflow["probe_seconds"] < 60
    json.dumps(tensorflow)  # plain JSON, as written to manifest.json
