"""Failures: why a listed image has no features, and the run's ``failed/`` table (path, reason).

An image fails when it lies outside a class folder, is empty, or was sent to the CNN and is not
in the features written: those are read and decoded again (without the CNN) for the reason.
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import storage
from helpers.features import decode_error_udf
from helpers.listing import read_binary
from helpers.manifest import Part, holds_every_image_sent, union_all

NO_CLASS_FOLDER = "no class folder: the image lies directly in input_path"
EMPTY_FILE = "empty file (0 bytes)"
VANISHED = "gone or unreadable when read again for its error"
NO_FEATURES = "decodes now but has no features: it may have changed during the run"

#: Up to this many failed images are read again by name; beyond, the input is scanned once.
MAX_FAILED_PATHS_READ_BY_NAME = 10_000


def write_failures(
    spark: SparkSession,
    listing: DataFrame,
    featurized: DataFrame,
    new_part: Optional[Part],
    root: str,
    image_size: int,
    location: str,
    sent: int,
    carried: int = 0,
) -> int:
    """Write ``failed/`` (path, reason) at ``location`` when any image failed; return how many.

    Failures are the images of ``listing`` outside a class folder, the empty files, and the
    images sent to the CNN (``featurized``) that are not in the part ``new_part``: those are
    read (under ``root``) and decoded again at ``image_size`` (no CNN) for the reason. The
    listing is cached, so the first two cost no file access; reused images are not looked at
    again. ``sent``: the rows of ``featurized``; ``carried``: the rows of ``new_part`` that were
    not sent (features moved there from folded parts). When ``new_part`` holds every image sent
    (:func:`helpers.manifest.holds_every_image_sent`), no paths are compared.
    """
    unlabelled = listing.where(F.col("label").isNull())
    empty = listing.where(F.col("label").isNotNull() & (F.col("length") == 0))
    parts: List[Optional[DataFrame]] = [
        unlabelled.select("path", F.lit(NO_CLASS_FOLDER).alias("reason")),
        empty.select("path", F.lit(EMPTY_FILE).alias("reason")),
    ]
    skipped = parts[0].union(parts[1]).count()
    undecoded = 0
    missing = None
    if not holds_every_image_sent(new_part, sent, carried):
        missing = featurized.select("path")
        if new_part is not None:
            in_part = storage.read_parquet(spark, new_part["path"]).select("path")
            missing = missing.join(in_part, "path", "left_anti")
        missing = missing.cache()
        undecoded = missing.count()
    if undecoded:
        parts.append(decode_reasons(spark, missing, undecoded, root, image_size))
    failed = skipped + undecoded
    if failed:
        failures = union_all(parts)
        storage.write_parquet(failures.coalesce(1), location)
    if missing is not None:
        missing.unpersist()
    return failed


def decode_reasons(
    spark: SparkSession, missing: DataFrame, count: int, root: str, image_size: int
) -> DataFrame:
    """path, reason for the ``missing`` images (``count`` of them, under ``root``), decoded
    again at ``image_size``."""
    if count <= MAX_FAILED_PATHS_READ_BY_NAME:
        paths = [row.path for row in missing.collect()]
        contents = read_binary(spark, *paths)
    else:  # many failures: one scan of the input, kept to the missing paths
        contents = read_binary(spark, root).join(missing, "path", "left_semi")
    decode_error = decode_error_udf(image_size)(F.col("content"))
    reasons = contents.select("path", F.coalesce(decode_error, F.lit(NO_FEATURES)).alias("reason"))
    found = reasons.select("path").distinct()
    vanished = missing.join(found, "path", "left_anti").select(
        "path", F.lit(VANISHED).alias("reason")
    )
    return reasons.unionByName(vanished)


def read_failures(spark: SparkSession, location: str) -> pd.DataFrame:
    """The ``failed/`` table at ``location``, by path (empty, with its columns, when absent)."""
    if not storage.exists(spark, location):
        return pd.DataFrame(columns=["path", "reason"])
    return storage.read_parquet(spark, location).orderBy("path").toPandas()
