"""Listing: the images under ``input_path``, found once (one file scan), labelled, counted.

Spark's ``binaryFile`` source lists the tree once; its file index then serves every later read
of all the images. Zero-byte files, which the scan skips silently, are added from that index;
each file gets its label and split from its path (:func:`helpers.images.label_columns`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import storage
from helpers.config import IMAGE_EXTENSIONS
from helpers.images import label_columns
from helpers.progress import TASKS_PER_CORE
from helpers.session import task_cpus, temporary_conf

#: Hadoop glob keeping .jpg/.jpeg/.png in any letter case.
IMAGE_GLOB = (
    "*.{"
    + ",".join(
        "".join(f"[{c.lower()}{c.upper()}]" for c in ext.lstrip(".")) for ext in IMAGE_EXTENSIONS
    )
    + "}"
)

#: Bytes each file counts for when the listing packs files into tasks (it reads no content).
LISTING_OPEN_COST = 1 << 20

#: Spark lists more paths than this (folders, or files named one by one) in a Spark job.
DISCOVERY_THRESHOLD_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"


class Listing(NamedTuple):
    """What :func:`list_images` found under a root."""

    files: DataFrame  # the file scan (path, modificationTime, length, content): one file index
    listing: DataFrame  # path, length, modificationTime, label, split; cached
    images_total: int  # rows of ``listing``
    listed_bytes: Tuple[int, int]  # total and largest file size of ``listing``


def list_images(spark: SparkSession, root: str, sample_limit: Optional[int]) -> Listing:
    """The images under ``root`` (a qualified path, no trailing ``/``), content not read:
    zero-byte files included, labelled, cut to the first ``sample_limit`` paths when set."""
    with listing_scan(spark):
        files = read_binary(spark, root)
        scan = files.select("path", "length", "modificationTime")
        limited = sample_limit is not None
        # Zero-byte files are in the index but not in the scan: with a sample_limit they are
        # added first (they may be among the first paths), else only when missing, to the
        # cached listing (the files are not scanned again).
        listing, total, sizes = cached_listing(
            with_empty_files(spark, files, scan) if limited else scan, root, sample_limit
        )
        if not limited and total < indexed_count(files):
            scanned = listing
            listing, total, sizes = cached_listing(
                with_empty_files(
                    spark, files, scanned.select("path", "length", "modificationTime")
                ),
                root,
                sample_limit,
            )
            scanned.unpersist()
    return Listing(files, listing, total, sizes)


def cached_listing(
    files: DataFrame, root: str, sample_limit: Optional[int]
) -> Tuple[DataFrame, int, Tuple[int, int]]:
    """``files`` labelled, cut to ``sample_limit``, cached; with its row count and its total
    and largest file size (one job)."""
    listing = labelled(files, root)
    if sample_limit is not None:
        listing = listing.orderBy("path").limit(sample_limit)
    listing = listing.cache()
    counts = listing.agg(F.count(F.lit(1)), F.sum("length"), F.max("length")).first()
    return listing, int(counts[0]), (int(counts[1] or 0), int(counts[2] or 0))


@contextmanager
def listing_scan(spark: SparkSession) -> Iterator[None]:
    """The listing's file index and scan, cheap per file. The index: folders listed in at
    most a few tasks per core, no block locations (the chain reads whole files, anywhere).
    The scan: a few tasks per core with as many files each: it reads no content, so a file
    costs its open, not its bytes (Spark's packing by bytes plus a small open cost would
    make many tasks, and few files for the tasks of larger ones)."""
    slots = max(1, spark.sparkContext.defaultParallelism // task_cpus(spark))
    with (
        temporary_conf(spark, "spark.sql.sources.ignoreDataLocality", "true"),
        temporary_conf(
            spark,
            "spark.sql.sources.parallelPartitionDiscovery.parallelism",
            str(slots * TASKS_PER_CORE),
        ),
        temporary_conf(spark, "spark.sql.files.openCostInBytes", str(LISTING_OPEN_COST)),
        temporary_conf(spark, "spark.sql.files.maxPartitionBytes", str(2**62)),
        temporary_conf(spark, "spark.sql.files.minPartitionNum", str(slots * TASKS_PER_CORE)),
    ):
        yield


def indexed_paths(spark: SparkSession, files: DataFrame) -> List[str]:
    """The paths of the file index of ``files`` (every file, empty ones too), as Spark's
    ``path`` column writes them (they cross from the JVM as one string)."""
    jvm = spark.sparkContext._jvm  # noqa: SLF001 (py4j handle)
    # One string, not one py4j call per path (20,000 calls: 6 s on a busy 2-core machine).
    joined = jvm.scala.Predef.genericWrapArray(files._jdf.inputFiles()).mkString("\0")
    return [hadoop_path_string(uri) for uri in str(joined).split("\0") if uri]


def indexed_count(files: DataFrame) -> int:
    """How many files the file index of ``files`` holds (one call, no path crosses)."""
    return len(files._jdf.inputFiles())  # noqa: SLF001


def with_empty_files(spark: SparkSession, files: DataFrame, scanned: DataFrame) -> DataFrame:
    """``scanned`` plus the zero-byte files that Spark's file scan skips silently (length 0):
    the files of the driver's file index of ``files`` that the scan did not return."""
    indexed = spark.createDataFrame(
        [(path,) for path in indexed_paths(spark, files)], "path string"
    )
    empty = indexed.join(scanned, "path", "left_anti").select(
        "path",
        F.lit(0).cast("long").alias("length"),
        F.lit(None).cast("timestamp").alias("modificationTime"),
    )
    return scanned.unionByName(empty)


def labelled(frame: DataFrame, root: str) -> DataFrame:
    """``frame`` with ``label`` (class folder) and ``split`` (Training/Test) from its path."""
    return frame.select("*", *label_columns(root))


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


def hadoop_path_string(uri: str) -> str:
    """A file-index URI (``file:///a%20b``) as Spark's ``path`` column writes it (``file:/a b``)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return "file:" + unquote(parsed.path)
    return f"{parsed.scheme}://{parsed.netloc}{unquote(parsed.path)}"
