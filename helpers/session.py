"""Spark session: reuse the one that exists (Livy, pyspark shell) or build one for the run.

Owns every Spark setting the chain depends on: workers on the driver's Python, forked from a
daemon that has TensorFlow imported (oneDNN as :mod:`helpers.onednn` decides), loopback in
local mode, Arrow for pandas UDFs, file packing for many small images, and S3A for an
S3-compatible endpoint (tests, MinIO/SeaweedFS). On EMR nothing S3-specific is set: ``s3://``
goes through EMR's own file system and the cluster's instance profile.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Sequence

from pyspark import SparkContext
from pyspark.sql import SparkSession

from helpers import class_archive, onednn
from helpers.config import (
    DRIVER_MEMORY_ENV,
    LOCAL_DRIVER_MEMORY,
    LOCAL_JVM_OPTIONS,
    PipelineConfig,
)

APP_NAME = "fruits-featurization"

#: Rows per Arrow batch between the JVM and Python (pandas UDFs, mapInArrow, createDataFrame).
ARROW_BATCH_ROWS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"

#: Spark SQL settings that may be changed on a running session too.
RUNTIME_SQL_CONF: Dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Pandas UDF input batches: bounded, so large photos do not blow a worker's memory.
    ARROW_BATCH_ROWS_KEY: "512",
    # Pack many small image files per task (the default 4 MB open cost gives tiny tasks).
    "spark.sql.files.openCostInBytes": str(128 * 1024),
    "spark.sql.session.timeZone": "UTC",
}

#: Spark's Python worker daemon for the sessions built here (see :mod:`helpers.worker_daemon`).
WORKER_DAEMON_MODULE = "helpers.worker_daemon"
#: Spark keeps one Python worker daemon per distinct worker environment. Its SQL runners (pandas
#: UDFs, ``mapInArrow``) add this variable to that environment and its RDD runners (the cluster
#: check, tree merges) do not, so a session running both kinds of job would keep two daemons,
#: each with its own workers importing TensorFlow (:func:`share_one_worker_daemon`).
SIMPLIFIED_TRACEBACK_ENV = "SPARK_SIMPLIFIED_TRACEBACK"
#: The SQL setting that makes Spark's SQL runners set :data:`SIMPLIFIED_TRACEBACK_ENV`.
SIMPLIFIED_TRACEBACK_CONF = "spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled"

#: Jars (inside PyPI ``sagemaker-pyspark``) that give pyspark 3.5's Hadoop an S3A client.
S3A_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")


def get_spark(config: PipelineConfig, java_options: Sequence[str] = ()) -> SparkSession:
    """Return the active Spark session, or build one from ``config``.

    An existing session (EMR JupyterHub's PySpark kernel via Livy, a ``pyspark`` shell, a test
    fixture) is used as it is, with the runtime SQL settings applied. Otherwise a session is
    built on ``config.spark_master`` (``""``: Spark's default, YARN on EMR) whose workers run
    this very Python interpreter. In local mode its JVM gets :data:`LOCAL_JVM_OPTIONS`, the
    class archive (:mod:`helpers.class_archive`) and ``java_options``.
    """
    endpoint = config.effective_s3_endpoint
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in RUNTIME_SQL_CONF.items():
            active.conf.set(key, value)
        if endpoint:
            _configure_s3a_runtime(active, endpoint)
        share_one_worker_daemon(active)
        return active

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    local = config.spark_master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    builder = SparkSession.builder.appName(APP_NAME)
    if config.spark_master:
        builder = builder.master(config.spark_master)
    settings = dict(RUNTIME_SQL_CONF)
    # Python workers forked with TensorFlow already imported (once per executor, not per worker).
    settings["spark.python.daemon.module"] = WORKER_DAEMON_MODULE
    if local:
        settings.update(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.memory": os.environ.get(DRIVER_MEMORY_ENV, LOCAL_DRIVER_MEMORY),
                "spark.driver.extraJavaOptions": " ".join(
                    [LOCAL_JVM_OPTIONS, *class_archive.java_options(), *java_options]
                ),
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": "8",
            }
        )
    # oneDNN: each worker applies helpers.onednn's rule on its own CPU when it imports helpers;
    # a value the user set on the driver goes to the executors (YARN does not pass the
    # driver's environment) and to the application master (the driver in cluster mode).
    explicit = onednn.user_value()
    if explicit is not None:
        settings["spark.executorEnv." + onednn.ONEDNN_ENV] = explicit
        settings["spark.yarn.appMasterEnv." + onednn.ONEDNN_ENV] = explicit
    if endpoint:
        settings.update(s3a_settings(endpoint))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    share_one_worker_daemon(spark)
    return spark


def share_one_worker_daemon(spark: SparkSession) -> None:
    """Make RDD jobs and SQL Python jobs of ``spark`` use the same worker daemon and workers.

    Adds :data:`SIMPLIFIED_TRACEBACK_ENV` to the environment every Python function of this
    driver carries (``SparkContext.environment``) when Spark's SQL runners add it too (the
    default), so both kinds of runner ask for the same worker environment. Applies to jobs
    started afterwards, in a session built here or an existing one (Livy's).
    """
    if spark.conf.get(SIMPLIFIED_TRACEBACK_CONF, "true").lower() == "true":
        spark.sparkContext.environment[SIMPLIFIED_TRACEBACK_ENV] = "1"


def s3a_settings(endpoint: str) -> Dict[str, str]:
    """Spark settings that send ``s3://`` and ``s3a://`` to an S3-compatible ``endpoint``.

    Path-style access, SSL only for ``https://`` endpoints, credentials from the standard
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` environment variables (never in code).
    """
    jars = ",".join(s3a_jar_paths())
    settings = {"spark.jars": jars}
    for key, value in _s3a_hadoop_conf(endpoint).items():
        settings["spark.hadoop." + key] = value
    return settings


def _s3a_hadoop_conf(endpoint: str) -> Dict[str, str]:
    return {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "fs.s3a.aws.credentials.provider": (
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
        ),
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # Check the bucket when the file system opens: a missing bucket is named at once.
        "fs.s3a.bucket.probe": "2",
        # Fail fast with a clear error instead of retrying for minutes when the server is down.
        "fs.s3a.attempts.maximum": "2",
        "fs.s3a.retry.limit": "2",
        "fs.s3a.connection.establish.timeout": "5000",
        "fs.s3a.connection.timeout": "10000",
    }


def _configure_s3a_runtime(spark: SparkSession, endpoint: str) -> None:
    """Point a running session's Hadoop configuration at ``endpoint`` (jars must be present)."""
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001 (py4j handle)
    for key, value in _s3a_hadoop_conf(endpoint).items():
        hadoop_conf.set(key, value)


def s3a_jar_paths() -> List[str]:
    """Paths of the S3A jars shipped by ``sagemaker-pyspark`` (installed with ``--no-deps``)."""
    spec = importlib.util.find_spec("sagemaker_pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "an S3 endpoint is configured but the S3A jars are missing: "
            "pip install --no-deps sagemaker-pyspark==1.4.5"
        )
    jar_dir = os.path.join(list(spec.submodule_search_locations)[0], "jars")
    paths = [os.path.join(jar_dir, name) for name in S3A_JARS]
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"S3A jar(s) not found: {', '.join(missing)}")
    return paths


def sigint_handler() -> Any:
    """The SIGINT handler in place now; ``None`` off the main thread (where it cannot be set).

    pyspark replaces it when it starts a SparkContext (its handler cancels the context's jobs,
    then raises ``KeyboardInterrupt``); record it before and after to put it back on stop.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


def restore_sigint(before: Any, spark_handler: Any) -> None:
    """Put ``before`` back as the SIGINT handler if pyspark's ``spark_handler`` is still in place.

    Once its context is stopped, pyspark's handler would answer Ctrl-C with an error from the
    stopped context instead of ``KeyboardInterrupt``. A handler set since by someone else is kept.
    """
    if before is None or spark_handler is None or before is spark_handler:
        return
    if sigint_handler() is spark_handler:
        signal.signal(signal.SIGINT, before)


def stop_jvm(timeout_s: float = 120) -> bool:
    """End the JVM that pyspark launched for this Python process; its SparkContext must be
    stopped first (``spark.stop()``).

    pyspark keeps that JVM (its py4j gateway) for the life of the process, even with no
    context left; it exits when its stdin closes. This closes it, waits up to ``timeout_s``
    seconds for the JVM to exit, closes the gateway and clears pyspark's references to it, so
    that a later session in the same process starts a new JVM.

    Returns ``False``, doing nothing, when pyspark did not launch the JVM (no gateway, or one
    given from outside, as under Livy); ``True`` once the JVM has exited.
    """
    gateway = SparkContext._gateway  # noqa: SLF001 - the JVM pyspark launched for this process
    jvm_process = getattr(gateway, "proc", None)
    if jvm_process is None or jvm_process.stdin is None:
        return False
    jvm_process.stdin.close()  # pyspark's gateway JVM exits when its stdin closes
    jvm_process.wait(timeout=timeout_s)
    gateway.close()
    SparkContext._gateway = None  # noqa: SLF001
    SparkContext._jvm = None  # noqa: SLF001
    return True


def task_cpus(spark: SparkSession) -> int:
    """Cores given to each Spark task (``spark.task.cpus``): the threads one model may use."""
    return int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


@contextmanager
def temporary_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """``key`` set to ``value`` for the Spark jobs run inside the block, then set back."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def balanced_partition_bytes(
    files: int,
    total_bytes: int,
    largest_file: int,
    slots: int,
    open_cost: int,
    max_bytes: int,
    min_waves: int = 1,
) -> int:
    """A ``spark.sql.files.maxPartitionBytes`` that splits a file scan into whole waves.

    Spark packs files (largest first, each counted with ``open_cost``) into partitions of at
    most ``max_bytes``: 5,000 small images on 2 cores make 5 full partitions and a small
    sixth, and the last wave runs on one core while the other waits. The bound returned here asks for a multiple of ``slots``
    partitions (never above ``max_bytes``) and holds ``ceil(files / partitions)`` files of the
    largest size: the first partitions, which get the largest files, are never short of a file
    (a bound sized on the mean file would leave one over, run alone as one more wave); partitions of
    smaller files may hold a few more. ``min_waves``: at least that many partitions per slot
    (more, shorter tasks: progress, which Spark reports per finished task, moves in smaller
    steps).
    """
    if files < 1 or slots < 1:
        return max_bytes
    cost = total_bytes + files * open_cost
    partitions = slots * max(1, min_waves, math.ceil(cost / (slots * max_bytes)))
    # Spark closes a partition when the next file's length would pass the bound, counting the
    # open cost of the files already in it.
    per_partition = math.ceil(files / partitions)
    bound = per_partition * (largest_file + open_cost) - open_cost
    return int(min(max_bytes, max(open_cost, bound)))


@contextmanager
def balanced_file_scans(
    spark: SparkSession, files: int, total_bytes: int, largest_file: int, min_waves: int = 1
) -> Iterator[None]:
    """File scans inside the block split into whole waves of the session's task slots.

    ``files``, ``total_bytes`` and ``largest_file`` describe what the scan will read (the
    listing knows them); ``min_waves``: at least that many waves. See
    :func:`balanced_partition_bytes`.
    """
    jvm_bytes = spark.sparkContext._jvm.org.apache.spark.network.util.JavaUtils  # noqa: SLF001
    key = "spark.sql.files.maxPartitionBytes"
    max_bytes = int(jvm_bytes.byteStringAsBytes(spark.conf.get(key, "128m")))
    open_cost = int(
        jvm_bytes.byteStringAsBytes(spark.conf.get("spark.sql.files.openCostInBytes", "4m"))
    )
    slots = max(1, spark.sparkContext.defaultParallelism // task_cpus(spark))
    bound = balanced_partition_bytes(
        files, total_bytes, largest_file, slots, open_cost, max_bytes, min_waves
    )
    # Spark also caps a partition at (all bytes / minPartitionNum, by default the slots): with
    # one wave, that is the mean and the largest files would not fit; the bound decides alone.
    with (
        temporary_conf(spark, key, str(bound)),
        temporary_conf(spark, "spark.sql.files.minPartitionNum", "1"),
    ):
        yield
