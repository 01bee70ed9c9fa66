"""Manifest: what a published run consists of (feature parts, inventory); reading it; reuse.

A run's features may lie in several folders ("parts"): an incremental run writes only the
features of its new or changed images into its own ``features/`` folder and names, beside it,
the parts of earlier runs that still hold features of unchanged images, without copying them.
The manifest lists every part (``outputs["features"]``, and ``feature_parts`` with each part's
``rows``, the rows written in it, and ``images``, how many of them are still in use); the run's
``inventory/`` says which part holds each image's features (its ``part`` column). A part whose
``images`` is below its ``rows`` holds features of images since deleted or changed: readers keep
only the rows the inventory assigns to it. :func:`read_features` does all that in one call.
A part may also name ``moments``: a file holding the PCA moments of all its rows
(:mod:`helpers.reduction`), which a later run's PCA uses instead of reading the part again while
all its rows are in use (:func:`stored_moments`).

Parts stay bounded (:func:`plan_parts`): a part that no longer holds most of its rows in use, and
every part but the largest once a run would name more than :data:`MAX_FEATURE_PARTS`, are
rewritten (their rows in use) into the new run's own part.

An incremental run reuses the parts of the last published run for the images whose path, size
and modification time are unchanged (:func:`reusable_parts`), and writes its own ``inventory/``
(:func:`write_inventory`).
"""

from __future__ import annotations

import logging
import posixpath
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Set, Tuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import storage
from helpers.features import FEATURE_DIM
from helpers.listing import featurizable
from helpers.reduction import Moments, moments_from_bytes

if TYPE_CHECKING:  # annotations only: helpers.pipeline imports this module
    from helpers.pipeline import Run

LOG = logging.getLogger("helpers.pipeline.manifest")

#: At most this many feature folders make up a published run.
MAX_FEATURE_PARTS = 8

#: Inventory column naming the feature folder that holds an image's features (null: none).
PART_COLUMN = "part"

#: {"path": folder, "rows": rows written in it, "images": rows in use[, "moments": file]}
Part = Dict[str, Any]


def feature_parts(manifest: Optional[Dict[str, Any]]) -> List[Part]:
    """The feature folders of a published run, each ``{"path", "rows", "images"}``.

    A manifest written before runs had parts names one folder, all of whose rows are in use.
    """
    if not manifest:
        return []
    if "feature_parts" in manifest:
        return [dict(part) for part in manifest["feature_parts"]]
    location = manifest.get("outputs", {}).get(storage.FEATURES_DIR)
    if location is None:
        return []
    images = int(manifest.get("images_featurized", 0))
    paths = [location] if isinstance(location, str) else list(location)
    return [{"path": path, "rows": images, "images": images} for path in paths]


def plan_parts(
    parts: Iterable[Part], images_in_use: Dict[str, int], limit: Optional[int] = None
) -> Tuple[List[Part], List[Part]]:
    """Split the previous run's ``parts`` into those kept where they are and those folded.

    ``images_in_use``: per part path, how many of its rows are features of images this run
    reuses. A part with none is dropped. A part is folded (its rows in use rewritten into the
    new run's part) when most of its rows are no longer in use (``2 * images < rows``). If the
    kept parts plus the new one would pass ``limit``, every kept part but the largest is folded
    too (``limit``: :data:`MAX_FEATURE_PARTS` when ``None``). Returns ``(kept, folded)``, each
    part with ``images`` set to its rows in use.
    """
    limit = MAX_FEATURE_PARTS if limit is None else limit
    kept: List[Part] = []
    folded: List[Part] = []
    for part in parts:
        images = int(images_in_use.get(part["path"], 0))
        if images == 0:
            continue
        updated = {**part, "images": images}
        (folded if 2 * images < int(part["rows"]) else kept).append(updated)
    if len(kept) + 1 > limit:
        kept.sort(key=lambda part: part["images"], reverse=True)
        folded.extend(kept[1:])
        kept = kept[:1]
    return kept, folded


def read_parts(
    spark: SparkSession, parts: Iterable[Part], in_use: Optional[DataFrame]
) -> Optional[DataFrame]:
    """The features held by ``parts`` (path, label, split, features); ``None`` when none.

    ``in_use`` (path, part): which part holds each image's features (an inventory). A part
    with rows no longer in use is kept to the paths ``in_use`` gives it (a broadcast semi-join:
    the features are not shuffled); a part whose rows are all in use is read as it is.
    """
    frames = []
    for part in parts:
        frame = storage.read_parquet(spark, part["path"])
        if int(part["images"]) < int(part["rows"]):
            if in_use is None:
                raise ValueError(
                    f"feature part {part['path']} holds rows no longer in use, "
                    "and no inventory says which"
                )
            paths = in_use.where(F.col(PART_COLUMN) == part["path"]).select("path")
            frame = frame.join(F.broadcast(paths), "path", "left_semi")
        frames.append(frame)
    return union_all(frames)


