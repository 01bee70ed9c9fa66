"""The chain itself (``helpers.pipeline.run_pipeline``), timed the way the targets need.

In one Spark session (``local[*]``: all cores, as the ceiling):

1. a cold run on all images (TensorFlow import and model build in the workers included):
   the whole job's seconds, session start excluded, for the comparison with the P8 baseline;
2. warm runs on half of the images and on all of them: the featurization's steady-state
   throughput is their difference, ``(N - N/2) / (t_N - t_N/2)``, so what both runs pay once
   (model build per worker, task start-up, Parquet commits) cancels out.

Prints one JSON line. Usage: ``python -m benchmarks.pipeline_bench ALL_DIR HALF_DIR OUT_DIR``
"""
from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.data import image_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("all_images")
    parser.add_argument("half_images")
    parser.add_argument("output")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--pca-method", default="gram")  # the chain's default
    args = parser.parse_args()

    from helpers.config import PipelineConfig
    from helpers.pipeline import run_pipeline
    from helpers.session import get_spark

    def config(images: str, name: str) -> PipelineConfig:
        return PipelineConfig(images, os.path.join(args.output, name), spark_master=args.master,
                              image_size=args.image_size, pca_method=args.pca_method)

    started = time.perf_counter()
    spark = get_spark(config(args.all_images, "cold"))
    session_seconds = time.perf_counter() - started

    start = time.perf_counter()
    cold = run_pipeline(config(args.all_images, "cold"), spark)
    cold_seconds = time.perf_counter() - start

    half = run_pipeline(config(args.half_images, "warm_half"), spark)
    start = time.perf_counter()
    full = run_pipeline(config(args.all_images, "warm_all"), spark)
    warm_seconds = time.perf_counter() - start
    n_all, n_half = len(image_files(args.all_images)), len(image_files(args.half_images))
    delta = full.seconds["featurize"] - half.seconds["featurize"]
    print(json.dumps({
        "measure": "pipeline",
        "images": n_all,
        "session_seconds": round(session_seconds, 3),
        "job_seconds": round(cold_seconds, 3),
        "warm_job_seconds": round(warm_seconds, 3),
        "cold_stage_seconds": cold.seconds,
        "warm_stage_seconds": full.seconds,
        "warm_featurize_seconds": {"half": half.seconds["featurize"], "all": full.seconds["featurize"]},
        "steady_images_per_s": (n_all - n_half) / delta if delta > 0 else None,
        "pca_method": args.pca_method,
        "k": cold.manifest["k"],
    }))
    spark.stop()


if __name__ == "__main__":
    main()
