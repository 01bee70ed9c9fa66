"""Session settings: file scans split into whole waves of the task slots, Python workers forked
with TensorFlow loaded (real Spark, real files, the real daemon)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from typing import List

import pandas as pd
from pyspark.sql import functions as F

from helpers.session import (
    WORKER_DAEMON_MODULE,
    balanced_file_scans,
    balanced_partition_bytes,
    temporary_conf,
)

MB = 2**20
OPEN_COST = 128 * 1024  # the chain's spark.sql.files.openCostInBytes


def test_partition_bound_gives_whole_waves_below_the_session_bound() -> None:
    # 5,000 images of 5 kB on 2 slots: Spark's 128 MB bound makes 6 partitions (5 full, 1 small).
    bound = balanced_partition_bytes(5000, 5000 * 5000, 6000, 2, OPEN_COST, 128 * MB)
    cost = 5000 * (5000 + OPEN_COST)
    assert bound <= 128 * MB
    assert 834 * (6000 + OPEN_COST) - OPEN_COST <= bound  # 5000 / 6 files of the largest size
    assert cost / bound > 5  # so 6 partitions: 3 waves of 2
    # Few files: one partition per slot, as Spark already does.
    few = balanced_partition_bytes(300, 300 * 5000, 5000, 2, OPEN_COST, 128 * MB)
    assert 150 * (5000 + OPEN_COST) - OPEN_COST <= few < 151 * (5000 + OPEN_COST)
    # Nothing to scan: the session's bound is kept.
    assert balanced_partition_bytes(0, 0, 0, 2, OPEN_COST, 128 * MB) == 128 * MB


def test_partition_bound_gives_at_least_min_waves() -> None:
    # 240 images on 2 slots: one wave (2 tasks) by default; 4 waves (8 tasks of 30) asked for
    # by the progress display, so that Spark reports progress in eighths.
    one = balanced_partition_bytes(240, 240 * 5000, 5000, 2, OPEN_COST, 128 * MB)
    four = balanced_partition_bytes(240, 240 * 5000, 5000, 2, OPEN_COST, 128 * MB, min_waves=4)
    assert one == 120 * (5000 + OPEN_COST) - OPEN_COST
    assert four == 30 * (5000 + OPEN_COST) - OPEN_COST
    # Many files already make more waves than asked: min_waves changes nothing.
    many = (5000, 5000 * 5000, 6000, 2, OPEN_COST, 128 * MB)
    assert balanced_partition_bytes(*many, min_waves=3) == balanced_partition_bytes(*many)


def _partition_sizes(spark, folder: str) -> List[int]:
    scan = spark.read.format("binaryFile").load(folder)
    return [
        row["n"]
        for row in scan.groupBy(F.spark_partition_id().alias("p"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    ]


def test_scan_of_many_small_files_splits_into_equal_waves(spark, tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    files, size = 320, 3000
    for index in range(files):
        (folder / f"{index}.jpg").write_bytes(os.urandom(size))
    slots = spark.sparkContext.defaultParallelism
    # A 6 MB bound stands for the default 128 MB at 25x the files: Spark's own packing leaves
    # one small last partition (an idle core in the last wave).
    with temporary_conf(spark, "spark.sql.files.maxPartitionBytes", str(6 * MB)):
        unbalanced = _partition_sizes(spark, str(folder))
        with balanced_file_scans(spark, files, files * size, size):
            balanced = _partition_sizes(spark, str(folder))
        assert spark.conf.get("spark.sql.files.maxPartitionBytes") == str(6 * MB)  # set back
    assert sum(unbalanced) == sum(balanced) == files
    assert len(unbalanced) % slots != 0 or min(unbalanced) < 0.5 * max(unbalanced)
    assert len(balanced) % slots == 0
    assert min(balanced) >= 0.9 * max(balanced), balanced


def test_scan_of_unequal_files_makes_no_extra_partition(spark, tmp_path) -> None:
    # Like 300 Fruits-360 JPEGs (2 to 3.2 kB) on the default bound: one partition per slot.
    # Spark packs the largest files first, so a bound sized on the mean size let the first
    # partition hold one file fewer and a third task of one image ran alone.
    folder = tmp_path / "images"
    folder.mkdir()
    sizes = [2000 + (index * 397) % 1200 for index in range(300)]
    for index, size in enumerate(sizes):
        (folder / f"{index}.jpg").write_bytes(os.urandom(size))
    slots = spark.sparkContext.defaultParallelism
    with balanced_file_scans(spark, len(sizes), sum(sizes), max(sizes)):
        balanced = _partition_sizes(spark, str(folder))
    assert sum(balanced) == len(sizes)
    assert len(balanced) == slots, balanced
    assert min(balanced) >= 0.9 * max(balanced), balanced


def _maps_tensorflow(pid: int) -> bool:
    """Whether process ``pid`` has TensorFlow's shared library loaded."""
    with open(f"/proc/{pid}/maps") as maps:
        return "libtensorflow" in maps.read()


