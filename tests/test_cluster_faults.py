"""Executor faults on a real Spark standalone cluster: a worker dies in the middle of featurization.

The test starts a Master and two Workers (one core each, one JVM each, on 127.0.0.1), runs the
whole chain from a driver in another process (``tests/cluster_driver.py``: the test process may
already hold a local SparkContext), and SIGKILLs one worker's whole process tree (Worker JVM,
its executor JVM, the executor's Python workers) once some featurization tasks have finished
but not all. The run must still succeed, with every image featurized exactly once.

Whether the kill really happened mid-featurization is read from the driver's status API: the
featurization job is the first SQL execution that evaluates a Python UDF; its job must be
RUNNING with at least one task done and several left when the kill is sent, and afterwards the
driver must report the killed executor as removed and the lost task as failed (then retried).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Dict, List, Optional

import psutil
import pyarrow.parquet as pq
import pytest

from conftest import REPO, copy_subset

pytestmark = pytest.mark.slow

DRIVER = os.path.join(REPO, "tests", "cluster_driver.py")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
WORKERS = 2

#: Images per Spark task: 60 images make 10 featurization tasks over the 2 one-core executors.
FILES_PER_TASK = 6

STARTUP_TIMEOUT_S = 120  # master and both workers ALIVE
DRIVER_TIMEOUT_S = 420  # the whole chain, kill and recovery included


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError as error:
        return f"({path}: {error})"


def process_tree(pid: int) -> List[psutil.Process]:
    """``pid`` and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def session_members(session_ids) -> List[psutil.Process]:
    """Live (non-zombie) processes in any of the sessions ``session_ids``."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(process.pid) in session_ids:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def sigkill_all(processes: List[psutil.Process]) -> List[psutil.Process]:
    """SIGKILL ``processes``; return those still alive 30 s later."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(processes, timeout=30)
    return alive


class Cluster:
    """A Spark standalone Master and Workers on 127.0.0.1, plus the processes run against it.

    Every process is started in a session of its own (``start_new_session``): its session id is
    its pid, and everything it spawns (executor JVMs, ``pyspark.daemon``, which moves to a
    process group of its own, and the Python workers it forks) stays in that session, so
    :meth:`stop` can find and end all of them.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.logs = os.path.join(root, "logs")
        os.makedirs(self.logs)
        conf_dir = os.path.join(root, "conf")  # empty: no stray spark-defaults / spark-env
        os.makedirs(conf_dir)
        spark_home = os.path.dirname(os.path.abspath(__import__("pyspark").__file__))
        self.spark_class = os.path.join(spark_home, "bin", "spark-class")
        self.env = dict(
            os.environ,
            SPARK_HOME=spark_home,
            SPARK_CONF_DIR=conf_dir,
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_DAEMON_MEMORY="256m",
            SPARK_DAEMON_JAVA_OPTS="-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONUNBUFFERED="1",
        )
        for name in ("PYSPARK_SUBMIT_ARGS", "SPARK_MASTER", "MASTER", "FRUITS_S3_ENDPOINT"):
            self.env.pop(name, None)
        self.processes: Dict[str, subprocess.Popen] = {}
        self.master_url = ""
        self.master_ui = ""
        self.worker_names: List[str] = []

    def log(self, name: str) -> str:
        return os.path.join(self.logs, f"{name}.log")

    def spawn(self, name: str, argv: List[str]) -> subprocess.Popen:
        with open(self.log(name), "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def _wait_for(self, what: str, check, timeout: float, watch: List[str]):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            for name in watch:
                if self.processes[name].poll() is not None:
                    pytest.fail(
                        f"{name} exited ({self.processes[name].returncode}) while "
                        f"waiting for {what}:\n{tail(self.log(name))}"
                    )
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {name}\n{tail(self.log(name), 20)}" for name in watch)
                pytest.fail(f"no {what} within {timeout:.0f} s\n{logs}")
            time.sleep(0.5)

    def start(self, workers: int) -> None:
        master_port, master_ui_port = free_port(), free_port()
        self.spawn(
            "master",
            [
                self.spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(master_port),
                "--webui-port",
                str(master_ui_port),
            ],
        )

        def master_addresses():
            text = tail(self.log("master"), 400)
            url = re.search(r"Starting Spark master at (spark://\S+)", text)
            ui = re.search(r"MasterWebUI.*started at (http://\S+)", text)
            return (url.group(1), ui.group(1)) if url and ui else None

        self.master_url, self.master_ui = self._wait_for(
            "master", master_addresses, STARTUP_TIMEOUT_S, ["master"]
        )
        for index in range(workers):
            name = f"worker-{index}"
            work_dir = os.path.join(self.root, name)
            os.makedirs(work_dir)
            self.spawn(
                name,
                [
                    self.spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--work-dir",
                    work_dir,
                    "--webui-port",
                    str(free_port()),
                    self.master_url,
                ],
            )
            self.worker_names.append(name)

        def all_alive():
            try:
                state = get_json(self.master_ui + "/json/")
            except OSError:
                return None
            alive = [w for w in state["workers"] if w["state"] == "ALIVE"]
            return alive if len(alive) == workers else None

        self._wait_for(
            f"{workers} ALIVE workers", all_alive, STARTUP_TIMEOUT_S, ["master"] + self.worker_names
        )

    def master_state(self):
        return get_json(self.master_ui + "/json/")

    def stop(self) -> List[str]:
        """End everything started and all it spawned; return what outlived that.

        Every member of the started sessions is first frozen with SIGSTOP, sweeping until no
        new member appears: a stopped process cannot spawn, so a Worker cannot launch one more
        executor between the snapshot and the kill (a killed driver or worker makes the Master
        reschedule). Then all of them get SIGKILL. Only processes still alive after that are
        reported: they would be leaks.
        """
        sessions = {process.pid for process in self.processes.values()}
        frozen: Dict[int, psutil.Process] = {}
        for _ in range(20):
            fresh = [p for p in session_members(sessions) if p.pid not in frozen]
            if not fresh:
                break
            for process in fresh:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGSTOP)
                frozen[process.pid] = process
        sigkill_all(list(frozen.values()))
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        left = session_members(sessions)
        described = []
        for process in left:
            with contextlib.suppress(psutil.Error):
                described.append(f"{process.pid} {' '.join(process.cmdline()[:4])}")
        survivors = sigkill_all(left)
        return described + [f"{p.pid} survived SIGKILL" for p in survivors]


@pytest.fixture
def cluster(tmp_path):
    """A running Master and two Workers; stopped, with every process they spawned, afterwards."""
    cluster = Cluster(str(tmp_path / "cluster"))
    try:
        cluster.start(WORKERS)
        yield cluster
    finally:
        left_behind = cluster.stop()
        assert not left_behind, f"processes left behind by the cluster test: {left_behind}"


class DriverStatus:
    """The driver's status REST API (``/api/v1`` on its UI)."""

    def __init__(self, ui: str, app_id: str) -> None:
        self.base = f"{ui}/api/v1/applications/{app_id}"

    def get(self, endpoint: str):
        return get_json(f"{self.base}/{endpoint}")

    def featurization_execution(self) -> Optional[dict]:
        """The first SQL execution that evaluates a Python UDF: the featurization write."""
        executions = self.get("sql?details=false&planDescription=true&offset=0&length=10000")
        python = [e for e in executions if "EvalPython" in e.get("planDescription", "")]
        return min(python, key=lambda e: e["id"]) if python else None


