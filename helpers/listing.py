"""Listing: the images under ``input_path``, found once (one file index), labelled, counted.

Spark's ``binaryFile`` source lists the tree once; its file index then serves every later read
of all the images, and its file statuses are the listing (zero-byte files included, which the
scan skips silently). Each file gets its label and split from its path
(:func:`helpers.images.label_columns`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Tuple

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import storage
from helpers.config import IMAGE_EXTENSIONS
from helpers.images import label_columns
from helpers.progress import TASKS_PER_CORE
from helpers.session import ARROW_BATCH_ROWS_KEY, task_cpus, temporary_conf

#: Hadoop glob keeping .jpg/.jpeg/.png in any letter case.
IMAGE_GLOB = (
    "*.{"
    + ",".join(
        "".join(f"[{c.lower()}{c.upper()}]" for c in ext.lstrip(".")) for ext in IMAGE_EXTENSIONS
    )
    + "}"
)

#: Spark lists more paths than this (folders, or files named one by one) in a Spark job.
DISCOVERY_THRESHOLD_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"


#: What the listing reads of each file status of the index, as Hadoop's ``FileStatus.toString``
#: writes it (``LocatedFileStatus{path=...; isDirectory=false; length=...; ...;
#: modification_time=...; ...}``, and likewise for the local and S3A file systems' own kinds).
STATUS_FIELDS = re.compile(
    r"\{path=(.*); isDirectory=false; length=(\d+);.*?; modification_time=(-?\d+);", re.DOTALL
)

#: File statuses that cross from the JVM in one string (about 330 bytes each).
STATUSES_PER_CALL = 50_000

#: The listing's columns, as Spark's ``binaryFile`` source names and types them.
LISTING_SCHEMA = "path string, length long, modificationTime timestamp"


class Listing(NamedTuple):
    """What :func:`list_images` found under a root."""

    files: DataFrame  # the file scan (path, modificationTime, length, content): one file index
    listing: DataFrame  # path, length, modificationTime, label, split; cached
    images_total: int  # rows of ``listing``
    listed_bytes: Tuple[int, int]  # total and largest file size of ``listing``


def list_images(spark: SparkSession, root: str, sample_limit: Optional[int]) -> Listing:
    """The images under ``root`` (a qualified path, no trailing ``/``), content not read:
    zero-byte files included, labelled, cut to the first ``sample_limit`` paths when set.

    The tree is listed once, into the file index of the scan :attr:`Listing.files`; the
    listing is made from that index's file statuses, with no Spark job and no file opened
    (on S3, no request per file)."""
    with listing_index(spark):
        files = read_binary(spark, root)
    statuses = indexed_statuses(files)
    if sample_limit is not None:
        statuses = statuses.sort_values("path", kind="stable").head(sample_limit)
    # One Arrow batch, so one partition, per core (the session's batches are sized for images).
    per_core = -(-len(statuses) // spark.sparkContext.defaultParallelism)
    with temporary_conf(spark, ARROW_BATCH_ROWS_KEY, str(max(1, per_core))):
        frame = spark.createDataFrame(statuses if len(statuses) else [], LISTING_SCHEMA)
    listing = labelled(frame, root).cache()
    sizes = (
        (int(statuses["length"].sum()), int(statuses["length"].max())) if len(statuses) else (0, 0)
    )
    return Listing(files, listing, len(statuses), sizes)


def indexed_statuses(files: DataFrame) -> pd.DataFrame:
    """path, length and modificationTime (UTC) of every file of the file index of ``files``
    (a file scan), empty files included; ``path`` as Spark's ``path`` column writes it.

    The statuses cross from the JVM as text, :data:`STATUSES_PER_CALL` to a string, not one
    py4j call per file (each costs about 0.1 ms)."""
    index = files._jdf.queryExecution().analyzed().relation().location()  # noqa: SLF001
    statuses = index.allFiles()
    count = statuses.size()
    paths: List[str] = []
    lengths: List[int] = []
    times: List[int] = []
    for start in range(0, count, STATUSES_PER_CALL):
        text = str(statuses.slice(start, start + STATUSES_PER_CALL).mkString("\0"))
        for record in text.split("\0"):
            fields = STATUS_FIELDS.search(record)
            if fields is None:
                raise RuntimeError(f"unexpected file status from the file index: {record[:300]}")
            paths.append(fields.group(1))
            lengths.append(int(fields.group(2)))
            times.append(int(fields.group(3)))
    return pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "length": pd.Series(lengths, dtype="int64"),
            "modificationTime": pd.to_datetime(
                pd.Series(times, dtype="int64"), unit="ms", utc=True
            ),
        }
    )


@contextmanager
def listing_index(spark: SparkSession) -> Iterator[None]:
    """The listing's file index: folders listed in at most a few tasks per core when Spark
    lists them in a job (S3), no block locations (the chain reads whole files, anywhere)."""
    slots = max(1, spark.sparkContext.defaultParallelism // task_cpus(spark))
    with (
        temporary_conf(spark, "spark.sql.sources.ignoreDataLocality", "true"),
        temporary_conf(
            spark,
            "spark.sql.sources.parallelPartitionDiscovery.parallelism",
            str(slots * TASKS_PER_CORE),
        ),
    ):
        yield


def labelled(frame: DataFrame, root: str) -> DataFrame:
    """``frame`` with ``label`` (class folder) and ``split`` (Training/Test) from its path."""
    return frame.select("*", *label_columns(root))


def featurizable() -> Column:
    """Whether a listing row is an image for the CNN: in a class folder and not empty."""
    return F.col("label").isNotNull() & (F.col("length") > 0)


def read_binary(spark: SparkSession, *paths: str) -> DataFrame:
    """The image files under (or at) ``paths``, recursively, with their binary contents.

    Paths on this machine's disk are listed by the driver itself, never in a Spark job: the
    job's tasks cost more than the few file system calls (1,000 files named one by one: well
    under a second against several). Other file systems (S3) keep Spark's parallel listing.
    """
    reader = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", IMAGE_GLOB)
    )
    target = list(paths) if len(paths) > 1 else paths[0]
    if all(storage.local_file(path) is not None for path in paths):
        with temporary_conf(spark, DISCOVERY_THRESHOLD_KEY, str(2**31 - 1)):
            return reader.load(target)
    return reader.load(target)
