"""PCA at scale: fit + choice of k + transform of 100,000 x 1280 float32 features.

The matrix is synthetic but shaped like MobileNetV2 features (non-negative, a few dozen strong
directions plus noise) and written once as Parquet (``features`` array<float> column, like the
chain's). Timed on the same matrix: numpy in one process (centre, ``X^T X`` in float64, ``eigh``,
k, projection) and the chain's distributed methods reading the Parquet in Spark (``local[*]``)
and projecting on the executors (the scores go to Spark's ``noop`` sink: computed, not written).

Both sides are timed warm, as the chain runs its PCA: numpy's matrix is already in memory (its
import and the loading are not timed); Spark's session has already run one PCA on a small
matrix of the same shape (Python workers started, the JVM's code paths compiled), like the
chain's session, where PCA follows featurization. The first PCA in a fresh session, which pays
those start-up costs, is reported too (``<method>_cold_seconds``, on the small matrix).
Prints one JSON line.

Usage: ``python -m benchmarks.pca_scale WORK_DIR [--rows 100000] [--methods gram,spark-ml]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIM = 1280
WARM_UP_ROWS = 2_000


def make_matrix(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.gamma(2.0, 1.0, size=(rows, 48)).astype(np.float32)
    axes = np.abs(rng.normal(size=(48, DIM))).astype(np.float32) / 8
    noise = rng.normal(scale=0.05, size=(rows, DIM)).astype(np.float32)
    return np.clip(scores @ axes + noise, 0.0, 6.0)  # ReLU6-like range


def write_parquet(matrix: np.ndarray, folder: str, files: int = 8) -> None:
    os.makedirs(folder, exist_ok=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(matrix)), files)):
        values = pa.array(matrix[chunk].reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(len(chunk) + 1, dtype=np.int32) * DIM)
        table = pa.table(
            {
                "path": [f"img-{i}" for i in chunk],
                "features": pa.ListArray.from_arrays(offsets, values),
            }
        )
        pq.write_table(table, os.path.join(folder, f"part-{index:03d}.parquet"))


def numpy_pca(matrix: np.ndarray, target: float) -> dict:
    start = time.perf_counter()
    mean = matrix.mean(axis=0, dtype=np.float64)
    centred = matrix.astype(np.float64) - mean
    covariance = centred.T @ centred / (len(matrix) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    ratios = eigenvalues[order] / eigenvalues.sum()
    k = int(np.searchsorted(np.cumsum(ratios), target) + 1)
    scores = (matrix - mean.astype(np.float32)) @ eigenvectors[:, order[:k]].astype(np.float32)
    seconds = time.perf_counter() - start
    assert scores.shape == (len(matrix), k)
    return {"seconds": seconds, "k": k, "ratios": ratios[:k]}


def spark_pca(folder: str, method: str, target: float) -> dict:
    from helpers.config import PipelineConfig
    from helpers.reduction import fit_pca, project
    from helpers.session import get_spark

    spark = get_spark(PipelineConfig(folder, folder, spark_master="local[*]"))

    def fit_and_project(source: str) -> tuple:
        features = spark.read.parquet(source)
        start = time.perf_counter()
        fit = fit_pca(features, target, method=method)
        project(spark, features, fit).write.format("noop").mode("overwrite").save()
        return fit, time.perf_counter() - start

    warm_up = folder + "_warm_up"
    if not os.path.exists(warm_up):
        write_parquet(make_matrix(WARM_UP_ROWS, seed=1), warm_up)
    _, cold_seconds = fit_and_project(warm_up)
    fit, seconds = fit_and_project(folder)
    return {
        "seconds": seconds,
        "cold_seconds": cold_seconds,
        "k": fit.k,
        "ratios": np.asarray(fit.explained_variance[: fit.k]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--methods", default="gram")
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    matrix = make_matrix(args.rows)
    folder = os.path.join(args.work_dir, f"features_{args.rows}")
    write_parquet(matrix, folder)
    reference = numpy_pca(matrix, args.target)
    result = {
        "measure": "pca_scale",
        "rows": args.rows,
        "dim": DIM,
        "numpy_seconds": reference["seconds"],
        "numpy_k": reference["k"],
    }
    del matrix
    for method in args.methods.split(","):
        fitted = spark_pca(folder, method, args.target)
        result[f"{method}_seconds"] = fitted["seconds"]
        result[f"{method}_cold_seconds_{WARM_UP_ROWS}_rows"] = fitted["cold_seconds"]
        result[f"{method}_k"] = fitted["k"]
        shared = min(fitted["k"], reference["k"])
        result[f"{method}_max_ratio_error"] = float(
            np.abs(fitted["ratios"][:shared] - reference["ratios"][:shared]).max()
        )
        result[f"{method}_vs_numpy"] = fitted["seconds"] / reference["seconds"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
