"""Samples: a few images per class, chosen in Spark (seeded), decoded on the driver, as a grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from helpers import plots
from helpers.images import ImageDecodeError, decode_image
from helpers.listing import read_binary


def sample_grid(
    spark: SparkSession, candidates: DataFrame, seed: int, per_class: int, max_classes: int
) -> Any:
    """A figure: a grid of up to ``per_class`` images of each class of ``candidates`` (path,
    label), decoded on the driver.

    A few spare images per class are read, and files that do not decode are left out of the
    grid. With more than ``max_classes`` classes, a random choice of ``max_classes`` of them
    (by ``seed``) is shown and the title says how many there are in all.
    """
    window = F.row_number().over(
        Window.partitionBy("label").orderBy(F.xxhash64("path", F.lit(seed)))
    )
    chosen = (
        candidates.withColumn("rank", window)
        .where(F.col("rank") <= per_class + 2)
        .select("path", "label")
        .orderBy("label", "rank")
        .toPandas()
    )
    classes = sorted(chosen["label"].unique())
    classes_in_total = len(classes) if len(classes) > max_classes else None
    if classes_in_total is not None:
        rng = np.random.default_rng(seed)
        kept = set(rng.choice(classes, size=max_classes, replace=False))
        chosen = chosen[chosen["label"].isin(kept)].reset_index(drop=True)
    contents = read_binary(spark, *chosen["path"]).select("path", "content").toPandas()
    by_path = dict(zip(contents["path"], contents["content"]))
    shown, images = [], []
    for path, label in zip(chosen["path"], chosen["label"]):
        if sum(1 for other in shown if other[1] == label) == per_class:
            continue
        try:
            images.append(decode_image(by_path.get(path), 100))
            shown.append((path, label))
        except ImageDecodeError:
            continue
    grid = pd.DataFrame(shown, columns=["path", "label"])
    return plots.sample_grid_figure(grid, images, per_class, classes_in_total=classes_in_total)
