"""Driver of the oneDNN and cluster-check tests, run in its own process with the environment the
test chose (``TF_ENABLE_ONEDNN_OPTS`` unset or set by the user; a process can hold only one
SparkContext, and TensorFlow reads the variable once, at import)::

    python tests/onednn_driver.py MODE RESULT_JSON [FEATURES_NPY | BAD_PYTHON]

Modes:

* ``chain``: import :mod:`helpers.features` (the driver), compute the features of the images
  of ``tests/data/torchvision_features.npz`` in this process (saved to ``FEATURES_NPY``), then build the session as the
  chain does (:func:`helpers.session.get_spark`, ``local[2]``), start its workers as a run
  does (:class:`helpers.cluster.WorkerStart`) and probe them;
* ``existing``: start a plain Spark session first (pyspark's own worker daemon, the JVM
  started before helpers is imported: like Livy on EMR), then import helpers and probe;
* ``broken``: a plain session whose workers run ``BAD_PYTHON`` (a Python without TensorFlow):
  :func:`helpers.cluster.check_cluster`'s error; then one whose workers cannot start at all
  (the check's error; a :class:`helpers.cluster.WorkerStart` that fails quietly, one cancelled).

Writes ``RESULT_JSON``: the environment this process started with, the driver's TensorFlow
state, the probe's records and what the session passed on to executors.
"""

from __future__ import annotations

import json
import os
import sys

import psutil

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
FIXTURE = os.path.join(REPO, "tests", "data", "torchvision_features.npz")


def plain_session(master: str = "local[2]"):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("plain")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def worker_daemons() -> list:
    """The pids of this process's Spark worker daemons (``python -m helpers.worker_daemon``
    processes whose parent is not one: the workers forked from a daemon have its command
    line; the JVM's names the module too, in its settings)."""
    found = {}
    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[-2:] == ["-m", "helpers.worker_daemon"]:
                found[process.pid] = process.ppid()
        except psutil.Error:
            continue
    return sorted(pid for pid, parent in found.items() if parent not in found)


def main() -> None:
    mode, result_path = sys.argv[1], sys.argv[2]
    started_with = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    result = {"started_with": started_with}
    if mode == "chain":
        import numpy as np

        import helpers.features as features
        from helpers import cluster, onednn
        from helpers.config import PipelineConfig
        from helpers.session import get_spark

        result["driver"] = onednn.tensorflow_state()
        with np.load(FIXTURE, allow_pickle=False) as reference:  # torchvision's own numbers
            files = [str(name) for name in reference["files"]]
        contents = []
        for name in files:
            with open(os.path.join(REPO, name), "rb") as handle:
                contents.append(handle.read())
        np.save(sys.argv[3], features.extract_features(contents))
        spark = get_spark(PipelineConfig("unused", "unused", spark_master="local[2]"))
        result["executor_env"] = spark.sparkContext.getConf().get(
            "spark.executorEnv.TF_ENABLE_ONEDNN_OPTS", None
        )
        # What a Run starts as it begins: the worker daemon, with no other job yet.
        started = cluster.WorkerStart(spark)
        result["start"] = {
            "ended": started.wait(300),
            "tasks": started.tasks,
            "error": started.error,
            "daemons": worker_daemons(),
        }
        result["records"] = cluster.probe_executors(spark)
        result["table"] = cluster.check_cluster(spark).to_dict("records")
        result["daemons_after"] = worker_daemons()
        result["probe_parents"] = sorted(
            {psutil.Process(record["pid"]).ppid() for record in result["records"]}
        )
    elif mode == "existing":
        os.environ["PYSPARK_PYTHON"] = sys.executable  # as Livy's session is configured
        spark = plain_session()
        from helpers import cluster

        result["records"] = cluster.probe_executors(spark)
    elif mode == "broken":
        from helpers import cluster

        os.environ["PYSPARK_PYTHON"] = sys.argv[3]
        spark = plain_session()
        try:
            cluster.check_cluster(spark)
        except RuntimeError as error:
            result["without_tensorflow"] = str(error)
        spark.stop()
        os.environ["PYSPARK_PYTHON"] = "/bin/false"  # a worker Python that cannot start
        spark = plain_session()
        try:
            cluster.check_cluster(spark)
        except RuntimeError as error:
            result["cannot_start"] = str(error)
        # Starting such workers in the background fails quietly: the check above says why.
        started = cluster.WorkerStart(spark)
        result["start"] = {"ended": started.wait(300), "error": started.error}
        started = cluster.WorkerStart(spark)
        started.cancel()
        result["cancelled_ended"] = started.wait(0)
    else:
        raise SystemExit(f"unknown mode {mode!r}: chain, existing or broken")
    with open(result_path, "w") as handle:
        json.dump(result, handle, default=str)


if __name__ == "__main__":
    main()
