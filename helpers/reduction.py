"""Reduction: PCA of the feature vectors, the choice of k, and the projection.

Two interchangeable ways to fit, both distributed (the feature matrix never comes to the
driver; only d x d statistics do):

- ``"spark-ml"``: ``pyspark.ml`` ``StandardScaler`` (centring) + ``PCA`` on
  ``array_to_vector(features)``.
- ``"gram"`` (default): per-partition count, mean and centred ``X^T X`` computed with numpy
  BLAS in ``mapInArrow``, merged with ``treeReduce``, eigen-decomposed on the driver. One pass
  over the data, on numpy's BLAS instead of the JVM's (its speed against ``"spark-ml"``:
  ``docs/benchmarks.md``). These :data:`Moments` merge exactly, so moments computed before
  (those of an earlier run's feature folder, stored with :func:`moments_bytes`) stand in for
  reading those vectors again.

Either way the result is a :class:`PcaFit`: mean, components, explained variance ratios of
every component, and k. Scores are centred, like numpy's and scikit-learn's PCA.
"""

from __future__ import annotations

import functools
import io
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from pyspark.ml import Pipeline
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StructField, StructType
from threadpoolctl import ThreadpoolController

from helpers.session import ARROW_BATCH_ROWS_KEY, temporary_conf

FEATURES_COLUMN = "features"
PCA_COLUMN = "pca"
#: PCA needs at least this many feature vectors (one vector has no variance to explain).
MIN_PCA_VECTORS = 2

#: ``(count, mean, M2)`` of a set of feature vectors: how many, their ``(d,)`` mean and their
#: ``(d, d)`` centred scatter matrix ``sum (x - mean)(x - mean)^T`` (float64).
Moments = Tuple[int, np.ndarray, np.ndarray]


@dataclass
class PcaFit:
    """A fitted PCA.

    Attributes:
        k: number of components kept.
        explained_variance: ratio of the total variance explained by each component, for all
            components the fit computed (at most ``min(n, d)``), largest first.
        mean: ``(d,)`` mean feature vector (subtracted before projecting).
        components: ``(d, k)`` principal axes, as columns.
        method: ``"spark-ml"`` or ``"gram"``.
        n_samples: number of vectors the fit saw.
    """

    k: int
    explained_variance: List[float]
    mean: np.ndarray
    components: np.ndarray
    method: str
    n_samples: int

    def __repr__(self) -> str:
        return (
            f"PcaFit(method={self.method!r}, n_samples={self.n_samples}, k={self.k}, "
            f"explained_variance_kept={self.explained_variance_kept:.4f})"
        )

    @property
    def cumulative_variance(self) -> List[float]:
        """Cumulative explained variance ratio, component by component."""
        return np.cumsum(self.explained_variance).tolist()

    @property
    def explained_variance_kept(self) -> float:
        """Share of the variance kept by the first k components."""
        return float(np.sum(self.explained_variance[: self.k]))


