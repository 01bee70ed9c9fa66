"""PCA on real Spark against numpy on a small real matrix: mean, explained variance ratios,
components, the choice of k, the per-partition X^T X and its merge, and the projection."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from helpers import reduction
from helpers.reduction import (
    FEATURES_COLUMN,
    PCA_COLUMN,
    choose_k,
    fit_pca,
    project,
    single_threaded_blas,
)

ROWS, DIM = 240, 12


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """Two groups with different means and spreads (like two classes), a large common offset
    (non-negative ReLU features have one) and a clear order of variances."""
    rng = np.random.default_rng(7)
    scales = np.linspace(3.0, 0.2, DIM)
    first = rng.normal(size=(ROWS // 3, DIM)) * scales + 40.0
    second = rng.normal(size=(ROWS - ROWS // 3, DIM)) * scales[::-1] + 43.0
    return np.vstack([first, second]).astype(np.float32)


@pytest.fixture(scope="module")
def features(spark, matrix):
    """``matrix`` as the chain's features: one row per vector, the first group in the first
    partition, the second in the second (partitions with different counts and means)."""
    rows = [(f"img{i:03d}.jpg", vector.tolist()) for i, vector in enumerate(matrix)]
    frame = spark.createDataFrame(rows, f"path string, {FEATURES_COLUMN} array<float>")
    split = ROWS // 3
    return (
        frame.rdd.zipWithIndex()
        .map(lambda pair: (0 if pair[1] < split else 1, pair[0]))
        .partitionBy(2)
        .values()
        .toDF(frame.schema)
        .cache()
    )


def numpy_pca(matrix: np.ndarray):
    """Mean, explained variance ratios and axes (columns), largest first, the textbook way."""
    data = matrix.astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(data, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    return data.mean(axis=0), eigenvalues[order] / eigenvalues.sum(), eigenvectors[:, order]


def assert_same_axes(found: np.ndarray, expected: np.ndarray) -> None:
    """The same axes up to each one's sign (an eigenvector's sign is not defined)."""
    cosines = np.abs(np.sum(found * expected, axis=0))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-4)


@pytest.mark.parametrize("method", ["gram", "spark-ml"])
def test_fit_matches_numpy(features, matrix, method):
    fit = fit_pca(features, k=DIM, method=method)
    mean, ratios, axes = numpy_pca(matrix)
    assert fit.n_samples == ROWS and fit.method == method
    np.testing.assert_allclose(fit.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(fit.explained_variance, ratios, rtol=1e-4, atol=1e-7)
    assert fit.components.shape == (DIM, DIM)
    assert_same_axes(fit.components, axes)


@pytest.mark.parametrize(
    "batch_rows, direct_max",
    [(16, 32), (4096, 0)],
    ids=["many-arrow-batches", "merged-on-executors"],
)
def test_gram_fit_matches_numpy_however_the_moments_are_merged(
    features, matrix, monkeypatch, batch_rows, direct_max
):
    """Batches accumulated within a partition, and partitions merged by treeReduce."""
    monkeypatch.setattr(reduction, "GRAM_BATCH_ROWS", batch_rows)
    monkeypatch.setattr(reduction, "DIRECT_MERGE_MAX", direct_max)
    fit = fit_pca(features, k=DIM, method="gram")
    mean, ratios, axes = numpy_pca(matrix)
    np.testing.assert_allclose(fit.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(fit.explained_variance, ratios, rtol=1e-4, atol=1e-7)
    assert_same_axes(fit.components, axes)


def test_merged_moments_are_those_of_the_whole(matrix):
    """Chan et al.'s update: count, mean and centred scatter of two parts give the whole's."""

    def moments(part):
        data = part.astype(np.float64)
        centred = data - data.mean(axis=0)
        return len(part), data.mean(axis=0), centred.T @ centred

    count, mean, scatter = reduction._merge(moments(matrix[:50]), moments(matrix[50:]))
    whole = moments(matrix)
    assert count == whole[0]
    np.testing.assert_allclose(mean, whole[1], rtol=1e-12)
    np.testing.assert_allclose(scatter, whole[2], rtol=1e-9)


@pytest.mark.parametrize("direct_max", [32, 0], ids=["merged-on-driver", "merged-on-executors"])
def test_known_moments_stand_in_for_the_vectors_they_describe(
    spark, features, matrix, monkeypatch, direct_max
):
    """Moments of one part, stored as bytes and read back, plus the other part read as
    vectors, fit as the whole does; a part with no rows adds nothing."""
    monkeypatch.setattr(reduction, "DIRECT_MERGE_MAX", direct_max)
    first = features.where("path < 'img080.jpg'")
    rest = features.where("path >= 'img080.jpg'")
    stored = reduction.moments_from_bytes(reduction.moments_bytes(reduction.feature_moments(first)))
    assert stored[0] == 80
    assert reduction.feature_moments(features.where("path = 'none'")) is None
    mean, ratios, axes = numpy_pca(matrix)
    for fit in (
        fit_pca(rest, k=DIM, known=[stored]),
        fit_pca(None, k=DIM, known=[stored, reduction.feature_moments(rest)]),
    ):
        assert fit.n_samples == ROWS
        np.testing.assert_allclose(fit.mean, mean, rtol=1e-6)
        np.testing.assert_allclose(fit.explained_variance, ratios, rtol=1e-4, atol=1e-7)
        assert_same_axes(fit.components, axes)
    with pytest.raises(ValueError, match="at least 2 feature vectors, got 0"):
        fit_pca(features.where("path = 'none'"), k=2)
    with pytest.raises(ValueError, match="spark-ml"):
        fit_pca(rest, method="spark-ml", known=[stored])


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 0.999])
def test_k_is_the_smallest_reaching_the_variance_target(features, matrix, target):
    _, ratios, _ = numpy_pca(matrix)
    expected = int(np.argmax(np.cumsum(ratios) >= target)) + 1
    fit = fit_pca(features, variance_target=target)
    assert fit.k == expected == choose_k(ratios.tolist(), target)
    assert fit.components.shape == (DIM, expected)
    assert (
        fit.explained_variance_kept >= target > fit.explained_variance_kept - ratios[expected - 1]
    )
    assert len(fit.explained_variance) == DIM  # every component's ratio, for the scree plot


def test_a_fixed_k_is_kept_and_one_beyond_the_data_is_refused(features):
    assert fit_pca(features, k=3).k == 3
    with pytest.raises(ValueError, match=f"k={DIM + 1} components asked for"):
        fit_pca(features, k=DIM + 1)


def test_one_vector_has_no_variance_to_explain(features):
    with pytest.raises(ValueError, match="at least 2 feature vectors, got 1"):
        fit_pca(features.limit(1))


def test_projection_gives_centred_scores_on_the_fitted_axes(spark, features, matrix):
    fit = fit_pca(features, k=4)
    scores = project(spark, features, fit).orderBy("path").toPandas()
    assert list(scores.columns) == ["path", PCA_COLUMN]
    found = np.stack(scores[PCA_COLUMN].to_numpy())
    expected = (matrix.astype(np.float64) - fit.mean) @ fit.components
    np.testing.assert_allclose(found, expected, atol=1e-3)
    np.testing.assert_allclose(found.mean(axis=0), 0.0, atol=1e-3)  # centred
    variances = found.var(axis=0, ddof=1)
    assert list(variances) == sorted(variances, reverse=True)  # first axis, largest variance


def test_blas_runs_on_one_thread_inside_the_block_only():
    def threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = threads()
    with single_threaded_blas():
        assert threads() == {1}
    assert threads() == before
