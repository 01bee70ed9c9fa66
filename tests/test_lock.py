"""One run at a time per output_path (helpers.lock): racers on the local disk and on a real S3
server (SeaweedFS), stale locks taken over, heartbeats, release.

Two real concurrent runs (the scheduled command, papermill) are in ``tests/test_scheduled.py``.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from helpers import lock, storage
from helpers.config import PipelineConfig
from helpers.pipeline import Run


def race(spark, output_path, racers=4):
    """``racers`` threads take the lock of ``output_path`` at once: (winners, errors)."""
    barrier = threading.Barrier(racers)
    winners, errors = [], []

    def take(number):
        contender = lock.OutputLock(
            spark, output_path, f"racer-{number}", reclaim_own_process=False
        )
        barrier.wait()
        try:
            winners.append(contender.acquire())
        except lock.RunLockedError as error:
            errors.append(error)

    threads = [threading.Thread(target=take, args=(number,)) for number in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return winners, errors


def check_race(spark, output_path):
    winners, errors = race(spark, output_path)
    assert len(winners) == 1 and len(errors) == 3, (winners, errors)
    winner = winners[0]
    for error in errors:  # every loser names the winner
        assert error.holder["run_id"] == winner.run_id
        assert (
            f"in use by run {winner.run_id} (host {socket.gethostname()}, pid {os.getpid()}, "
            f"started {winner.started_at})" in str(error)
        )
    winner.release()
    assert lock.read_holder(spark, output_path) is None
    again = lock.OutputLock(spark, output_path, "after-release").acquire()
    again.release()


def test_racers_on_the_local_disk_one_wins(tmp_path):
    check_race(None, str(tmp_path / "out"))


def test_racers_on_s3_one_wins(spark, s3_server, s3_client):
    s3_client.create_bucket(Bucket="fruits-lock-race")
    check_race(spark, "s3://fruits-lock-race/outputs/nightly")


def write_lock(output_path, **fields):
    record = {
        "run_id": "old-run",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": "2026-01-01T02:00:00+00:00",
        "heartbeat_at": datetime.now(timezone.utc).isoformat(),
        "ttl_seconds": 600,
        "token": "old-token",
        **fields,
    }
    path = lock.lock_location(output_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(record, handle)
    return record


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    output = str(tmp_path / "out")
    pid = dead_pid()
    write_lock(output, pid=pid)
    with caplog.at_level(logging.WARNING, logger="helpers.pipeline.lock"):
        taken = lock.OutputLock(None, output, "new-run", settle_seconds=0.1).acquire()
    assert (
        f"taking over the lock of run old-run (host {socket.gethostname()}, pid {pid}"
        in caplog.text
    )
    assert f"its process {pid} is gone from this host" in caplog.text
    assert lock.read_holder(None, output)["run_id"] == "new-run"
    taken.release()


def test_a_lock_without_heartbeat_for_longer_than_its_ttl_is_taken_over(tmp_path, caplog):
    output = str(tmp_path / "out")
    old = (datetime.now(timezone.utc) - timedelta(seconds=700)).isoformat()
    write_lock(output, host="emr-primary-gone", pid=1, heartbeat_at=old)
    with caplog.at_level(logging.WARNING, logger="helpers.pipeline.lock"):
        taken = lock.OutputLock(None, output, "new-run", settle_seconds=0.1).acquire()
    assert "taking over the lock of run old-run (host emr-primary-gone" in caplog.text
    assert "its last heartbeat is 700 s old (more than 600 s)" in caplog.text
    taken.release()


def test_a_live_lock_of_another_host_is_respected(tmp_path):
    output = str(tmp_path / "out")
    write_lock(output, host="another-host", pid=1)  # fresh heartbeat: alive
    with pytest.raises(
        lock.RunLockedError,
        match="in use by run old-run \\(host another-host, pid 1, started 2026-01-01T02:00:00",
    ):
        lock.OutputLock(None, output, "second").acquire()
    assert lock.read_holder(None, output)["token"] == "old-token"  # untouched


def test_heartbeat_refreshes_and_a_holder_taken_over_stops_and_keeps_the_new_lock(tmp_path):
    output = str(tmp_path / "out")
    held = lock.OutputLock(None, output, "slow-run", heartbeat_seconds=0.2).acquire()
    first = lock.read_holder(None, output)["heartbeat_at"]
    time.sleep(0.8)
    assert lock.read_holder(None, output)["heartbeat_at"] > first
    # Someone decides the run is dead and takes the lock: the run notices and stops refreshing.
    write_lock(output, run_id="taker", token="taker-token")
    deadline = time.time() + 5
    while held.held and time.time() < deadline:
        time.sleep(0.1)
    assert not held.held
    held.release()
    assert lock.read_holder(None, output)["token"] == "taker-token"  # not deleted by the loser


def test_runs_take_the_lock_and_close_releases_it(spark, tmp_path):
    output = str(tmp_path / "out")
    write_lock(output, host="another-host", pid=1)
    with pytest.raises(lock.RunLockedError, match="one run at a time"):
        Run(PipelineConfig(str(tmp_path), output), spark)
    os.remove(lock.lock_location(output))
    run = Run(PipelineConfig(str(tmp_path), output, run_id="run-a"), spark)
    assert lock.read_holder(spark, output)["run_id"] == "run-a"
    # A run of the same process that was not closed (a notebook's cell run again) is replaced.
    second = Run(PipelineConfig(str(tmp_path), output, run_id="run-b"), spark)
    assert lock.read_holder(spark, output)["run_id"] == "run-b"
    run.close()  # the replaced run's close leaves the new holder's lock alone
    assert lock.read_holder(spark, output)["run_id"] == "run-b"
    second.close()
    assert lock.read_holder(spark, output) is None
    assert not os.path.exists(storage.output_location(output, lock.LOCK_FILE))


def test_run_id_and_cost_are_checked():
    with pytest.raises(ValueError, match="run_id may only hold letters, digits"):
        PipelineConfig("in", "out", run_id="2026/12/01 nightly")
    with pytest.raises(ValueError, match="cost_per_hour must be"):
        PipelineConfig("in", "out", cost_per_hour=-1)
    assert (
        PipelineConfig("in", "out", run_id="nightly-2026.12.01_a").run_id == "nightly-2026.12.01_a"
    )
