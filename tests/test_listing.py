"""Reading images by name: local files are listed by the driver, with no Spark job."""

import glob
import os

from conftest import SAMPLE
from helpers import listing


def jobs_run(spark, group, action):
    """How many Spark jobs ``action`` started (its work tagged with job group ``group``)."""
    context = spark.sparkContext
    context.setJobGroup(group, group)
    try:
        action()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    return len(context.statusTracker().getJobIdsForGroup(group))


def test_local_files_named_one_by_one_are_listed_without_a_spark_job(spark, monkeypatch):
    paths = sorted(glob.glob(os.path.join(SAMPLE, "Training", "*", "*.jpg")))[:40]
    assert len(paths) == 40  # more than Spark's threshold (32) for a parallel listing
    before = spark.conf.get(listing.DISCOVERY_THRESHOLD_KEY, None)
    found = {}
    jobs = jobs_run(
        spark,
        "by-name-local",
        lambda: found.setdefault("frame", listing.read_binary(spark, *paths)),
    )
    assert jobs == 0
    assert spark.conf.get(listing.DISCOVERY_THRESHOLD_KEY, None) == before
    rows = found["frame"].select("path", "length").collect()
    assert sorted(row.path for row in rows) == ["file:" + path for path in paths]
    assert all(row.length == os.path.getsize(path) for row, path in zip(sorted(rows), paths))
    # The same paths taken for another file system's: Spark lists them in a job.
    monkeypatch.setattr(listing.storage, "local_file", lambda path: None)
    assert jobs_run(spark, "by-name-other", lambda: listing.read_binary(spark, *paths)) >= 1
