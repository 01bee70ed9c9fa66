"""helpers.cluster on the test session: starting the executors' workers in the background.

The probe and the check on fresh sessions (a worker daemon started by WorkerStart, workers that
cannot start) are in tests/test_onednn.py, which runs them in processes of their own.
"""

from __future__ import annotations

from helpers.cluster import WorkerStart


def test_worker_start_runs_one_task_in_its_own_job_group(spark) -> None:
    context = spark.sparkContext
    context.setJobGroup("caller", "the caller's own group")
    try:
        started = WorkerStart(spark)
        assert started.wait(300) and started.error is None
        # Local mode: one executor, one task (the other task slots stay free).
        assert started.tasks == 1
        tracker = context.statusTracker()
        (job,) = tracker.getJobIdsForGroup(started.group)
        info = tracker.getJobInfo(job)
        assert str(info.status) == "SUCCEEDED"
        assert [tracker.getStageInfo(stage).numTasks for stage in info.stageIds] == [1]
        # The caller's group is untouched and got no job of it.
        assert context.getLocalProperty("spark.jobGroup.id") == "caller"
        assert tracker.getJobIdsForGroup("caller") == []
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
        context.setLocalProperty("spark.job.description", None)


def test_cancelling_a_finished_worker_start_changes_nothing(spark) -> None:
    started = WorkerStart(spark)
    assert started.wait(300) and started.error is None
    started.cancel()  # nothing left to cancel: its outcome stays, the session goes on
    assert started.error is None
    assert spark.sparkContext.parallelize(range(4), 2).sum() == 6
