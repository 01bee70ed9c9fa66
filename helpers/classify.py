"""Classify: proof that the features are useful, by a simple classifier on the PCA scores.

Owns the check that closes a run: a multinomial logistic regression (L2-regularised softmax on
standardised scores, fitted with numpy on the driver) trained on a bounded sample of the
``Training`` split of ``<output_path>/pca`` and scored on the whole ``Test`` split: its
accuracy, the chance level it must beat (one over the number of classes) and the confusion
matrix (counts, true class x predicted class).

Its cost is bounded whatever the data set's size: at most ``per_class`` Training images of each
class (``PipelineConfig.classifier_per_class``; ``None``: all) come to the driver, the same ones
for the same data and seed (the smallest hashes of their paths), and the fit stops after
:data:`MAX_ITER` iterations or when the gradient falls below :data:`TOLERANCE`. Scoring runs in
Spark (a pandas UDF with the fitted weights); only the small confusion table comes back.

:func:`evaluate` works on any PCA Parquet; :func:`evaluate_run` evaluates a finished
:class:`~helpers.pipeline.Run`, times itself as the run's ``classify`` stage and writes
``classification.json``, ``confusion.csv`` and ``confusion_matrix.png`` next to the outputs. A run without both
splits (``sample_limit`` runs, data sets without a Test folder) gets a result that says why it
was skipped instead of an error, so the notebook and its report still finish.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import plots, storage
from helpers.config import CLASSIFIER_PER_CLASS
from helpers.images import TEST_SPLIT, TRAIN_SPLIT
from helpers.reduction import PCA_COLUMN

if TYPE_CHECKING:  # annotations only: helpers.pipeline imports this module (via report)
    from helpers.pipeline import Run

#: A child of the pipeline's logger: its lines go where the stage lines go.
LOG = logging.getLogger("helpers.pipeline.classify")

#: Small files written next to the outputs by :func:`evaluate_run`.
CLASSIFICATION_JSON = "classification.json"
CONFUSION_CSV = "confusion.csv"
CONFUSION_PLOT = "confusion_matrix.png"

#: Rows of the "most confused pairs" and "worst classes" tables shown for many classes.
TOP_ROWS = 15

#: L2 regularisation of the logistic regression (on standardised scores, as pyspark.ml's
#: ``regParam``): with k PCA scores per image and only a few dozen images per class the classes
#: are often separable; a little L2 keeps the fit finite.
REG_PARAM = 0.01
#: The fit's bounds: at most this many gradient steps, fewer once the largest gradient entry
#: falls below :data:`TOLERANCE`.
MAX_ITER = 100
TOLERANCE = 1e-3


@dataclass
class Classification:
    """Test-split result of a classifier trained on the Training split.

    Attributes:
        labels: class names, in the order of the confusion matrix's rows and columns.
        confusion: ``confusion[i][j]`` = Test images of class ``labels[i]`` predicted as
            ``labels[j]`` (counts).
        train_images: Training images the classifier was fitted on.
        train_available: Training images there were (``train_images`` is a sample of them
            when ``per_class`` bounds it).
        per_class: the bound on Training images per class (``None``: all were used).
        iterations: gradient steps the fit took.
        test_images: Test images it was scored on (all of them).
        features: what it was trained on (e.g. ``"pca (53 components)"``).
        skipped: why no classifier was trained (``None`` when it was).
        untrained: Test classes without Training images (each of their Test images counts
            as a mistake: the classifier cannot predict a class it never saw).
    """

    labels: List[str] = field(default_factory=list)
    confusion: List[List[int]] = field(default_factory=list)
    train_images: int = 0
    train_available: int = 0
    per_class: Optional[int] = None
    iterations: int = 0
    test_images: int = 0
    features: str = PCA_COLUMN
    skipped: Optional[str] = None
    untrained: List[str] = field(default_factory=list)

    @property
    def accuracy(self) -> Optional[float]:
        """Share of Test images predicted right (``None`` when skipped)."""
        total = int(np.sum(self.confusion)) if self.confusion else 0
        if self.skipped or total == 0:
            return None
        return float(np.trace(np.asarray(self.confusion))) / total

    @property
    def chance(self) -> Optional[float]:
        """Accuracy of guessing one class out of all of them uniformly: 1 / classes."""
        return 1.0 / len(self.labels) if self.labels else None

    def confusion_table(self) -> pd.DataFrame:
        """The confusion matrix as a table: rows true class, columns predicted class."""
        return pd.DataFrame(
            self.confusion,
            index=pd.Index(self.labels, name="true class"),
            columns=pd.Index(self.labels, name="predicted class"),
        )

    def confused_pairs(self, top: int = TOP_ROWS) -> pd.DataFrame:
        """The ``top`` most frequent mistakes: ``true class``, ``predicted class``, ``images``
        (Test images of the true class predicted as the other) and ``share of true class``
        (of its Test images); most images first, then by name. No rows without mistakes."""
        matrix = (
            np.asarray(self.confusion, dtype=int).reshape(len(self.labels), -1)
            if self.confusion
            else np.zeros((0, 0), dtype=int)
        )
        per_class = matrix.sum(axis=1)
        rows = [
            (self.labels[i], self.labels[j], int(matrix[i, j]), float(matrix[i, j]) / per_class[i])
            for i, j in zip(*np.nonzero(matrix))
            if i != j
        ]
        frame = pd.DataFrame(
            rows, columns=["true class", "predicted class", "images", "share of true class"]
        )
        frame = frame.sort_values(
            ["images", "true class", "predicted class"],
            ascending=[False, True, True],
            kind="stable",
        )
        return frame.head(top).reset_index(drop=True)

    def class_accuracy(self) -> pd.DataFrame:
        """Test accuracy per class: ``class``, ``Test images``, ``right``, ``accuracy``; worst
        first (then by name). Classes without Test images are left out."""
        matrix = (
            np.asarray(self.confusion, dtype=int).reshape(len(self.labels), -1)
            if self.confusion
            else np.zeros((0, 0), dtype=int)
        )
        rows = [
            (label, int(matrix[i].sum()), int(matrix[i, i]), float(matrix[i, i]) / matrix[i].sum())
            for i, label in enumerate(self.labels[: len(matrix)])
            if matrix[i].sum()
        ]
        frame = pd.DataFrame(rows, columns=["class", "Test images", "right", "accuracy"])
        return frame.sort_values(["accuracy", "class"], kind="stable").reset_index(drop=True)

    def worst_classes(self, top: int = TOP_ROWS) -> pd.DataFrame:
        """The ``top`` classes with the lowest Test accuracy, below 100% (see
        :meth:`class_accuracy`)."""
        accuracy = self.class_accuracy()
        return accuracy[accuracy["accuracy"] < 1.0].head(top).reset_index(drop=True)

    def confusion_figure(self) -> Any:
        """What the classifier mistakes, as a figure a reader can use.

        Up to :data:`~helpers.plots.MANY_CLASSES` classes: the confusion matrix (counts, class
        names on both axes). With more, whose matrix labels cannot be read: bars of the
        :meth:`confused_pairs` and :meth:`worst_classes`; the whole matrix stays in
        :meth:`confusion_table`, ``classification.json`` and ``confusion.csv``.
        When the classifier was skipped: a small figure saying why.
        """
        if self.skipped or not self.confusion:
            return plots.message_figure(
                "No confusion matrix", f"Classifier skipped: {self.skipped or 'no Test images'}."
            )
        if len(self.labels) > plots.MANY_CLASSES:
            return plots.confused_pairs_figure(
                self.confused_pairs(), self.worst_classes(), self.accuracy
            )
        return plots.confusion_matrix_figure(self.confusion, self.labels, self.accuracy)

    def untrained_text(self) -> str:
        """One sentence on Test classes without Training images (``""`` when there are none)."""
        if not self.untrained:
            return ""
        return (
            f"Test classes without Training images: {', '.join(self.untrained)} (counted as errors)"
        )

    def training_text(self) -> str:
        """What it was trained on, e.g. ``1,550 of 4,000 Training images (at most 10 per
        class)``."""
        if self.per_class is None or self.train_images >= self.train_available:
            return f"{self.train_images:,} Training images"
        return (
            f"{self.train_images:,} of {self.train_available:,} Training images "
            f"(at most {self.per_class:,} per class)"
        )

    def text(self) -> str:
        """One line: accuracy against chance, or why there is none."""
        if self.skipped:
            return f"classifier skipped: {self.skipped}"
        untrained = f"; {self.untrained_text()}" if self.untrained else ""
        return (
            f"logistic regression on {self.features}: Test accuracy {100 * self.accuracy:.1f}% "
            f"({int(np.trace(np.asarray(self.confusion)))} of {self.test_images} Test images), "
            f"chance {100 * self.chance:.1f}% ({len(self.labels)} classes); "
            f"trained on {self.training_text()}{untrained}"
        )

    def as_dict(self) -> Dict[str, Any]:
        """Plain-dict view (with accuracy and chance), for ``classification.json``."""
        return {**asdict(self), "accuracy": self.accuracy, "chance": self.chance}

    def __repr__(self) -> str:
        return self.text()


def evaluate(
    spark: SparkSession,
    pca_location: str,
    per_class: Optional[int] = CLASSIFIER_PER_CLASS,
    seed: int = 0,
    reg_param: float = REG_PARAM,
    max_iter: int = MAX_ITER,
) -> Classification:
    """Train on (at most ``per_class`` images of each class of) the Training split of the PCA
    Parquet at ``pca_location``, score on all of its Test split.

    Classes are indexed alphabetically over both splits; a Test class absent from Training
    can only be mispredicted, and counts as such.
    """
    scores = storage.read_parquet(spark, pca_location).where(F.col("label").isNotNull())
    return evaluate_frame(
        scores, per_class=per_class, seed=seed, reg_param=reg_param, max_iter=max_iter
    )


def evaluate_frame(
    scores: DataFrame,
    per_class: Optional[int] = CLASSIFIER_PER_CLASS,
    seed: int = 0,
    reg_param: float = REG_PARAM,
    max_iter: int = MAX_ITER,
) -> Classification:
    """:func:`evaluate` on a DataFrame with ``label``, ``split`` and the ``pca`` array column
    (and ``path``, whose hash picks the Training sample; without it, the scores' hash)."""
    if per_class is not None and int(per_class) < 1:
        raise ValueError(
            f"per_class must be a positive number of images or None, got {per_class!r}"
        )
    counts = scores.groupBy("split", "label").count().collect()
    labels = sorted({row["label"] for row in counts})
    per_split = {TRAIN_SPLIT: 0, TEST_SPLIT: 0}
    labels_of = {TRAIN_SPLIT: set(), TEST_SPLIT: set()}
    train_counts: Dict[str, int] = {}
    for row in counts:
        if row["split"] in per_split:
            per_split[row["split"]] += row["count"]
            labels_of[row["split"]].add(row["label"])
        if row["split"] == TRAIN_SPLIT:
            train_counts[row["label"]] = row["count"]
    train_labels = labels_of[TRAIN_SPLIT]
    result = Classification(
        labels=labels,
        train_available=per_split[TRAIN_SPLIT],
        per_class=per_class,
        test_images=per_split[TEST_SPLIT],
        untrained=sorted(labels_of[TEST_SPLIT] - train_labels),
    )
    if per_split[TEST_SPLIT] == 0:
        result.skipped = f"no images in a {TEST_SPLIT} split"
    elif len(train_labels) < 2:
        result.skipped = f"fewer than 2 classes in the {TRAIN_SPLIT} split"
    if result.skipped:
        result.train_images = per_split[TRAIN_SPLIT]
        return result

    index = {label: position for position, label in enumerate(labels)}
    x, y = training_sample(scores, train_counts, index, per_class, seed)
    result.train_images = len(y)
    result.features = f"{PCA_COLUMN} ({x.shape[1]} components)"
    model = SoftmaxRegression.fit(x, y, len(labels), reg_param=reg_param, max_iter=max_iter)
    result.iterations = model.iterations
    predicted = scores.where(F.col("split") == TEST_SPLIT).select(
        "label", model.predict_column(F.col(PCA_COLUMN))
    )
    pairs = predicted.groupBy("label", "prediction").count().collect()
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for row in pairs:
        matrix[index[row["label"]], int(row["prediction"])] += int(row["count"])
    result.confusion = matrix.tolist()
    return result


def training_sample(
    scores: DataFrame,
    counts: Dict[str, int],
    index: Dict[str, int],
    per_class: Optional[int],
    seed: int,
) -> Tuple[np.ndarray, np.ndarray]:
    """The Training rows the classifier is fitted on, on the driver: scores (float32, one row
    per image) and class indices. With ``per_class``, the ``per_class`` rows of each class with
    the smallest hash of ``(path, seed)``: a filter keeps a few more than that per class in
    Spark (no shuffle), the driver keeps exactly those."""
    key = F.col("path") if "path" in scores.columns else F.col(PCA_COLUMN)
    rank = F.xxhash64(key, F.lit(int(seed))).bitwiseAND(F.lit(0x7FFFFFFF)) / float(2**31)
    train = scores.where(F.col("split") == TRAIN_SPLIT).select(
        "label", rank.alias("rank"), PCA_COLUMN
    )
    if per_class is not None:
        # P(rank < share) = share: on average the bound plus 4 standard deviations and 10 rows
        shares = {
            label: min(1.0, (per_class + 4 * per_class**0.5 + 10) / count)
            for label, count in counts.items()
        }
        share = F.create_map(
            *[item for label, value in shares.items() for item in (F.lit(label), F.lit(value))]
        )
        train = train.where(F.col("rank") < share[F.col("label")])
    rows = train.toPandas().sort_values(["label", "rank"], kind="stable")
    if per_class is not None:
        rows = rows.groupby("label", sort=False).head(per_class)
    x = (
        np.stack(rows[PCA_COLUMN].to_numpy()).astype(np.float32)
        if len(rows)
        else np.zeros((0, 0), np.float32)
    )
    return x, rows["label"].map(index).to_numpy(dtype=np.int64)


class SoftmaxRegression:
    """Multinomial logistic regression with numpy: standardised inputs, a bias per class,
    ``reg_param / 2 * |W|^2`` on the weights (not the biases), mean cross-entropy; Nesterov's
    accelerated gradient with the step from a bound on the loss's curvature."""

    def __init__(
        self, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, iterations: int
    ) -> None:
        self.mean = mean  # per input column, for standardising
        self.scale = scale
        self.weights = weights  # (columns + 1) x classes, the last row the biases
        self.iterations = iterations

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        classes: int,
        reg_param: float = REG_PARAM,
        max_iter: int = MAX_ITER,
        tolerance: float = TOLERANCE,
    ) -> "SoftmaxRegression":
        """Fit on rows ``x`` (n x d) with class indices ``y`` in ``range(classes)``."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        inputs = np.hstack([(x - mean) / scale, np.ones((len(x), 1), np.float32)])
        inputs = inputs.astype(np.float32)
        targets = np.zeros((len(x), classes), np.float32)
        targets[np.arange(len(x)), y] = 1.0
        penalty = np.full((inputs.shape[1], 1), reg_param, np.float32)
        penalty[-1] = 0.0  # biases are not regularised
        # Softmax cross-entropy's Hessian is at most 1/2 X'X/n (Boehning): a safe step 1/L
        curvature = (
            0.5 * float(np.linalg.eigvalsh(inputs.T.astype(np.float64) @ inputs / len(x)).max())
            + reg_param
        )
        momentum = (curvature**0.5 - reg_param**0.5) / (curvature**0.5 + reg_param**0.5)
        weights = np.zeros((inputs.shape[1], classes), np.float32)
        ahead = weights
        iterations = 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 (returned)
            gradient = inputs.T @ (_softmax(inputs @ ahead) - targets) / len(x) + penalty * ahead
            following = ahead - gradient / curvature
            ahead = following + momentum * (following - weights)
            weights = following
            if float(np.abs(gradient).max()) < tolerance:
                break
        return cls(mean.astype(np.float32), scale.astype(np.float32), weights, iterations)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index of each row of ``x``."""
        standard = (np.asarray(x, np.float32) - self.mean) / self.scale
        return np.argmax(standard @ self.weights[:-1] + self.weights[-1], axis=1)

    def predict_column(self, column: Any) -> Any:
        """A Spark column ``prediction``: the class index of the score array ``column``."""
        model = SoftmaxRegression(self.mean, self.scale, self.weights, self.iterations)

        @F.pandas_udf("int")
        def predict(scores: pd.Series) -> pd.Series:
            if scores.empty:
                return pd.Series([], dtype="int32")
            return pd.Series(model.predict(np.stack(scores.to_numpy())).astype(np.int32))

        return predict(column).alias("prediction")