def executor_host(cluster: Cluster, executor_id: str) -> Optional[str]:
    """The worker whose process tree holds the executor JVM ``--executor-id executor_id``."""
    for name in cluster.worker_names:
        for process in process_tree(cluster.processes[name].pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                argv = process.cmdline()
                if "--executor-id" in argv and argv[argv.index("--executor-id") + 1] == executor_id:
                    return name
    return None


def wait_for_driver_file(cluster: Cluster, path: str, driver: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if driver.poll() is not None:
            pytest.fail(
                f"driver exited ({driver.returncode}) before writing {path}:\n"
                f"{tail(cluster.log('driver'))}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"driver wrote no {path} within {timeout:.0f} s:\n{tail(cluster.log('driver'))}"
            )
        time.sleep(0.5)
    with open(path) as handle:
        return json.load(handle)


def kill_worker_mid_featurization(cluster: Cluster, status: DriverStatus, driver, deadline):
    """Wait until featurization has finished some tasks but not all, then SIGKILL the whole
    process tree of a worker whose executor is running a task. Returns what was seen."""
    job_id = None
    while True:
        if driver.poll() is not None:
            pytest.fail(
                f"driver exited ({driver.returncode}) before the kill:\n"
                f"{tail(cluster.log('driver'))}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"featurization never reached the kill point:\n{tail(cluster.log('driver'))}"
            )
        try:
            if job_id is None:
                execution = status.featurization_execution()
                jobs = (execution or {}).get("runningJobIds") or (execution or {}).get(
                    "successJobIds"
                )
                if jobs:
                    job_id = min(jobs)
            if job_id is not None:
                job = status.get(f"jobs/{job_id}")
                assert job["status"] == "RUNNING", (
                    f"featurization job {job_id} already {job['status']} before any kill: {job}"
                )
                if (
                    job["numCompletedTasks"] >= 1
                    and job["numTasks"] - job["numCompletedTasks"] >= 3
                ):
                    busy = [
                        e["id"]
                        for e in status.get("executors")
                        if e["id"] != "driver" and e["activeTasks"] > 0
                    ]
                    target = next(filter(None, (executor_host(cluster, e) for e in busy)), None)
                    if target is not None:
                        break
        except OSError:
            pass  # the UI is busy or not up yet
        time.sleep(0.25)

    executor_id = next(e for e in busy if executor_host(cluster, e) == target)
    worker = cluster.processes[target]
    tree = process_tree(worker.pid)
    killed = [f"{p.pid} {p.name()}" for p in tree]
    survivors = sigkill_all(tree)
    survivors += sigkill_all(session_members({worker.pid}))  # forked after the tree was listed
    assert not survivors, f"{target}: still alive after SIGKILL: {survivors}"
    worker.wait(timeout=30)
    assert any("java" in name for name in killed[1:]), f"{target} had no executor JVM: {killed}"
    assert any("python" in name for name in killed), f"{target} had no Python worker: {killed}"
    return {
        "job": job,
        "job_id": job_id,
        "worker": target,
        "executor_id": executor_id,
        "killed": killed,
    }


def image_paths(folder: str) -> List[str]:
    return sorted(
        path
        for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
        if path.lower().endswith(IMAGE_SUFFIXES)
    )


def published(output: str, name: str) -> str:
    """Local folder of output ``name``, as the top-level ``manifest.json`` names it."""
    with open(os.path.join(output, "manifest.json")) as handle:
        location = json.load(handle)["outputs"][name]
    if isinstance(location, list):  # features: a full run has one folder
        (location,) = location
    location = re.sub(r"^file:(//)?", "", location)
    return location if os.path.isabs(location) else os.path.join(output, location)


def test_worker_killed_mid_featurization_loses_no_image(cluster, tmp_path):
    started = time.monotonic()
    images = copy_subset(str(tmp_path / "images"), classes=3, train=16, test=4)
    expected = image_paths(images)
    output = str(tmp_path / "output")
    state = str(tmp_path / "driver")
    os.makedirs(state)

    driver = cluster.spawn(
        "driver",
        [
            sys.executable,
            DRIVER,
            cluster.master_url,
            images,
            output,
            state,
            "--files-per-task",
            str(FILES_PER_TASK),
            "--conf",
            "spark.ui.showConsoleProgress=false",
            "--conf",
            "spark.executor.memory=768m",
        ],
    )
    deadline = started + DRIVER_TIMEOUT_S
    session = wait_for_driver_file(
        cluster, os.path.join(state, "session.json"), driver, deadline - time.monotonic()
    )
    assert session["master"] == cluster.master_url
    status = DriverStatus(session["ui"], session["app_id"])

    kill = kill_worker_mid_featurization(cluster, status, driver, deadline)
    job = kill["job"]
    assert job["numTasks"] >= 8, f"featurization ran in {job['numTasks']} tasks only: {job}"
    assert 1 <= job["numCompletedTasks"] < job["numTasks"] and job["status"] == "RUNNING"

    try:
        returncode = driver.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the run did not finish within {DRIVER_TIMEOUT_S} s after the kill:\n"
            f"{tail(cluster.log('driver'))}"
        )
    assert returncode == 0, f"the run failed after the kill:\n{tail(cluster.log('driver'), 120)}"
    with open(os.path.join(state, "result.json")) as handle:
        result = json.load(handle)

    # The driver saw the executor go and retried its lost task; the job then finished.
    final = next(j for j in result["jobs"] if j["jobId"] == kill["job_id"])
    assert final["status"] == "SUCCEEDED", final
    assert final["numCompletedTasks"] == final["numTasks"] == job["numTasks"], final
    assert final["numFailedTasks"] >= 1, (
        f"no task was lost with executor {kill['executor_id']}: {final}"
    )
    lost = next(e for e in result["executors"] if e["id"] == kill["executor_id"])
    assert not lost["isActive"] and lost.get("removeReason"), lost
    master = cluster.master_state()
    assert [w["state"] for w in master["workers"]].count("ALIVE") == WORKERS - 1, master

    # Every image exactly once, through the manifest.
    counts = result["counts"]
    assert counts["images_total"] == counts["images_featurized"] == len(expected), counts
    assert counts["images_failed"] == 0, counts
    with open(os.path.join(output, "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["images_total"] == manifest["images_featurized"] == len(expected)
    assert manifest["images_through_model"] == len(expected), "a retried task counted twice"
    features = pq.read_table(published(output, "features"), columns=["path"]).column("path")
    paths = [re.sub(r"^file:(//)?", "", path) for path in features.to_pylist()]
    assert len(paths) == len(set(paths)), "an image was featurized twice"
    assert sorted(paths) == expected
    print(
        f"cluster fault test: {len(expected)} images, {job['numTasks']} featurization tasks, "
        f"killed {kill['worker']} (executor {kill['executor_id']}) after "
        f"{job['numCompletedTasks']} tasks, {time.monotonic() - started:.0f} s"
    )