def test_worker_daemon_forks_workers_with_tensorflow_loaded() -> None:
    # Spark's protocol: the daemon's first stdout bytes are its port; each connection forks a
    # worker, which writes its pid back. Anything TensorFlow prints must not come before.
    daemon = subprocess.Popen(
        [sys.executable, "-m", "helpers.worker_daemon"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = struct.unpack(">i", daemon.stdout.read(4))[0]
        assert 0 < port < 65536
        assert _maps_tensorflow(daemon.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            worker = struct.unpack(">i", connection.makefile("rb").read(4))[0]
            assert worker != daemon.pid and _maps_tensorflow(worker)
        daemon.stdin.close()  # Spark's way to stop it (pyspark's daemon then exits with 1)
        daemon.wait(timeout=30)
    finally:
        daemon.kill()


def test_sessions_built_here_use_the_worker_daemon(spark) -> None:
    def parent_has_tensorflow(frames):  # _maps_tensorflow inline: workers cannot import tests
        for _ in frames:
            pass
        with open(f"/proc/{os.getppid()}/maps") as maps:
            yield pd.DataFrame({"loaded": ["libtensorflow" in maps.read()]})

    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == WORKER_DAEMON_MODULE
    loaded = spark.range(0, 2, 1, 2).mapInPandas(parent_has_tensorflow, "loaded boolean").collect()
    assert [row.loaded for row in loaded] == [True, True]


def test_local_mode_bounds_its_one_jvm_heap(spark) -> None:
    """Local mode's JVM (driver and executor) gets ``spark.driver.memory`` as its heap bound:
    ``$FRUITS_DRIVER_MEMORY``, else 2 GB; and the serial collector."""
    from helpers.config import DRIVER_MEMORY_ENV, LOCAL_DRIVER_MEMORY

    assert LOCAL_DRIVER_MEMORY == "2g"
    wanted = os.environ.get(DRIVER_MEMORY_ENV, LOCAL_DRIVER_MEMORY)
    assert spark.sparkContext.getConf().get("spark.driver.memory") == wanted
    units = {"m": 2**20, "g": 2**30}
    bound = int(wanted[:-1]) * units[wanted[-1].lower()]
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()  # noqa: SLF001
    assert 0.8 * bound <= heap <= bound  # the JVM reports its bound less one survivor space
    # The serial collector (helpers.config.LOCAL_JVM_OPTIONS): its two collectors' names.
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory  # noqa: SLF001
    collectors = {bean.getName() for bean in beans.getGarbageCollectorMXBeans()}
    assert collectors == {"Copy", "MarkSweepCompact"}
    # It keeps 10 to 30 % of the heap free after a collection, not the default 40 to 70 %.
    jvm = spark.sparkContext._jvm  # noqa: SLF001
    hotspot = beans.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    ratios = {
        name: hotspot.getVMOption(name).getValue()
        for name in ("MinHeapFreeRatio", "MaxHeapFreeRatio")
    }
    assert ratios == {"MinHeapFreeRatio": "10", "MaxHeapFreeRatio": "30"}


def test_rdd_and_sql_jobs_share_one_worker_daemon(spark) -> None:
    """The cluster check (an RDD job) and the CNN (a pandas UDF) get their workers from one
    daemon: Spark would otherwise start a second one, importing TensorFlow again."""

    def rdd_parent(index, rows):  # noqa: ARG001
        yield os.getppid()

    def sql_parent(frames):
        for _ in frames:
            pass
        yield pd.DataFrame({"parent": [os.getppid()]})

    rdd = set(
        spark.sparkContext.parallelize(range(2), 2).mapPartitionsWithIndex(rdd_parent).collect()
    )
    sql = {
        row.parent
        for row in spark.range(0, 2, 1, 2).mapInPandas(sql_parent, "parent int").collect()
    }
    assert len(rdd) == 1 and sql == rdd


def test_an_existing_session_gets_the_shared_worker_environment(spark) -> None:
    from helpers.config import PipelineConfig
    from helpers.session import SIMPLIFIED_TRACEBACK_ENV, get_spark

    environment = spark.sparkContext.environment
    environment.pop(SIMPLIFIED_TRACEBACK_ENV)
    try:
        existing = get_spark(PipelineConfig("unused", "unused"))  # no new context is built
        assert existing.sparkContext is spark.sparkContext
        assert environment[SIMPLIFIED_TRACEBACK_ENV] == "1"
    finally:
        environment[SIMPLIFIED_TRACEBACK_ENV] = "1"