def _softmax(logits: np.ndarray) -> np.ndarray:
    exponent = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponent / exponent.sum(axis=1, keepdims=True)


def evaluate_run(run: Run) -> Classification:
    """Evaluate a run after ``run.reduce()``: a ``classify`` stage, plus its two small files.

    Writes ``classification.json`` and (unless skipped) ``confusion.csv`` (the whole matrix:
    true class per row, predicted class per column) and ``confusion_matrix.png`` (see
    :meth:`Classification.confusion_figure`) into the run's ``output_path``, and logs the
    accuracy (headless runs show it in their log).
    A run whose PCA was skipped (fewer than 2 images) gets a skipped result saying so.
    """
    with run.stage("classify"):
        if getattr(run, "pca", None) is None:
            why = getattr(run, "pca_skipped", None)
            result = Classification(
                skipped=f"no PCA scores (PCA skipped: {why})" if why else "no PCA scores"
            )
        else:
            result = evaluate(
                run.spark,
                run.location(storage.PCA_DIR),
                per_class=run.config.classifier_per_class,
                seed=run.config.seed,
            )
        storage.write_json(run.spark, run.location(CLASSIFICATION_JSON), result.as_dict())
        if not result.skipped:
            storage.write_bytes(
                run.spark,
                run.location(CONFUSION_CSV),
                result.confusion_table().to_csv().encode("utf-8"),
            )
            storage.write_bytes(
                run.spark, run.location(CONFUSION_PLOT), plots.figure_png(result.confusion_figure())
            )
    LOG.info("%s", result.text())
    return result