def stored_moments(spark: SparkSession, parts: Iterable[Part]) -> Tuple[List[Moments], List[Part]]:
    """The stored PCA moments of the ``parts`` whose rows are all in use, and the other parts
    (rows no longer in use, or no moments file)."""
    known: List[Moments] = []
    unread: List[Part] = []
    for part in parts:
        data = None
        if part.get("moments") and int(part["images"]) == int(part["rows"]):
            data = storage.read_bytes_if_exists(spark, part["moments"])
        if data is None:
            unread.append(part)
        else:
            known.append(moments_from_bytes(data))
    return known, unread


def union_all(frames: List[Optional[DataFrame]]) -> Optional[DataFrame]:
    """Union by name of the frames that are not ``None`` (``None`` when all are)."""
    present = [frame for frame in frames if frame is not None]
    if not present:
        return None
    union = present[0]
    for frame in present[1:]:
        union = union.unionByName(frame)
    return union


def reusable_parts(
    spark: SparkSession,
    previous: Dict[str, Any],
    listing: DataFrame,
    image_size: int,
    weights: str,
) -> Tuple[Optional[DataFrame], List[Part], List[Part], int]:
    """The features of the run ``previous`` (the last published manifest) that an incremental
    run reuses: those of the images of ``listing`` (:func:`helpers.listing.featurizable`)
    whose path, size and modification time are those ``previous`` featurized, if it used the
    same ``image_size`` and ``weights``.

    Returns ``(seen, kept, folded, images_reused)``: ``seen`` is ``listing`` (cached) with a
    ``part`` column naming the feature folder that holds each reused image's features (null
    for the others); ``kept`` and ``folded`` are the previous run's parts, as
    :func:`plan_parts` splits them; ``images_reused`` is the rows of ``seen`` with a part.
    ``(None, [], [], 0)`` when nothing is reused. No feature is read here.
    """
    outputs = previous.get("outputs", {})
    parts = feature_parts(previous)
    same = (
        previous.get("parameters", {}).get("image_size") == image_size
        and previous.get("weights", {}).get("source") == weights
    )
    if not same or storage.INVENTORY_DIR not in outputs or not parts:
        LOG.info(
            "incremental: the last run used other settings or has no inventory; "
            "featurizing everything"
        )
        return None, [], [], 0
    inventory = storage.read_parquet(spark, outputs[storage.INVENTORY_DIR])
    if PART_COLUMN not in inventory.columns:  # published before runs had parts: one folder
        inventory = inventory.withColumn(PART_COLUMN, F.lit(parts[0]["path"]))
    paths = [part["path"] for part in parts]
    reusable = inventory.where(F.col("featurized") & F.col(PART_COLUMN).isin(paths)).select(
        "path", "length", "modificationTime", PART_COLUMN
    )
    seen = (
        listing.join(reusable, ["path", "length", "modificationTime"], "left")
        .select(
            *listing.columns,
            F.when(featurizable(), F.col(PART_COLUMN)).alias(PART_COLUMN),
        )
        .cache()
    )
    # Rows per part in one pass over the cached rows (a few parts: no grouping, no shuffle).
    counted = seen.agg(*[F.count(F.when(F.col(PART_COLUMN) == path, 1)) for path in paths]).first()
    in_use = {path: int(count) for path, count in zip(paths, counted)}
    images_reused = sum(in_use.values())
    kept, folded = plan_parts(parts, in_use)
    LOG.info(
        "incremental: %d images reused from %d feature folders (%d rewritten)",
        images_reused,
        len(kept) + len(folded),
        len(folded),
    )
    return seen, kept, folded, images_reused


def sent_to_cnn() -> Column:
    """Whether a row of ``seen`` (see :func:`reusable_parts`) goes through the CNN: a
    featurizable image without a part holding its features."""
    return featurizable() & F.col(PART_COLUMN).isNull()


def holds_every_image_sent(new_part: Optional[Part], sent: int, carried: int) -> bool:
    """Whether ``new_part`` holds a row for each of the ``sent`` images besides the ``carried``
    rows (features moved there from folded parts): then, one row per image, every image sent
    is in it, and no paths need comparing."""
    written = int(new_part["rows"]) - carried if new_part is not None else 0
    return written == sent


