"""Pipeline: the chain's stages, in the order the notebooks call them.

``read binary files -> featurize (pandas UDF) -> Parquet -> PCA -> Parquet + CSV + plots``.

A :class:`Run` holds one run's state: its config, Spark session, counts and the seconds each
stage took. Each notebook cell calls one of its methods and shows what it returns;
:func:`run_pipeline` calls them all, for scripts and benchmarks. The CNN runs once per image:
features are written to Parquet and everything after reads them back.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pandas as pd
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import (
    class_summary,
    cluster,
    failures,
    listing,
    plots,
    report,
    samples,
    storage,
)
from helpers.config import PipelineConfig
from helpers.features import featurize_udf
from helpers.lock import OutputLock
from helpers.manifest import (
    PART_COLUMN,
    Part,
    read_parts,
    referenced_runs,
    reusable_parts,
    run_record,
    sent_to_cnn,
    stored_moments,
    union_all,
    write_inventory,
)
from helpers.progress import TASKS_PER_CORE, SparkProgress
from helpers.reduction import (
    MIN_PCA_VECTORS,
    PCA_COLUMN,
    PcaFit,
    feature_moments,
    fit_pca,
    moments_bytes,
    project,
)
from helpers.session import (
    balanced_file_scans,
    get_spark,
    restore_sigint,
    sigint_handler,
    stop_jvm,
    task_cpus,
)
from helpers.weights import WeightSet, load_weight_set

LOG = logging.getLogger("helpers.pipeline")


class Run:
    """One run of the chain over ``config.input_path`` into ``config.output_path``."""

    def __init__(self, config: PipelineConfig, spark: Optional[SparkSession] = None) -> None:
        self.config = config
        self.started_at = datetime.now(timezone.utc)
        self.run_id = config.run_id or new_run_id(self.started_at)
        self.seconds: Dict[str, float] = {}
        with self.stage("session"):
            # A session built here is this run's to stop (:meth:`close`); one that was running
            # before (Livy on EMR, a pyspark shell, a test's) is left as it is.
            running = SparkContext._active_spark_context is not None  # noqa: SLF001
            self.owns_session = spark is None and not running
            # Starting a context, pyspark puts its own SIGINT handler in place; close() puts
            # the one before back once it stops that context.
            self.sigint_before_spark = sigint_handler()
            self.spark = spark or get_spark(config)
            self.sigint_of_spark = sigint_handler() if self.owns_session else None
        self.images_through_model = self.spark.sparkContext.accumulator(0)
        # Set by list_images(): the input's qualified root, its file scan (one file index,
        # shared by every stage that reads the images) and the listing (cached).
        self.root: str = ""
        self.files: Optional[DataFrame] = None
        self.listing: Optional[DataFrame] = None
        self.class_table: Optional[pd.DataFrame] = None  # class_counts() of the listing
        # Set by featurize(): the features of every image (all parts) and the parts.
        self.features: Optional[DataFrame] = None
        self.feature_parts: List[Part] = []
        self.inventory: Optional[DataFrame] = None  # as written: which part holds each image
        self.weight_set: Optional[WeightSet] = None
        self.images_total = 0
        self.listed_bytes = (0, 0)  # total and largest file size of the listing
        self.images_featurized = 0
        self.images_failed = 0
        self.images_reused = 0
        self.pca: Optional[PcaFit] = None
        self.pca_vectors_read = 0  # feature vectors the PCA fit read (others: stored moments)
        self.pca_skipped: Optional[str] = None  # why no PCA was fitted (too few images)
        self.manifest: Dict[str, Any] = {}
        self.tensorflow: Dict[str, Any] = {}  # kernels on the driver and executors (featurize)
        # Figures drawn once and shown again by the report: (per_class, max_classes) -> (drawn
        # from the featurized images?, figure); max_points -> scatter figure.
        self.sample_figures: Dict[Tuple[int, int], Tuple[bool, Any]] = {}
        self.scatter_figures: Dict[int, Any] = {}
        self.run_path = storage.output_location(
            config.output_path, f"{storage.RUNS_DIR}/{self.run_id}"
        )
        # One run at a time per output_path: a second one stops here, naming the holder
        # (helpers.lock). Held until close() or the interpreter's exit.
        self.lock: Optional[OutputLock] = OutputLock(self.spark, config.output_path, self.run_id)
        # The executors' Python workers (TensorFlow imported) start in the background once the
        # lock is held, while the driver lists and samples (helpers.cluster.WorkerStart).
        self.worker_start: Optional[cluster.WorkerStart] = None
        try:
            with storage.clear_errors(config.output_path, config.effective_s3_endpoint):
                self.lock.acquire()
                self.previous_manifest = storage.read_json_if_exists(
                    self.spark, storage.output_location(config.output_path, storage.MANIFEST)
                )
        except BaseException:
            self.lock.release()
            raise
        self.worker_start = cluster.WorkerStart(self.spark)

    # -- bookkeeping -------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage into ``self.seconds`` and log one line when it ends."""
        start = time.perf_counter()
        LOG.info("stage %s: started", name)
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        LOG.info("stage %s: done in %.1f s", name, self.seconds[name])

    def progress(self, label: str, total: Optional[int] = None, count: Any = None) -> SparkProgress:
        """A progress display for the Spark jobs of a block (off when ``config.progress`` is)."""
        return SparkProgress(
            self.spark, label, total=total, count=count, enabled=self.config.progress
        )

    def location(self, name: str) -> str:
        """Where this run writes output ``name``: inside ``output_path/runs/<run_id>/``."""
        return storage.output_location(self.run_path, name)

    def check_cluster(self) -> pd.DataFrame:
        """One row per executor host (python, helpers and TensorFlow versions, oneDNN, ISA);
        raises ``RuntimeError`` naming the node and the import when a node cannot run the
        chain. See :func:`helpers.cluster.check_cluster`."""
        return cluster.check_cluster(self.spark)

    # -- stage 1: list the images ------------------------------------------------------
    def list_images(self) -> DataFrame:
        """All images under ``input_path`` (path, label, split, length), content not read.

        Raises:
            FileNotFoundError: ``input_path`` does not exist.
            ValueError: ``input_path`` holds no .jpg/.jpeg/.png image.
        """
        with self.stage("list"):
            path = self.config.input_path
            with storage.clear_errors(path, self.config.effective_s3_endpoint):
                if not storage.exists(self.spark, path):
                    raise FileNotFoundError(f"input_path does not exist: {path}")
                self.root = storage.qualified(self.spark, path).rstrip("/")
                # One listing of the tree: its scan's file index serves every later read of all
                # the images (featurize reads the contents through it).
                found = listing.list_images(self.spark, self.root, self.config.sample_limit)
            self.files, self.listing = found.files, found.listing
            self.class_table = None
            self.images_total, self.listed_bytes = found.images_total, found.listed_bytes
            if self.images_total == 0:
                raise ValueError(f"no .jpg/.jpeg/.png images found under input_path: {path}")
            LOG.info("listed %d images under %s", self.images_total, path)
        return self.listing

    def class_counts(self) -> pd.DataFrame:
        """Images per split and class (a small table), counted once per listing."""
        if self.class_table is None:
            counts = (
                self.listing.groupBy("split", "label")
                .agg(F.count(F.lit(1)).alias("images"))
                .orderBy("split", "label")
                .toPandas()
            )
            counts["split"] = counts["split"].fillna("(none)")
            self.class_table = counts
        return self.class_table.copy()

    def class_summary(self) -> "class_summary.ClassSummary":
        """Images per class: the whole table for a few classes, a summary for many (classes,
        images per class min / median / max, smallest and largest classes, the whole table
        folded); see :class:`helpers.class_summary.ClassSummary`. :meth:`class_counts` is the table."""
        return class_summary.class_summary(self.class_counts())

    def sample_images(self, per_class: int = 6, max_classes: int = 12) -> Any:
        """A figure: a grid of up to ``per_class`` images of each class (decoded on the driver).

        After :meth:`featurize`, images are drawn from the featurized ones; before it, from the
        listing, a few spare per class, and files that do not decode are left out of the grid.
        With more than ``max_classes`` classes (Fruits-360 has 130+), a seeded random choice of
        ``max_classes`` of them is shown and the title says how many there are in all.

        The choice depends only on the candidate images and the seed, so a grid drawn before
        :meth:`featurize` is drawn again only if some image failed (the candidates differ).
        """
        after_featurize = self.features is not None
        drawn = self.sample_figures.get((per_class, max_classes))
        if drawn is not None and (drawn[0] == after_featurize or self.images_failed == 0):
            return drawn[1]
        candidates = (
            self.features.select("path", "label")
            if after_featurize
            else self.listing.where(listing.featurizable())
        )
        figure = samples.sample_grid(
            self.spark, candidates, self.config.seed, per_class, max_classes
        )
        self.sample_figures[(per_class, max_classes)] = (after_featurize, figure)
        return figure

    # -- stage 2: features -------------------------------------------------------------
    def featurize(self) -> Dict[str, int]:
        """Run MobileNetV2 once per image; write ``features/``, ``failed/`` and ``inventory/``.

        The CNN's output goes straight into ``features/`` (one pass, nothing cached or staged).
        Images sent to it that are missing from it afterwards are the failures: they are decoded
        again, without the CNN, to record why. In incremental mode, images the last published run
        already featurized (same path, size and modification time) keep their features where
        they are: the run's features are then several folders (``feature_parts``, see
        :mod:`helpers.manifest`), and :attr:`features` reads them all.
        """
        config = self.config
        with self.stage("weights"):
            self.weight_set = load_weight_set(
                config.weights, s3_endpoint=config.effective_s3_endpoint
            )
        with self.stage("featurize"):
            seen, kept, folded = None, [], []
            if config.incremental and self.previous_manifest is not None:
                seen, kept, folded, self.images_reused = reusable_parts(
                    self.spark,
                    self.previous_manifest,
                    self.listing,
                    config.image_size,
                    config.weights,
                )
            if seen is None:  # nothing reused: no image has a part yet
                seen = self.listing.withColumn(PART_COLUMN, F.lit(None).cast("string"))
                unchanged = None
            else:
                unchanged = seen.where(F.col(PART_COLUMN).isNotNull())
            to_featurize = seen.where(sent_to_cnn())
            if config.sample_limit is not None or unchanged is not None:
                rows = to_featurize.select("path", "length").collect()
                contents = (
                    listing.read_binary(self.spark, *[row.path for row in rows]) if rows else None
                )
                lengths = [row.length for row in rows]
                scanned = (len(rows), sum(lengths), max(lengths, default=0))
            else:  # every image: the listing's own file index, not a second listing
                contents = self.files
                scanned = (self.images_total,) + self.listed_bytes
            new_features = self._featurize_contents(contents) if contents is not None else None
            # Folded parts: their rows in use move into this run's part (see helpers.manifest).
            written = union_all([new_features, read_parts(self.spark, folded, unchanged)])
            new_part: Optional[Part] = None
            if written is not None:
                waves = TASKS_PER_CORE if config.progress else 1
                # Every core busy to the end; with progress, a few tasks per core so it moves.
                with (
                    balanced_file_scans(self.spark, *scanned, min_waves=waves),
                    self.progress("featurize", scanned[0], self.images_through_model),
                ):
                    storage.write_parquet(written, self.location(storage.FEATURES_DIR))
                rows_written = storage.read_parquet(
                    self.spark, self.location(storage.FEATURES_DIR)
                ).count()  # Parquet footers
                if rows_written:
                    new_part = {
                        "path": self.location(storage.FEATURES_DIR),
                        "rows": rows_written,
                        "images": rows_written,
                    }
            self.feature_parts = kept + ([new_part] if new_part else [])
            self.images_featurized = sum(part["images"] for part in self.feature_parts)
            sent = scanned[0] if contents is not self.files else to_featurize.count()
            carried = sum(int(part["images"]) for part in folded)
            self.images_failed = failures.write_failures(
                self.spark,
                self.listing,
                to_featurize,
                new_part,
                self.root,
                config.image_size,
                self.location(storage.FAILED_DIR),
                sent=sent,
                carried=carried,
            )
            if self.images_featurized == 0:
                raise ValueError(
                    f"no image under {config.input_path} could be featurized: see "
                    f"{self.location(storage.FAILED_DIR)}"
                )
            self.inventory = write_inventory(
                self.spark,
                seen,
                kept,
                folded,
                new_part,
                sent,
                carried,
                self.location(storage.INVENTORY_DIR),
            )
            self.features = read_parts(self.spark, self.feature_parts, self.inventory)
            seen.unpersist()
            self._check_counts()
            # Which kernels TensorFlow used, driver and executors (the workers that just ran).
            self.tensorflow = cluster.tensorflow_record(self.spark)
        LOG.info(
            "featurized %d images (%d reused from the last run, %d failed) of %d",
            self.images_featurized,
            self.images_reused,
            self.images_failed,
            self.images_total,
        )
        return self.counts()

    def _featurize_contents(self, contents: DataFrame) -> DataFrame:
        """The CNN over ``contents`` (path, content): path, label, split, features of the images
        that decoded (the others are left out; :func:`helpers.failures.write_failures` finds
        them)."""
        config = self.config
        udf = featurize_udf(
            self.spark,
            self.weight_set,
            config.image_size,
            config.batch_size,
            threads_per_task=task_cpus(self.spark),
            images_through_model=self.images_through_model,
        )
        return (
            listing.labelled(contents.select("path", "content"), self.root)
            .where(F.col("label").isNotNull())
            .select("path", "label", "split", udf(F.col("content")).alias("result"))
            .where(F.col("result.error").isNull())
            .select("path", "label", "split", "result.features")
        )

    def _check_counts(self) -> None:
        accounted = self.images_featurized + self.images_failed
        if accounted != self.images_total:
            raise RuntimeError(
                f"images lost: {self.images_total} listed but {self.images_featurized} "
                f"featurized + {self.images_failed} failed = {accounted}"
            )

    def counts(self) -> Dict[str, int]:
        """Image counts of the run so far."""
        return {
            "images_total": self.images_total,
            "images_featurized": self.images_featurized,
            "images_failed": self.images_failed,
        }

    def failed_images(self) -> pd.DataFrame:
        """The failed images and why (empty when none failed)."""
        return failures.read_failures(self.spark, self.location(storage.FAILED_DIR))

    # -- stage 3: PCA ------------------------------------------------------------------
    def reduce(self) -> Any:
        """Fit PCA on the written features; choose k; write ``pca/``, ``pca_csv/`` and the plot.

        Returns the :class:`~helpers.reduction.PcaFit`, or, when fewer than 2 images were
        featurized (PCA needs 2 vectors), the sentence saying PCA was skipped: the run then
        publishes its features without PCA outputs (``k`` is ``None`` in the manifest).
        """
        if self.images_featurized < MIN_PCA_VECTORS:
            self.pca_skipped = (
                f"needs at least {MIN_PCA_VECTORS} images, {self.images_featurized} featurized"
            )
            LOG.info("PCA skipped: %s", self.pca_skipped)
            return f"PCA skipped: {self.pca_skipped}"
        with self.stage("pca_fit"), self.progress("pca_fit"):
            self.pca = self._fit_pca()
        LOG.info(
            "PCA (%s): k = %d keeps %.1f%% of the variance",
            self.pca.method,
            self.pca.k,
            100 * self.pca.explained_variance_kept,
        )
        with self.stage("pca_write"), self.progress("pca_write"):
            scores = project(self.spark, self.features, self.pca)
            storage.write_parquet(scores, self.location(storage.PCA_DIR))
            written = storage.read_parquet(self.spark, self.location(storage.PCA_DIR))
            columns = [F.col(PCA_COLUMN)[i].alias(f"pc_{i + 1}") for i in range(self.pca.k)]
            # Read back as whole waves of the task slots: the CSV formats every score again.
            sizes = listing.indexed_statuses(written)["length"]
            with balanced_file_scans(self.spark, len(sizes), int(sizes.sum()), int(sizes.max())):
                storage.write_csv(
                    written.select("path", "label", "split", *columns),
                    self.location(storage.PCA_CSV_DIR),
                )
            storage.write_bytes(
                self.spark,
                self.location(storage.VARIANCE_PLOT),
                plots.figure_png(self.variance_figure()),
            )
        return self.pca

    def _fit_pca(self) -> PcaFit:
        """PCA of every featurized image. With the Gram method, a feature part's vectors are
        read only when no stored moments describe them: this run's own part is read once and
        its moments stored beside it (``feature_moments.npz``, named by the part), and an
        earlier run's part is read only when some of its rows are no longer in use or it names
        no moments file."""
        config = self.config
        if config.pca_method != "gram":
            self.pca_vectors_read = self.images_featurized
            return fit_pca(self.features, config.variance_target, config.k, config.pca_method)
        known, unread = stored_moments(self.spark, self.feature_parts)
        own_path = self.location(storage.FEATURES_DIR)
        others = [part for part in unread if part["path"] != own_path]
        for part in unread:
            if part["path"] == own_path:
                moments = feature_moments(storage.read_parquet(self.spark, own_path))
                if moments is not None:
                    location = self.location(storage.FEATURE_MOMENTS)
                    storage.write_bytes(self.spark, location, moments_bytes(moments))
                    part["moments"] = location
                    known.append(moments)
        self.pca_vectors_read = sum(int(part["images"]) for part in unread)
        return fit_pca(
            read_parts(self.spark, others, self.inventory),
            config.variance_target,
            config.k,
            known=known,
        )

    def variance_figure(self) -> Any:
        """Scree + cumulative explained variance, with the target line and the chosen k (a
        figure saying why when PCA was skipped)."""
        if self.pca is None:
            return plots.message_figure("No PCA", f"PCA skipped: {self.pca_skipped or 'not run'}.")
        target = None if self.config.k is not None else self.config.variance_target
        return plots.variance_figure(self.pca.explained_variance, self.pca.k, target)

    def scatter_figure(self, max_points: int = 5000) -> Any:
        """PC1/PC2 scatter coloured by class (at most ``max_points`` points, sampled); with
        k = 1 the points lie on PC 1 (PC 2 drawn as 0); a figure saying why when PCA was
        skipped."""
        if self.pca is None:
            return plots.message_figure(
                "No PCA scatter", f"PCA skipped: {self.pca_skipped or 'not run'}."
            )
        if max_points in self.scatter_figures:  # drawn from this run's PCA output already
            return self.scatter_figures[max_points]
        scores = storage.read_parquet(self.spark, self.location(storage.PCA_DIR))
        total = self.images_featurized
        if total > max_points:
            scores = scores.sample(fraction=max_points / total, seed=self.config.seed)
        points = scores.select(
            "label",
            "split",
            F.col(PCA_COLUMN)[0].alias("pc_1"),
            (F.col(PCA_COLUMN)[1] if self.pca.k > 1 else F.lit(0.0)).alias("pc_2"),
        ).toPandas()
        self.scatter_figures[max_points] = plots.scatter_figure(points)
        return self.scatter_figures[max_points]

    # -- stage 4: publish -----------------------------------------------------------------
    def write_manifest(self) -> Dict[str, Any]:
        """Publish the run: write ``manifest.json`` last, then drop runs nobody points to.

        Every output of this run lies in ``output_path/runs/<run_id>/``. The top-level
        ``output_path/manifest.json`` names them; it is replaced in one step, only now, so a
        reader going through it sees the previous run whole or this run whole, never a mix,
        and a run killed before this point leaves the previous one published.
        """
        self.manifest = run_record(self, library_versions(self.spark))
        storage.write_json(self.spark, self.location(storage.MANIFEST), self.manifest)
        storage.write_json_atomic(
            self.spark,
            storage.output_location(self.config.output_path, storage.MANIFEST),
            self.manifest,
        )
        LOG.info("published run %s: %s", self.run_id, self.run_path)
        self._drop_unpublished_runs()
        return self.manifest

    def _drop_unpublished_runs(self) -> None:
        """Delete run folders other than this run and the one it replaced (kept for readers
        still on it, and for the next incremental run's fallback); killed runs go too. Run
        folders holding feature parts that either of the two names are kept whole."""
        storage.delete_all_but(
            self.spark,
            storage.output_location(self.config.output_path, storage.RUNS_DIR),
            keep=referenced_runs(self.manifest) | referenced_runs(self.previous_manifest),
        )

    def summary(self) -> str:
        """The closing lines: images, failures, k, explained variance, where outputs are."""
        return report.summary_text(self.manifest)

    def close(self) -> None:
        """Release the output_path's lock; stop the Spark session if this run built it, and its
        JVM; a session it found running (Livy on EMR, a pyspark shell, a test's) is kept.

        Stopping here ends the JVM and the Python workers while the notebook still runs, as the
        end of a ``spark-submit`` script would. Left to the kernel's shutdown, they are
        terminated with it, and the JVM's removal of its temporary folders can be cut short (a
        stack trace at the end of ``make run``, folders left in /tmp). A later run in the same
        Python process starts a new JVM. The SIGINT handler in place before the context started
        is put back (pyspark's would answer Ctrl-C with an error from the stopped context).
        """
        if self.lock is not None:
            self.lock.release()
        if not self.owns_session:
            return
        if self.worker_start is not None:
            self.worker_start.cancel()
        self.spark.stop()
        self.owns_session = False
        restore_sigint(self.sigint_before_spark, self.sigint_of_spark)
        stop_jvm()  # a JVM pyspark did not start (a gateway given from outside) is left alone


def new_run_id(moment: Optional[datetime] = None) -> str:
    """A run id from a UTC time: ``YYYYMMDDTHHMMSSZ-`` and 6 random hex digits."""
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def library_versions(spark: Optional[SparkSession] = None) -> Dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    import importlib.metadata as metadata
    import platform

    versions = {"python": platform.python_version()}
    for name in (
        "pyspark",
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "numpy",
        "pandas",
        "pyarrow",
        "pillow",
        "fruits-helpers",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if spark is not None:
        versions["spark"] = spark.version
    return versions


def run_pipeline(config: PipelineConfig, spark: Optional[SparkSession] = None) -> Run:
    """Run every stage (list, featurize, PCA, manifest) and return the finished :class:`Run`."""
    run = Run(config, spark)
    run.list_images()
    run.featurize()
    run.reduce()
    run.write_manifest()
    return run
