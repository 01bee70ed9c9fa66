"""Runs that lose nothing and redo nothing, and storage faults that say what is wrong."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO, SAMPLE, copy_subset
from helpers.config import PipelineConfig
from helpers.manifest import read_manifest_features
from helpers.pipeline import Run, run_pipeline


def manifest_of(output):
    with open(os.path.join(output, "manifest.json")) as handle:
        return json.load(handle)


def features_by_path(spark, manifest):
    rows = read_manifest_features(spark, manifest).select("path", "features").collect()
    return {row.path: np.asarray(row.features) for row in rows}


@pytest.fixture(scope="module")
def first_run(spark, tmp_path_factory):
    """A published incremental run on 2 classes x (4 + 1) images."""
    images = copy_subset(str(tmp_path_factory.mktemp("images")), classes=2, train=4, test=1)
    output = str(tmp_path_factory.mktemp("incremental_output"))
    run = run_pipeline(
        PipelineConfig(images, output, spark_master="local[2]", incremental=True), spark
    )
    return images, output, run.manifest


def test_rerun_gives_bit_identical_features_and_the_same_pca(spark, first_run, tmp_path):
    images, _, first = first_run
    again = run_pipeline(
        PipelineConfig(images, str(tmp_path / "again"), spark_master="local[2]"), spark
    )
    old, new = features_by_path(spark, first), features_by_path(spark, again.manifest)
    assert old.keys() == new.keys()
    for path in old:
        assert np.array_equal(old[path], new[path]), f"features of {path} changed between runs"
    assert again.manifest["k"] == first["k"]
    np.testing.assert_allclose(
        again.manifest["explained_variance"], first["explained_variance"], rtol=1e-6, atol=1e-9
    )


def test_incremental_run_sends_only_new_images_through_the_cnn(spark, first_run):
    images, output, first = first_run
    added = []
    for label in sorted(os.listdir(os.path.join(images, "Training"))):
        for number in (20, 21):
            source = os.path.join(SAMPLE, "Training", label, f"{number}_100.jpg")
            target = os.path.join(images, "Training", label, f"{number}_100.jpg")
            shutil.copy(source, target)
            added.append(target)

    run = run_pipeline(
        PipelineConfig(images, output, spark_master="local[2]", incremental=True), spark
    )
    manifest = run.manifest
    assert manifest["images_through_model"] == len(added)  # counted inside the UDF
    assert manifest["images_reused"] == first["images_featurized"]
    assert manifest["images_featurized"] == first["images_featurized"] + len(added)
    assert manifest["previous_run_id"] == first["run_id"]
    old, new = features_by_path(spark, first), features_by_path(spark, manifest)
    assert all(np.array_equal(old[path], new[path]) for path in old)
    assert {path.split(":", 1)[-1] for path in set(new) - set(old)} == set(added)
    # PCA is refit on everything; the run folders kept are this run and the one it replaced.
    assert manifest["explained_variance"] != first["explained_variance"]
    assert sorted(os.listdir(os.path.join(output, "runs"))) == sorted(
        [first["run_id"], manifest["run_id"]]
    )


def test_a_run_killed_mid_write_leaves_the_previous_run_published(spark, tmp_path):
    images = copy_subset(str(tmp_path / "images"), classes=2, train=4, test=1)
    output = str(tmp_path / "output")
    first = run_pipeline(PipelineConfig(images, output, spark_master="local[2]"), spark)
    first.close()  # ends the run: frees output_path for the run below (one run at a time)
    published = first.manifest
    before = open(os.path.join(output, "manifest.json"), "rb").read()

    more = copy_subset(str(tmp_path / "more"), classes=4, train=12, test=4)
    driver = (
        "from helpers.config import PipelineConfig; from helpers.pipeline import run_pipeline; "
        f"run_pipeline(PipelineConfig({more!r}, {output!r}, spark_master='local[1]'))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", driver],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = os.path.join(output, "runs")
    deadline = time.time() + 240
    killed_while_writing = False
    try:
        while time.time() < deadline and process.poll() is None:
            new_runs = [name for name in os.listdir(runs) if name != published["run_id"]]
            if new_runs and os.path.exists(os.path.join(runs, new_runs[0], "features")):
                os.killpg(process.pid, signal.SIGKILL)
                killed_while_writing = True
                break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert killed_while_writing, "the run finished or never started writing before the kill"

    assert open(os.path.join(output, "manifest.json"), "rb").read() == before
    assert read_manifest_features(spark, published).count() == published["images_featurized"]
    pca = pq.read_table(published["outputs"]["pca"]).to_pandas()
    assert len(pca) == published["images_featurized"]

    # The next run publishes whole and sweeps the killed run's folder away.
    rerun = run_pipeline(PipelineConfig(images, output, spark_master="local[2]"), spark).manifest
    assert manifest_of(output)["run_id"] == rerun["run_id"]
    assert sorted(os.listdir(runs)) == sorted([published["run_id"], rerun["run_id"]])


# -- storage faults against the real S3 server -------------------------------------------------


def s3_config(bucket, endpoint):
    return PipelineConfig(
        f"s3://{bucket}/images",
        f"s3://{bucket}/outputs",
        spark_master="local[2]",
        s3_endpoint=endpoint,
    )


def upload_images(s3_client, bucket, count=4):
    s3_client.create_bucket(Bucket=bucket)
    for number in range(count):
        s3_client.upload_file(
            os.path.join(SAMPLE, "Training", "Kiwi", f"{number}_100.jpg"),
            bucket,
            f"images/Training/Kiwi/{number}_100.jpg",
        )


def hadoop_conf(spark):
    return spark.sparkContext._jsc.hadoopConfiguration()


def test_missing_bucket_is_named(spark, s3_server):
    endpoint, _ = s3_server
    with pytest.raises(FileNotFoundError, match="bucket 'fruits-no-such-bucket' does not exist"):
        Run(s3_config("fruits-no-such-bucket", endpoint), spark).list_images()


def test_wrong_credentials_are_refused_and_nothing_is_published(spark, s3_server, s3_client):
    endpoint, _ = s3_server
    bucket = "fruits-wrong-credentials"
    upload_images(s3_client, bucket)
    conf = hadoop_conf(spark)  # per-bucket credentials: only this bucket sees the wrong keys
    conf.set(
        f"fs.s3a.bucket.{bucket}.aws.credentials.provider",
        "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    )
    conf.set(f"fs.s3a.bucket.{bucket}.access.key", "not-a-valid-key")
    conf.set(f"fs.s3a.bucket.{bucket}.secret.key", "not-a-valid-secret")
    with pytest.raises(
        PermissionError, match=f"access to s3://{bucket}/outputs refused at endpoint"
    ):
        run_pipeline(s3_config(bucket, endpoint), spark)
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(key.startswith("images/") for key in keys)


def test_server_down_names_the_endpoint(spark, s3_server):
    down = "http://127.0.0.1:1"  # nothing listens there
    bucket = "fruits-server-down"
    conf = hadoop_conf(spark)
    conf.set(f"fs.s3a.bucket.{bucket}.endpoint", down)
    started = time.time()
    with pytest.raises(ConnectionError, match=f"S3 endpoint {down} is not reachable"):
        Run(s3_config(bucket, down), spark)
    assert time.time() - started < 120, "a dead endpoint must fail fast, not retry for minutes"
