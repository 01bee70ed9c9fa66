"""Run configuration: the one place where the chain's parameters and their defaults live.

The notebooks' ``parameters`` cells mirror these fields; papermill overrides them, and
``PipelineConfig.from_parameters`` turns the notebook's variables into a checked config.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

#: Weight sources understood by :mod:`helpers.weights`.
DEFAULT_WEIGHTS = "torchvision"
#: Images per model call in a CPU worker. Each worker runs TensorFlow on one thread, and its
#: resident memory grows with the largest batch it ran (the activations TensorFlow keeps): small
#: batches cost nothing in speed there and bound each worker's memory (docs/benchmarks.md,
#: "Model batch size"). GPU executors want far larger ones (the ``batch_size`` parameter).
DEFAULT_BATCH_SIZE = 16

#: Environment variable that names an S3-compatible endpoint when ``s3_endpoint`` is empty.
S3_ENDPOINT_ENV = "FRUITS_S3_ENDPOINT"

#: Environment variable that sets ``spark.driver.memory`` in local mode, read when the session
#: starts: the heap bound of local mode's one JVM (driver and executor).
DRIVER_MEMORY_ENV = "FRUITS_DRIVER_MEMORY"
#: Local mode's JVM heap bound when :data:`DRIVER_MEMORY_ENV` is unset: the most the JVM's heap
#: may grow to (with :data:`LOCAL_JVM_OPTIONS`' collector, only as far as the live data needs).
LOCAL_DRIVER_MEMORY = "2g"
#: Local mode's JVM options: the serial collector, which grows the heap only as far as the live
#: data needs (G1 grows it towards its bound in long runs, whatever the input), keeping 10 to 30 %
#: of it free after a collection (HotSpot's defaults: 40 to 70 %); and C2, the JIT's optimising
#: compiler, only for code that runs four to ten times as often as HotSpot's defaults ask: the
#: loops that move every feature vector (Parquet, Arrow, CSV) get it within seconds, while a run's
#: one-off work (session, listing, bookkeeping jobs) stays with C1 and C2's compiler thread takes
#: no CPU from TensorFlow for it.
LOCAL_JVM_OPTIONS = (
    "-XX:+UseSerialGC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
    " -XX:Tier4InvocationThreshold=50000 -XX:Tier4CompileThreshold=60000"
    " -XX:Tier4BackEdgeThreshold=400000"
)

#: Image file extensions read by the chain (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Default bound on the Training images per class the features' check fits its classifier on.
CLASSIFIER_PER_CLASS = 100

#: What a ``run_id`` may hold: it names a folder (``runs/<run_id>/``, ``history/<run_id>/``).
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass
class PipelineConfig:
    """Parameters of one run of the processing chain.

    Attributes:
        input_path: folder (local path or ``s3://bucket/prefix``) holding ``<Split>/<Class>/*.jpg``.
        output_path: folder that receives features, PCA, CSV, plots and ``manifest.json``.
        variance_target: PCA keeps the smallest k whose cumulative explained variance reaches it.
        k: fixed number of PCA components; overrides ``variance_target`` when given.
        image_size: side in pixels the images are resized to before MobileNetV2.
        weights: ``"torchvision"`` (offline ImageNet weights, default), ``"imagenet"`` (Keras'
            own download; needs internet), or a path to a ``.weights.h5`` file (local or ``s3://``).
        sample_limit: featurize at most this many images (first by path), for quick runs.
        spark_master: Spark master URL for a new session; ``""`` uses the running session (Livy,
            ``pyspark`` shell) or Spark's default (YARN on EMR).
        s3_endpoint: S3-compatible endpoint (e.g. ``http://127.0.0.1:8333``); ``""`` means AWS S3
            through the cluster's own file system and credentials.
        batch_size: images per model call inside the Spark UDF (:data:`DEFAULT_BATCH_SIZE`;
            raise it, e.g. to 256, on GPU executors).
        pca_method: ``"gram"`` (distributed Gram matrix, default: fast at any size) or
            ``"spark-ml"`` (pyspark.ml PCA; its JVM BLAS makes it much slower).
        incremental: reuse the last published run's features for images whose path, size and
            modification time are unchanged; only new or changed images go through the CNN.
        seed: seed for anything random (sample grid choice).
        run_id: the run's id (letters, digits, ``.``, ``_``, ``-``); ``None``: made from the
            start time (``YYYYMMDDTHHMMSSZ-xxxxxx``). A scheduler passes its own to find the run.
        cost_per_hour: USD per hour of the machines running the chain; when set, the run
            history estimates each run's cost as ``minutes / 60 * cost_per_hour``.
        classifier_per_class: the classifier that checks the features (:mod:`helpers.classify`)
            is fitted on at most this many Training images per class (a seeded sample), so
            that its cost stays small at any size; ``None``: on all of them.
        progress: show the progress of long stages (featurization, PCA, writes) as a bar in
            Jupyter and plain lines in logs; file scans are then cut into at least
            :data:`helpers.progress.TASKS_PER_CORE` tasks per core so that it moves.
    """

    input_path: str
    output_path: str
    variance_target: float = 0.95
    k: Optional[int] = None
    image_size: int = 224
    weights: str = DEFAULT_WEIGHTS
    sample_limit: Optional[int] = None
    spark_master: str = "local[*]"
    s3_endpoint: str = ""
    batch_size: int = DEFAULT_BATCH_SIZE
    pca_method: str = "gram"
    incremental: bool = False
    seed: int = 42
    run_id: Optional[str] = None
    cost_per_hour: Optional[float] = None
    classifier_per_class: Optional[int] = CLASSIFIER_PER_CLASS
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.input_path:
            raise ValueError("input_path is empty: give the folder that holds the images")
        if not self.output_path:
            raise ValueError("output_path is empty: give the folder for the results")
        if not 0.0 < float(self.variance_target) <= 1.0:
            raise ValueError(f"variance_target must be in (0, 1], got {self.variance_target!r}")
        if self.k is not None and int(self.k) < 1:
            raise ValueError(f"k must be a positive number of components or None, got {self.k!r}")
        if int(self.image_size) < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size!r}")
        if self.sample_limit is not None and int(self.sample_limit) < 1:
            raise ValueError(f"sample_limit must be positive or None, got {self.sample_limit!r}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size!r}")
        if self.pca_method not in ("spark-ml", "gram"):
            raise ValueError(f"pca_method must be 'spark-ml' or 'gram', got {self.pca_method!r}")
        if self.run_id is not None and (
            not isinstance(self.run_id, str)
            or not RUN_ID_PATTERN.fullmatch(self.run_id)
            or self.run_id in (".", "..")
        ):
            raise ValueError(
                f"run_id may only hold letters, digits, '.', '_' and '-', got {self.run_id!r}"
            )
        if self.cost_per_hour is not None and not float(self.cost_per_hour) >= 0.0:
            raise ValueError(
                f"cost_per_hour must be a number of USD >= 0 or None, got {self.cost_per_hour!r}"
            )
        self.cost_per_hour = None if self.cost_per_hour is None else float(self.cost_per_hour)
        if self.classifier_per_class is not None and int(self.classifier_per_class) < 1:
            raise ValueError(
                f"classifier_per_class must be a positive number of images or "
                f"None, got {self.classifier_per_class!r}"
            )
        self.classifier_per_class = (
            None if self.classifier_per_class is None else int(self.classifier_per_class)
        )
        self.variance_target = float(self.variance_target)
        self.image_size = int(self.image_size)
        self.batch_size = int(self.batch_size)
        self.k = None if self.k is None else int(self.k)
        self.sample_limit = None if self.sample_limit is None else int(self.sample_limit)

    @property
    def effective_s3_endpoint(self) -> str:
        """The S3 endpoint to configure: the parameter, else ``$FRUITS_S3_ENDPOINT``, else ``""``
        (:func:`helpers.storage.resolve_s3_endpoint`)."""
        from helpers.storage import resolve_s3_endpoint  # storage reads S3_ENDPOINT_ENV here

        return resolve_s3_endpoint(self.s3_endpoint)

    @classmethod
    def from_parameters(cls, parameters: Dict[str, Any]) -> "PipelineConfig":
        """Build a config from a notebook's parameter variables, ignoring unrelated names."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in parameters.items() if key in names}
        return cls(**known)

    def as_dict(self) -> Dict[str, Any]:
        """Plain-dict view, for the manifest and the report."""
        return dataclasses.asdict(self)
