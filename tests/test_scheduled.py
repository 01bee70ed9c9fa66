"""The scheduled run (``python -m helpers.scheduled``, what ``make nightly`` runs), for real:
papermill runs ``notebooks/local.ipynb`` in subprocesses, on the local disk and on SeaweedFS.

One scenario (run in the background lane of ``conftest.scenarios`` while other tests run) plays
a few nights on the local disk, on a folder with no Test split (the nightly input; it used to
crash in the confusion-matrix cell):

1. night 1 starts; while it holds the output_path, a second scheduled run and a ``Run`` in this
   process are started: both stop at once, naming night 1;
2. night 1 completes; then a run that fails (its input is gone): exit status 1, the executed
   notebook with the error is named; it publishes nothing and leaves no lock behind;
3. night 2 on the same input: nothing goes through the CNN; the history has two rows.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import nbformat
import pytest

from conftest import (
    CLOUD_COST_PER_HOUR,
    REPO,
    copy_subset,
    finish,
    notebook_errors,
    scenario,
    start,
    subprocess_environment,
    wait_for_lock,
)
from helpers import history, lock
from helpers.config import PipelineConfig
from helpers.pipeline import Run

COST_PER_HOUR = 0.84


def scheduled_command(images, output, run_id, *more):
    return [
        sys.executable,
        "-m",
        "helpers.scheduled",
        "--input",
        images,
        "--output",
        output,
        "--run-id",
        run_id,
        "-p",
        "spark_master",
        "local[2]",
        *more,
    ]


@scenario("nights", needs=("spark",))
def play_nights(base, spark):
    """The nights of the module docstring, run in the background lane (conftest.scenarios)."""
    images = copy_subset(str(base / "images"), classes=2, train=4, test=0)
    shutil.rmtree(os.path.join(images, "Test"))  # only Training/<Class>/: no Test split
    output = str(base / "outputs")
    logs = {name: str(base / f"{name}.log") for name in ("night-1", "blocked", "failed", "night-2")}
    done = {"images": images, "output": output}

    first, first_log = start(
        scheduled_command(images, output, "night-1", "--cost-per-hour", str(COST_PER_HOUR)),
        logs["night-1"],
    )
    try:
        done["holder"] = wait_for_lock(
            lambda: lock.read_holder(None, output), "night-1", first, logs["night-1"]
        )
        started = time.time()
        blocked, blocked_log = start(scheduled_command(images, output, "blocked"), logs["blocked"])
        done["blocked"] = finish(blocked, blocked_log, logs["blocked"], timeout=120)
        done["blocked_seconds"] = time.time() - started
        with pytest.raises(lock.RunLockedError) as in_process:
            Run(PipelineConfig(images, output, run_id="in-process"), spark)
        done["in_process"] = str(in_process.value)
        done["still_running"] = first.poll() is None
    finally:
        done["night-1"] = finish(first, first_log, logs["night-1"], timeout=900)

    failing, failing_log = start(
        scheduled_command(str(base / "gone"), output, "failed"), logs["failed"]
    )
    done["failed"] = finish(failing, failing_log, logs["failed"], timeout=600)
    done["lock_after_failure"] = lock.read_holder(None, output)

    second, second_log = start(
        scheduled_command(images, output, "night-2", "--cost-per-hour", str(COST_PER_HOUR)),
        logs["night-2"],
    )
    done["night-2"] = finish(second, second_log, logs["night-2"], timeout=900)
    return done


@pytest.fixture(scope="session")
def nights(scenarios):
    return scenarios.result("nights")


def manifest_of(output):
    with open(os.path.join(output, "manifest.json")) as handle:
        return json.load(handle)


def executed(output, run_id):
    return nbformat.read(
        history.executed_notebook_location(output, run_id, "local.ipynb"), as_version=4
    )


def test_a_second_run_stops_at_once_naming_the_first(nights):
    holder = nights["holder"]
    assert holder["host"] == socket.gethostname() and holder["pid"] > 0
    status, log = nights["blocked"]
    assert status == 75, log
    assert nights["still_running"], "night 1 ended before the second run was refused"
    assert nights["blocked_seconds"] < 30
    named = (
        f"in use by run night-1 (host {holder['host']}, pid {holder['pid']}, "
        f"started {holder['started_at']})"
    )
    assert named in log
    assert named in nights["in_process"] and "one run at a time" in nights["in_process"]
    # the refused runs left nothing behind
    assert not os.path.exists(history.location(nights["output"], "blocked"))


def test_night_without_a_test_split_completes_and_publishes(nights):
    status, log = nights["night-1"]
    assert status == 0, log[-5000:]
    assert "scheduled run night-1 published: 8 images, 8 new through the CNN" in log
    notebook = executed(nights["output"], "night-1")
    assert not notebook_errors(notebook)
    confusion_cell = next(
        cell for cell in notebook.cells if "classification.confusion_figure()" in cell.source
    )
    assert any("image/png" in output.get("data", {}) for output in confusion_cell.outputs)
    with open(os.path.join(nights["output"], "report.html"), encoding="utf-8") as handle:
        assert "Classifier skipped: no images in a Test split." in handle.read()


def test_a_failing_run_exits_non_zero_names_its_notebook_and_publishes_nothing(nights):
    status, log = nights["failed"]
    assert status == 1, log[-5000:]
    where = history.executed_notebook_location(nights["output"], "failed", "local.ipynb")
    assert "scheduled run failed FAILED in cell" in log and "FileNotFoundError" in log
    assert f"the executed notebook with the error: {where}" in log
    assert any(
        error.ename == "FileNotFoundError"
        for error in notebook_errors(executed(nights["output"], "failed"))
    )
    # Released at the kernel's exit, or (a kernel shut down without its exit handlers) left
    # with a dead pid, which the next night takes over (it did: night 2 ran).
    left = nights["lock_after_failure"]
    assert left is None or (left["run_id"] == "failed" and not lock.pid_alive(left["pid"])), left
    assert [row["run_id"] for row in history.read_rows(None, nights["output"])] == [
        "night-1",
        "night-2",
    ]


def test_second_night_sends_nothing_through_the_cnn_and_history_has_two_rows(nights):
    status, log = nights["night-2"]
    assert status == 0, log[-5000:]
    output = nights["output"]
    manifest = manifest_of(output)
    assert manifest["run_id"] == "night-2" and manifest["previous_run_id"] == "night-1"
    assert manifest["images_through_model"] == 0
    assert manifest["images_reused"] == manifest["images_total"] == 8
    rows = history.read_rows(None, output)
    assert [row["run_id"] for row in rows] == ["night-1", "night-2"]
    assert [row["images_new"] for row in rows] == [8, 0]
    assert [row["images_reused"] for row in rows] == [0, 8]
    for row in rows:
        assert set(history.ROW_FIELDS) <= set(row)
        assert row["images_total"] == 8 and row["images_failed"] == 0
        assert (
            row["test_accuracy"] is None
            and row["classifier_skipped"] == "no images in a Test split"
        )
        assert row["k"] >= 1 and 0.95 <= row["explained_variance_kept"] <= 1.0
        assert row["spark_master"] == "local[2]" and row["host"] == socket.gethostname()
        assert row["minutes"] > 0
        assert row["estimated_cost_usd"] == pytest.approx(
            row["minutes"] / 60 * COST_PER_HOUR, abs=1e-4
        )
    with open(history.location(output, history.LATEST_JSON)) as handle:
        assert json.load(handle) == rows[-1]
    for run_id in ("night-1", "night-2"):  # each night's executed notebook is kept
        assert not notebook_errors(executed(output, run_id))
    assert lock.read_holder(None, output) is None


def test_report_shows_the_history_table_and_plot(nights):
    output = nights["output"]
    with open(os.path.join(output, "report.html"), encoding="utf-8") as handle:
        page = handle.read()
    assert "8. Run history" in page and "The last 2 runs" in page
    assert "<td>night-1</td>" in page and "<td>night-2</td>" in page
    run_folder = os.path.join(output, "runs", "night-2")
    with open(os.path.join(run_folder, "history.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    printed = subprocess.run(
        [sys.executable, "-m", "helpers.history", output],
        cwd=REPO,
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0 and "night-1" in printed.stdout and "night-2" in printed.stdout


# -- the same on S3 (SeaweedFS): the lock lives in the bucket ---------------------------------


def test_two_concurrent_runs_on_s3_the_second_stops_naming_the_first(cloud_s3_run, s3_client):
    """``cloud_s3_run``: the EMR nightly step's papermill run of cloud.ipynb holds the lock in
    the bucket; a scheduled run started meanwhile on the same output_path stops at once."""
    held, (status, log) = cloud_s3_run["held"], cloud_s3_run["blocked"]
    run_id, bucket = cloud_s3_run["run_id"], cloud_s3_run["bucket"]
    assert cloud_s3_run["first_was_running"], "the first run ended before the second was refused"
    assert status == 75, log[-5000:]
    assert (
        f"in use by run {run_id} (host {held['host']}, pid {held['pid']}, "
        f"started {held['started_at']})"
    ) in log
    assert cloud_s3_run["status"] == 0, cloud_s3_run["log"][-5000:]
    keys = {
        item["Key"]
        for item in s3_client.list_objects_v2(Bucket=bucket, Prefix="nightly/")["Contents"]
    }
    assert f"nightly/history/{run_id}/cloud.executed.ipynb" in keys
    assert f"nightly/{lock.LOCK_FILE}" not in keys  # released at the end of the run
    rows = history.parse_rows(
        s3_client.get_object(Bucket=bucket, Key="nightly/history/runs.jsonl")["Body"]
        .read()
        .decode()
    )
    assert [row["run_id"] for row in rows] == [run_id]
    assert (
        rows[0]["images_new"] == cloud_s3_run["uploaded"] and rows[0]["test_accuracy"] is not None
    )
    assert rows[0]["estimated_cost_usd"] == pytest.approx(
        rows[0]["minutes"] / 60 * CLOUD_COST_PER_HOUR, abs=1e-4
    )
