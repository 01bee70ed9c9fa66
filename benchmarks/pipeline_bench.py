"""The chain itself (``helpers.pipeline.run_pipeline``), timed the way the targets need.

In one Spark session (``local[*]``: all cores, as the ceiling):

1. a cold run on all images (TensorFlow import and model build in the workers included):
   the whole job's seconds, session start excluded, for the comparison with the P8 baseline;
2. a warm run on all images (the workers and their model kept from the cold run): the
   whole job again (what a notebook's second run costs) and the featurization's steady-state
   throughput, read from the per-batch timings the workers write
   (``$FRUITS_FEATURE_TIMINGS``): images featurized / (last batch end - first batch start),
   over every worker. A batch's time holds what the ceiling's pass holds (decode, resize,
   model); the span between batches adds what Spark adds (Arrow transfer, task start-up).

Prints one JSON line. Usage: ``python -m benchmarks.pipeline_bench IMAGES_DIR OUT_DIR``
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time
from typing import Dict, List

from benchmarks.data import image_files


def batch_events(folder: str, start: float, end: float) -> List[Dict]:
    """The workers' ``batch`` timing events that began within ``[start, end]`` (wall clock)."""
    events = []
    for path in glob.glob(os.path.join(folder, "*.jsonl")):
        with open(path) as handle:
            for line in handle:
                event = json.loads(line)
                if event["event"] == "batch" and start <= event["start"] <= end:
                    events.append(event)
    return events


def steady_rate(events: List[Dict]) -> Dict:
    """Images per second over the span of ``events``, and per worker busy time."""
    images = sum(event["images"] for event in events)
    span = max(e["end"] for e in events) - min(e["start"] for e in events)
    busy = sum(e["end"] - e["start"] for e in events)
    return {
        "images": images,
        "span_seconds": round(span, 3),
        "batches": len(events),
        "workers": len({e["pid"] for e in events}),
        "images_per_s": images / span,
        "images_per_busy_s": images / busy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("output")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--pca-method", default="gram")  # the chain's default
    parser.add_argument("--batch-size", type=int, default=None)  # None: the chain's default
    args = parser.parse_args()

    from helpers import log
    from helpers.config import PipelineConfig
    from helpers.features import TIMINGS_ENV
    from helpers.pipeline import run_pipeline
    from helpers.session import get_spark

    log.configure()
    timings = tempfile.mkdtemp(prefix="fruits-timings-")
    os.environ[TIMINGS_ENV] = timings  # before the session: the Python workers inherit it

    def config(name: str) -> PipelineConfig:
        return PipelineConfig(
            args.images,
            os.path.join(args.output, name),
            spark_master=args.master,
            image_size=args.image_size,
            pca_method=args.pca_method,
            **({"batch_size": args.batch_size} if args.batch_size else {}),
        )

    started = time.perf_counter()
    spark = get_spark(config("cold"))
    session_seconds = time.perf_counter() - started

    start = time.perf_counter()
    cold = run_pipeline(config("cold"), spark)
    cold_seconds = time.perf_counter() - start

    wall_start, start = time.time(), time.perf_counter()
    warm = run_pipeline(config("warm"), spark)
    warm_seconds = time.perf_counter() - start
    steady = steady_rate(batch_events(timings, wall_start, time.time()))
    print(
        json.dumps(
            {
                "measure": "pipeline",
                "images": len(image_files(args.images)),
                "session_seconds": round(session_seconds, 3),
                "job_seconds": round(cold_seconds, 3),
                "warm_job_seconds": round(warm_seconds, 3),
                "cold_stage_seconds": cold.seconds,
                "warm_stage_seconds": warm.seconds,
                "steady": steady,
                "steady_images_per_s": steady["images_per_s"],
                "pca_method": args.pca_method,
                "batch_size": cold.config.batch_size,
                "k": cold.manifest["k"],
                # oneDNN and ISA on the driver and the executors, and what the probe cost (warm run)
                "tensorflow": warm.manifest["tensorflow"],
                "onednn": warm.manifest["tensorflow"]["summary"],
            }
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