def write_inventory(
    spark: SparkSession,
    seen: DataFrame,
    kept: List[Part],
    folded: List[Part],
    new_part: Optional[Part],
    sent: int,
    carried: int,
    location: str,
) -> DataFrame:
    """Write a run's ``inventory/`` at ``location``: what it saw (the rows of ``seen``, the
    listing with ``part`` as :func:`reusable_parts` gives it: path, size, modification time),
    whether each image has features, and the feature folder holding them (``part``); returns
    it as written.

    An image's part is its ``kept`` part; else ``new_part`` if it was carried there from a
    ``folded`` part or sent to the CNN (``sent`` images, :func:`sent_to_cnn`) and written.
    When it holds every image sent (:func:`holds_every_image_sent`), the inventory is a
    projection of ``seen``; otherwise the new part's paths say which images it holds.
    """
    previous = F.col(PART_COLUMN)
    part = F.when(previous.isin([p["path"] for p in kept]), previous)
    if new_part is not None:
        if holds_every_image_sent(new_part, sent, carried):
            in_new_part = previous.isin([p["path"] for p in folded]) | sent_to_cnn()
        else:  # some images sent to the CNN failed
            written = storage.read_parquet(spark, new_part["path"]).select(
                "path", F.lit(True).alias("in_new_part")
            )
            seen = seen.join(written, "path", "left")
            in_new_part = F.col("in_new_part").isNotNull()
        part = part.when(in_new_part, F.lit(new_part["path"]))
    inventory = seen.select(
        "path",
        "length",
        "modificationTime",
        part.isNotNull().alias("featurized"),
        part.alias(PART_COLUMN),
    )
    storage.write_parquet(inventory, location)
    return storage.read_parquet(spark, location)


def run_record(run: "Run", versions: Dict[str, str]) -> Dict[str, Any]:
    """The manifest of the finished ``run``: its id, times, parameters, counts, weights, PCA,
    stage seconds, outputs (its feature parts and its own folders), the run it replaces,
    ``versions`` (of the libraries) and the TensorFlow kernels used."""
    record = {
        "run_id": run.run_id,
        "run_path": run.run_path,
        "started_at": run.started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "parameters": run.config.as_dict(),
        **run.counts(),
        "images_reused": run.images_reused,
        "images_through_model": int(run.images_through_model.value),
        "feature_dim": FEATURE_DIM,
        "weights": {"source": run.weight_set.source, "flavour": run.weight_set.flavour},
        "pca_method": run.pca.method if run.pca else None,
        "pca_vectors_read": run.pca_vectors_read if run.pca else None,
        "k": run.pca.k if run.pca else None,
        "explained_variance": run.pca.explained_variance if run.pca else [],
        "explained_variance_kept": run.pca.explained_variance_kept if run.pca else None,
        "seconds": dict(run.seconds),
        "outputs": {
            storage.FEATURES_DIR: [part["path"] for part in run.feature_parts],
            **{
                name: run.location(name)
                for name in (
                    storage.PCA_DIR,
                    storage.PCA_CSV_DIR,
                    storage.INVENTORY_DIR,
                    storage.VARIANCE_PLOT,
                )
                if run.pca is not None or name == storage.INVENTORY_DIR
            },
        },
        "feature_parts": [dict(part) for part in run.feature_parts],
        "previous_run_id": (run.previous_manifest or {}).get("run_id"),
        "versions": versions,
        "tensorflow": run.tensorflow,
    }
    if run.pca_skipped:
        record["pca_skipped"] = f"PCA skipped: {run.pca_skipped}"
    if run.images_failed:
        record["outputs"][storage.FAILED_DIR] = run.location(storage.FAILED_DIR)
    return record


def read_manifest_features(spark: SparkSession, manifest: Dict[str, Any]) -> DataFrame:
    """The features of every image of the run ``manifest`` describes (all its parts)."""
    parts = feature_parts(manifest)
    if not parts:
        raise ValueError(f"run {manifest.get('run_id')} has no features")
    inventory = manifest.get("outputs", {}).get(storage.INVENTORY_DIR)
    in_use = None
    if inventory is not None and any(int(p["images"]) < int(p["rows"]) for p in parts):
        in_use = storage.read_parquet(spark, inventory)
    return read_parts(spark, parts, in_use)


def read_features(spark: SparkSession, output_path: str) -> DataFrame:
    """The features of every image of the run published in ``output_path``: one row per image
    (path, label, split, features), whichever folders hold them.

    Raises:
        FileNotFoundError: no run is published in ``output_path``.
    """
    location = storage.output_location(output_path, storage.MANIFEST)
    manifest = storage.read_json_if_exists(spark, location)
    if manifest is None:
        raise FileNotFoundError(f"no published run in {output_path} ({location} is missing)")
    return read_manifest_features(spark, manifest)


def referenced_runs(manifest: Optional[Dict[str, Any]]) -> Set[str]:
    """Ids of the run folders a published run needs: its own and those holding its parts."""
    if not manifest:
        return set()
    runs = {
        posixpath.basename(posixpath.dirname(part["path"].rstrip("/")))
        for part in feature_parts(manifest)
    }
    if manifest.get("run_id"):
        runs.add(manifest["run_id"])
    return runs