@functools.lru_cache(maxsize=None)
def _thread_pools() -> ThreadpoolController:
    """The native thread pools loaded in this process (numpy's BLAS among them), found once."""
    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's BLAS/LAPACK on one thread inside the block (``threadpoolctl``).

    Spark already runs one Python worker per core; on the driver, the ``d x d`` ``eigh`` runs
    on cores shared with executors or other jobs, where more threads only wait for each other
    (see ``docs/benchmarks.md``).
    """
    with _thread_pools().limit(limits=1, user_api="blas"):
        yield


def choose_k(explained_variance: List[float], variance_target: float) -> int:
    """Smallest k whose cumulative explained variance reaches ``variance_target``."""
    cumulative = np.cumsum(np.asarray(explained_variance, dtype=np.float64))
    if len(cumulative) == 0:
        raise ValueError("no explained variance to choose k from (empty fit)")
    reached = np.nonzero(cumulative >= variance_target - 1e-9)[0]
    return int(reached[0] + 1) if len(reached) else len(cumulative)


def fit_pca(
    features: Optional[DataFrame],
    variance_target: float = 0.95,
    k: Optional[int] = None,
    method: str = "gram",
    known: Sequence[Moments] = (),
) -> PcaFit:
    """Fit PCA on the ``features`` column (array<float>) of ``features``.

    ``k`` fixes the number of components; otherwise k is chosen by ``variance_target``.
    ``known`` (``"gram"`` only): moments of further vectors, not in ``features`` (which may
    then be ``None``); the fit is that of all the vectors together.
    """
    if method == "spark-ml":
        if known or features is None:
            raise ValueError("the 'spark-ml' method fits a DataFrame only, not known moments")
        fit = _fit_spark_ml(features)
    elif method == "gram":
        read = feature_moments(features) if features is not None else None
        fit = fit_moments(merge_moments(list(known) + ([read] if read else [])))
    else:
        raise ValueError(f"unknown PCA method {method!r}: use 'spark-ml' or 'gram'")
    available = len(fit.explained_variance)
    if k is not None and k > available:
        raise ValueError(
            f"k={k} components asked for, but the data only has {available} "
            f"(min of {fit.n_samples} vectors and {fit.mean.shape[0]} dimensions)"
        )
    fit.k = k if k is not None else choose_k(fit.explained_variance, variance_target)
    fit.components = fit.components[:, : fit.k]
    return fit


def _count_and_dim(features: DataFrame) -> tuple:
    row = features.select(
        F.count(F.lit(1)).alias("n"), F.max(F.size(FEATURES_COLUMN)).alias("d")
    ).first()
    n, d = int(row["n"]), int(row["d"] or 0)
    if n < MIN_PCA_VECTORS:
        raise ValueError(f"PCA needs at least {MIN_PCA_VECTORS} feature vectors, got {n}")
    return n, d


def _fit_spark_ml(features: DataFrame) -> PcaFit:
    n, d = _count_and_dim(features)
    vectors = features.select(array_to_vector(FEATURES_COLUMN).alias("vector"))
    scaler = StandardScaler(inputCol="vector", outputCol="centred", withMean=True, withStd=False)
    pca = PCA(k=min(n, d), inputCol="centred", outputCol="projected")
    model = Pipeline(stages=[scaler, pca]).fit(vectors)
    scaler_model, pca_model = model.stages
    return PcaFit(
        k=0,
        explained_variance=pca_model.explainedVariance.toArray().tolist(),
        mean=scaler_model.mean.toArray(),
        components=pca_model.pc.toArray(),
        method="spark-ml",
        n_samples=n,
    )


def _batch_matrix(column: pa.Array) -> np.ndarray:
    """A ``list<float>`` Arrow column as an ``(n, d)`` float32 matrix (no copy when possible)."""
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(len(column), -1)


def _partition_moments(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Count, mean and centred scatter matrix ``M2`` of one partition, pickled into one row.

    Every Arrow batch is shifted by the partition's first-batch mean (so no large common offset
    is squared: the non-negative ReLU6 features have a big mean), multiplied as float32
    (``(X - s)^T (X - s)``: one SYRK/GEMM per batch, half the memory traffic of float64) and
    accumulated in float64 across batches. The shift is removed exactly
    at the end: ``M2 = S2 - S1 S1^T / n`` with ``S1`` the (small) sum of shifted rows.
    """
    count = 0
    shift = shifted_sum = scatter = None
    for batch in batches:
        column = batch.column(0)
        if len(column) == 0:
            continue
        matrix = _batch_matrix(column)
        if shift is None:
            shift = matrix.mean(axis=0, dtype=np.float64).astype(np.float32)
            shifted_sum = np.zeros(matrix.shape[1])
            scatter = np.zeros((matrix.shape[1], matrix.shape[1]))
        centred = matrix - shift
        count += centred.shape[0]
        shifted_sum += centred.sum(axis=0, dtype=np.float64)
        with single_threaded_blas():
            scatter += centred.T @ centred
    if count:
        offset = shifted_sum / count
        mean = shift.astype(np.float64) + offset
        m2 = scatter - count * np.outer(offset, offset)
        upper = m2[np.triu_indices(m2.shape[0])]  # symmetric: half the bytes to move
        yield pa.RecordBatch.from_pydict({"stats": [pickle.dumps((count, mean, upper))]})


def _unpack_moments(stats: bytes) -> tuple:
    """``(count, mean, M2)`` from :func:`_partition_moments`' row (M2 rebuilt from its triangle)."""
    count, mean, upper = pickle.loads(stats)
    return count, mean, _symmetric(upper, len(mean))


def _symmetric(upper: np.ndarray, width: int) -> np.ndarray:
    matrix = np.zeros((width, width))
    matrix[np.triu_indices(width)] = upper
    return matrix + np.triu(matrix, 1).T


def _merge(left: Moments, right: Moments) -> Moments:
    """Combine two ``(count, mean, M2)`` (Chan et al.'s pairwise update)."""
    n1, mean1, m2_1 = left
    n2, mean2, m2_2 = right
    count = n1 + n2
    delta = mean2 - mean1
    mean = mean1 + delta * (n2 / count)
    m2 = m2_1 + m2_2 + np.outer(delta, delta) * (n1 * n2 / count)
    return count, mean, m2


def _merge_packed(left: bytes, right: bytes) -> bytes:
    """:func:`_merge` on packed rows (for ``treeReduce`` on the executors)."""
    count, mean, m2 = _merge(_unpack_moments(left), _unpack_moments(right))
    return pickle.dumps((count, mean, m2[np.triu_indices(len(mean))]))


#: Rows per Arrow batch while fitting (the session's default, sized for images, is smaller):
#: fewer, larger ``X^T X`` products run closer to BLAS peak (see ``docs/benchmarks.md``).
GRAM_BATCH_ROWS = 4096

#: Up to this many partial results go straight to the driver (6.5 MB each at d = 1280);
#: beyond, they are merged on the executors with ``treeReduce`` first.
DIRECT_MERGE_MAX = 32


