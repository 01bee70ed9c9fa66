"""The whole chain on real images in a real local Spark session, checked from the outside."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import copy_subset
from helpers.config import PipelineConfig
from helpers.features import FEATURE_DIM, extract_features
from helpers.images import KNOWN_SPLITS
from helpers.pipeline import Run
from helpers.reduction import choose_k, fit_pca


def read_parquet(folder):
    return pq.read_table(folder).to_pandas()


def published(run, name):
    """Where the published run keeps output ``name`` (read through the top-level manifest)."""
    with open(os.path.join(run.config.output_path, "manifest.json")) as handle:
        location = json.load(handle)["outputs"][name]
    if isinstance(location, list):  # features: a full run has one folder
        (location,) = location
    return location


def numpy_pca_ratios(matrix):
    """Explained variance ratios the textbook way: SVD of the centred matrix."""
    centred = matrix - matrix.mean(axis=0)
    singular = np.linalg.svd(centred.astype(np.float64), compute_uv=False)
    variances = singular**2
    return variances / variances.sum()


def test_every_image_is_accounted_for(pipeline_run, small_dataset):
    folder, expected = small_dataset
    images_on_disk = [
        path
        for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
        if path.lower().endswith((".jpg", ".jpeg", ".png"))
    ]
    manifest = pipeline_run.manifest
    assert manifest["images_total"] == len(images_on_disk)
    assert manifest["images_total"] == manifest["images_featurized"] + manifest["images_failed"]
    expected_failures = {path: why for path, why in expected.items() if why != "ok"}
    assert manifest["images_failed"] == len(expected_failures)

    failed = read_parquet(published(pipeline_run, "failed"))
    reasons = {path.split(":", 1)[-1]: reason for path, reason in zip(failed.path, failed.reason)}
    for path, why in expected_failures.items():
        assert why in reasons[path], f"{path}: reason {reasons.get(path)!r} lacks {why!r}"


def test_the_cnn_runs_exactly_once_per_image(pipeline_run):
    manifest = pipeline_run.manifest
    decoded = manifest["images_featurized"]
    assert manifest["images_through_model"] == decoded


def test_features_parquet(pipeline_run, small_dataset):
    folder, expected = small_dataset
    features = read_parquet(published(pipeline_run, "features"))
    assert list(features.columns) == ["path", "label", "split", "features"]
    assert len(features) == pipeline_run.manifest["images_featurized"]
    assert features.path.is_unique
    assert all(len(vector) == FEATURE_DIM for vector in features.features)
    matrix = np.stack(features.features)
    assert matrix.dtype == np.float32 and np.isfinite(matrix).all() and (matrix >= 0).all()
    classes = {
        os.path.basename(os.path.dirname(path))
        for path in glob.glob(os.path.join(folder, "*", "*", "*.*"))
        if path.lower().endswith((".jpg", ".jpeg", ".png"))
    }
    assert "Pêche de vigne été" in classes
    assert set(features.label) == classes
    assert set(features.split) == set(KNOWN_SPLITS)
    edge = features[features.label == "Edge cases"]
    assert len(edge) == sum(1 for why in expected.values() if why == "ok")


def test_spark_features_equal_the_in_process_extractor(pipeline_run):
    features = read_parquet(published(pipeline_run, "features"))
    rows = features.sort_values("path").head(4)
    contents = [open(path.split(":", 1)[-1], "rb").read() for path in rows.path]
    local = extract_features(contents, image_size=224)
    np.testing.assert_allclose(np.stack(rows.features), local, rtol=1e-4, atol=1e-4)


def test_pca_matches_numpy(pipeline_run):
    features = read_parquet(published(pipeline_run, "features")).sort_values("path")
    matrix = np.stack(features.features).astype(np.float64)
    ratios = numpy_pca_ratios(matrix)
    manifest = pipeline_run.manifest
    k = manifest["k"]
    assert k == choose_k(ratios, 0.95)
    np.testing.assert_allclose(manifest["explained_variance"][:k], ratios[:k], rtol=1e-3, atol=1e-6)

    scores = read_parquet(published(pipeline_run, "pca")).sort_values("path")
    assert list(scores.path) == list(features.path)
    ours = np.stack(scores.pca).astype(np.float64)
    assert ours.shape == (len(features), k)
    centred = matrix - matrix.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:k].T
    signs = np.sign(np.sum(ours * reference, axis=0))  # axes are defined up to their sign
    np.testing.assert_allclose(
        ours * signs, reference, rtol=1e-3, atol=2e-3 * np.abs(reference).max()
    )


def test_gram_method_agrees_with_spark_ml(pipeline_run):
    features = pipeline_run.features
    batch_rows = "spark.sql.execution.arrow.maxRecordsPerBatch"
    session_batch_rows = features.sparkSession.conf.get(batch_rows)
    spark_ml = fit_pca(features, 0.95, method="spark-ml")
    gram = fit_pca(features, 0.95, method="gram")
    # The fit reads larger Arrow batches, then leaves the session's setting as it was.
    assert features.sparkSession.conf.get(batch_rows) == session_batch_rows
    assert gram.k == spark_ml.k
    np.testing.assert_allclose(
        gram.explained_variance[: gram.k],
        spark_ml.explained_variance[: gram.k],
        rtol=1e-4,
        atol=1e-7,
    )
    np.testing.assert_allclose(gram.mean, spark_ml.mean, rtol=1e-5, atol=1e-6)
    cosines = np.abs(np.sum(gram.components * spark_ml.components, axis=0))
    assert cosines[:5].min() > 0.999


def test_pca_csv_and_small_outputs(pipeline_run):
    output = pipeline_run.config.output_path
    k = pipeline_run.manifest["k"]
    parts = glob.glob(os.path.join(published(pipeline_run, "pca_csv"), "*.csv"))
    assert parts
    table = pd.concat(pd.read_csv(part) for part in parts)
    assert list(table.columns) == ["path", "label", "split"] + [f"pc_{i}" for i in range(1, k + 1)]
    assert len(table) == pipeline_run.manifest["images_featurized"]
    with open(published(pipeline_run, "variance.png"), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(output, "manifest.json")) as handle:
        manifest = json.load(handle)
    for key in (
        "parameters",
        "images_total",
        "images_featurized",
        "images_failed",
        "k",
        "explained_variance",
        "seconds",
        "versions",
    ):
        assert key in manifest
    assert manifest["parameters"]["input_path"] == pipeline_run.config.input_path
    assert set(manifest["seconds"]) >= {"list", "featurize", "pca_fit", "pca_write"}
    assert {"pyspark", "keras", "numpy"} <= set(manifest["versions"])
    assert os.listdir(os.path.join(output, "runs")) == [manifest["run_id"]]


def test_fixed_k_is_honoured(pipeline_run):
    fit = fit_pca(pipeline_run.features, variance_target=0.95, k=3)
    assert fit.k == 3 and fit.components.shape == (FEATURE_DIM, 3)
    with pytest.raises(ValueError, match="components asked for"):
        fit_pca(pipeline_run.features, k=10_000)


@pytest.mark.parametrize("failures", [False, True])
def test_a_sample_grid_drawn_before_featurize_is_redrawn_only_when_images_failed(
    spark, small_dataset, tmp_path, failures
):
    if failures:  # the small data set's edge cases: files that do not decode, an empty one
        images = small_dataset[0]
    else:
        images = copy_subset(str(tmp_path / "images"), classes=2, train=2, test=1)
    run = Run(PipelineConfig(images, str(tmp_path / "out"), spark_master="local[2]"), spark)
    try:
        run.list_images()
        before = run.sample_images(per_class=2)
        assert run.sample_images(per_class=2) is before  # drawn once
        run.featurize()
        after = run.sample_images(per_class=2)
        assert (run.images_failed > 0) is failures
        if failures:  # other candidates: drawn again, from the featurized images
            assert after is not before
            assert run.sample_figures[(2, 12)] == (True, after)
        else:  # the same candidates, so the same seeded choice: shown again as drawn
            assert after is before
        assert run.sample_images(per_class=1) is not after  # another grid is drawn
    finally:
        run.close()


def test_missing_input_path_is_named(spark, tmp_path):
    missing = str(tmp_path / "no_such_folder")
    run = Run(PipelineConfig(missing, str(tmp_path / "out"), spark_master="local[2]"), spark)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        run.list_images()


def test_folder_without_images_is_named(spark, tmp_path):
    empty = tmp_path / "only_text"
    (empty / "Training" / "Apple").mkdir(parents=True)
    (empty / "Training" / "Apple" / "readme.txt").write_text("no images here")
    run = Run(PipelineConfig(str(empty), str(tmp_path / "out"), spark_master="local[2]"), spark)
    with pytest.raises(
        ValueError, match="no .jpg/.jpeg/.png images found under input_path: .*only_text"
    ):
        run.list_images()


def test_close_keeps_a_session_the_run_did_not_build(spark, tmp_path):
    for given in (spark, None):  # passed in, or found running (the notebook on Livy)
        run = Run(PipelineConfig(str(tmp_path), str(tmp_path / "out")), given)
        assert not run.owns_session
        run.close()
        assert spark.range(3).count() == 3


CLOSE_SCRIPT = """
import os
import signal
import sys
import time
from pyspark import SparkContext
from helpers.config import PipelineConfig
from helpers.pipeline import Run

signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, however we were started
before = signal.getsignal(signal.SIGINT)
run = Run(PipelineConfig(sys.argv[1], sys.argv[2], spark_master="local[1]"))
assert run.owns_session and run.spark.range(3).count() == 3
assert signal.getsignal(signal.SIGINT) is not before  # pyspark's own, while its context runs
jvm = SparkContext._gateway.proc
run.close()
assert SparkContext._active_spark_context is None
assert jvm.poll() is not None  # the JVM has exited, its shutdown hooks run
assert signal.getsignal(signal.SIGINT) is before
try:  # Ctrl-C after the run: a plain KeyboardInterrupt, not an error of the stopped context
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted")
again = Run(PipelineConfig(sys.argv[1], sys.argv[2], spark_master="local[2]"))  # a new JVM
assert again.spark.range(2).count() == 2  # on the task slot the workers' start leaves free
again.close()  # while its worker daemon still imports TensorFlow: that start is cancelled
assert again.worker_start.error == "cancelled" and not again.worker_start.thread.is_alive()
print("stopped")
"""


def test_close_stops_the_session_the_run_built(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CLOSE_SCRIPT, str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "interrupted" in lines and lines[-1] == "stopped"
