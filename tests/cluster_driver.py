"""Driver of the cluster fault test: the whole chain against a Spark standalone master.

Run by ``tests/test_cluster_faults.py`` in its own process (the test process already holds a
local SparkContext, and a Python process can hold only one)::

    python tests/cluster_driver.py MASTER_URL INPUT OUTPUT STATE_DIR \
        [--files-per-task N] [--conf KEY=VALUE ...]

``--conf`` settings go to ``spark-submit`` before the session starts (``PYSPARK_SUBMIT_ARGS``),
next to the ones ``helpers.session.get_spark`` applies. ``--files-per-task N`` packs N small
files (much smaller than Spark's per-file open cost, as the test images are) into each read
task, so that a few dozen images make several tasks. The driver writes, into ``STATE_DIR``:

* ``session.json`` as soon as the session is up: application id, driver UI URL, pid;
* ``result.json`` once ``run_pipeline`` has returned: the manifest's counts, and what the
  driver's own status API says about jobs, SQL executions and executors (taken before the
  session stops, so the test can check what happened to the killed executor).

Exits 0 only when ``run_pipeline`` succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request


def write_json(path: str, payload: object) -> None:
    """Write ``payload`` atomically (the test polls for these files)."""
    partial = path + ".partial"
    with open(partial, "w") as handle:
        json.dump(payload, handle, indent=1, default=str)
    os.replace(partial, path)


def status_api(ui_url: str, app_id: str, endpoint: str) -> object:
    url = f"{ui_url}/api/v1/applications/{app_id}/{endpoint}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("master")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("state_dir")
    parser.add_argument("--files-per-task", type=int, default=0, metavar="N")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    for setting in args.conf:
        if "=" not in setting or " " in setting:
            parser.error(f"--conf takes KEY=VALUE without spaces, got {setting!r}")
    os.environ["PYSPARK_SUBMIT_ARGS"] = " ".join(
        [f"--conf {setting}" for setting in args.conf] + ["pyspark-shell"]
    )

    from helpers.config import PipelineConfig
    from helpers.pipeline import run_pipeline
    from helpers.session import get_spark

    config = PipelineConfig(args.input, args.output, spark_master=args.master)
    spark = get_spark(config)
    context = spark.sparkContext
    if args.files_per_task:
        # Spark packs files into a task while their sizes plus the open cost of each stay under
        # maxPartitionBytes: N open costs give N files per task when the files are small.
        open_cost = spark._jsparkSession.sessionState().conf().filesOpenCostInBytes()  # noqa: SLF001
        spark.conf.set("spark.sql.files.maxPartitionBytes", str(args.files_per_task * open_cost))
    if context.master != args.master:
        raise RuntimeError(f"session runs on {context.master!r}, not on {args.master!r}")
    ui_url = context.uiWebUrl
    app_id = context.applicationId
    write_json(
        os.path.join(args.state_dir, "session.json"),
        {"app_id": app_id, "ui": ui_url, "pid": os.getpid(), "master": context.master},
    )
    try:
        run = run_pipeline(config, spark)
        write_json(
            os.path.join(args.state_dir, "result.json"),
            {
                "counts": run.counts(),
                "images_through_model": run.manifest.get("images_through_model"),
                "jobs": status_api(ui_url, app_id, "jobs"),
                "sql": status_api(
                    ui_url, app_id, "sql?details=false&planDescription=true&offset=0&length=10000"
                ),
                "executors": status_api(ui_url, app_id, "allexecutors"),
            },
        )
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