def feature_moments(features: DataFrame) -> Optional[Moments]:
    """The :data:`Moments` of the ``features`` column of ``features`` in one pass (``None``
    when it has no rows).

    The features are read in at most one partition per executor core (``coalesce``: no
    shuffle), so there are few partial results; only ``d x d`` statistics leave the executors
    (the upper triangle, 6.5 MB per partition at d = 1280). Up to :data:`DIRECT_MERGE_MAX` of
    them are merged on the driver; more go through ``treeReduce`` on the executors first.
    """
    spark = features.sparkSession
    selected = features.select(FEATURES_COLUMN)
    parallelism = spark.sparkContext.defaultParallelism
    if selected.rdd.getNumPartitions() > parallelism:
        selected = selected.coalesce(parallelism)
    partials = selected.mapInArrow(_partition_moments, "stats binary")
    with temporary_conf(spark, ARROW_BATCH_ROWS_KEY, str(GRAM_BATCH_ROWS)):
        if selected.rdd.getNumPartitions() <= DIRECT_MERGE_MAX:
            rows = [_unpack_moments(bytes(row.stats)) for row in partials.collect()]
            return functools.reduce(_merge, rows) if rows else None
        try:
            packed = partials.rdd.map(lambda row: bytes(row.stats)).treeReduce(_merge_packed)
        except ValueError as error:  # pyspark's "Cannot reduce empty RDD.": no vectors
            if "empty" not in str(error):
                raise
            return None
        return _unpack_moments(packed)


def merge_moments(moments: Sequence[Moments]) -> Moments:
    """The :data:`Moments` of the union of the vector sets ``moments`` describe.

    Raises:
        ValueError: ``moments`` is empty (no vectors).
    """
    if not moments:
        raise ValueError("PCA needs at least 2 feature vectors, got 0")
    return functools.reduce(_merge, moments)


def fit_moments(moments: Moments) -> PcaFit:
    """PCA from :data:`Moments` (``eigh`` of the covariance on the driver), k not chosen yet.

    Raises:
        ValueError: fewer than :data:`MIN_PCA_VECTORS` vectors.
    """
    count, mean, m2 = moments
    if count < MIN_PCA_VECTORS:
        raise ValueError(f"PCA needs at least {MIN_PCA_VECTORS} feature vectors, got {count}")
    covariance = m2 / (count - 1)
    with single_threaded_blas():
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    eigenvectors = eigenvectors[:, order]
    keep = min(count, len(eigenvalues))
    ratios = eigenvalues / eigenvalues.sum()
    return PcaFit(
        k=0,
        explained_variance=ratios[:keep].tolist(),
        mean=mean,
        components=eigenvectors[:, :keep],
        method="gram",
        n_samples=count,
    )


def moments_bytes(moments: Moments) -> bytes:
    """:data:`Moments` as the bytes of an ``.npz`` file (``M2`` as its upper triangle)."""
    count, mean, m2 = moments
    buffer = io.BytesIO()
    np.savez(
        buffer,
        count=np.int64(count),
        mean=np.asarray(mean, dtype=np.float64),
        upper=m2[np.triu_indices(len(mean))],
    )
    return buffer.getvalue()


def moments_from_bytes(data: bytes) -> Moments:
    """The :data:`Moments` that :func:`moments_bytes` wrote."""
    with np.load(io.BytesIO(data)) as stored:
        mean = stored["mean"]
        return int(stored["count"]), mean, _symmetric(stored["upper"], len(mean))


def project(spark: SparkSession, features: DataFrame, fit: PcaFit) -> DataFrame:
    """``features`` with its feature column replaced by the centred PCA scores (``pca``).

    Runs on the executors with numpy BLAS over Arrow batches: ``(X - mean) @ components``;
    the mean and components travel once as a broadcast.
    """
    mean_and_components = spark.sparkContext.broadcast(
        (fit.mean.astype(np.float32), np.ascontiguousarray(fit.components, dtype=np.float32))
    )
    others = [field for field in features.schema.fields if field.name != FEATURES_COLUMN]
    output_schema = StructType(others + [StructField(PCA_COLUMN, ArrayType(FloatType()))])
    other_names = [field.name for field in others]

    def project_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        mean, components = mean_and_components.value
        for batch in batches:
            column = batch.column(batch.schema.get_field_index(FEATURES_COLUMN))
            matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            with single_threaded_blas():
                scores = (matrix.reshape(len(column), -1) - mean) @ components
            values = pa.array(scores.reshape(-1), type=pa.float32())
            offsets = pa.array(np.arange(len(column) + 1, dtype=np.int32) * scores.shape[1])
            arrays = [batch.column(batch.schema.get_field_index(name)) for name in other_names]
            arrays.append(pa.ListArray.from_arrays(offsets, values))
            yield pa.RecordBatch.from_arrays(arrays, names=other_names + [PCA_COLUMN])

    return features.mapInArrow(project_batches, output_schema)
