"""Classify: proof that the features are useful, by a simple classifier on the PCA scores.

Owns the check that closes a run: a multinomial logistic regression (``pyspark.ml``), trained on
the ``Training`` split of ``<output_path>/pca`` (the ``pca`` array column, through
``array_to_vector``) and scored on the ``Test`` split: its accuracy, the chance level it must
beat (one over the number of classes) and the confusion matrix (counts, true class x predicted
class). Everything runs in Spark; only the small confusion table comes to the driver.

:func:`evaluate` works on any PCA Parquet; :func:`evaluate_run` evaluates a finished
:class:`~helpers.pipeline.Run`, times itself as the run's ``classify`` stage and writes
``classification.json``, ``confusion.csv`` and ``confusion_matrix.png`` next to the outputs. A run without both
splits (``sample_limit`` runs, data sets without a Test folder) gets a result that says why it
was skipped instead of an error, so the notebook and its report still finish.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import pandas as pd
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import plots, storage
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

#: L2 regularisation of the logistic regression: with k PCA scores per image and only a few
#: dozen images per class the classes are often separable; a little L2 keeps the fit finite.
REG_PARAM = 0.01
MAX_ITER = 200


@dataclass
class Classification:
    """Test-split result of a classifier trained on the Training split.

    Attributes:
        labels: class names, in the order of the confusion matrix's rows and columns.
        confusion: ``confusion[i][j]`` = Test images of class ``labels[i]`` predicted as
            ``labels[j]`` (counts).
        train_images: Training images the classifier saw.
        test_images: Test images it was scored on.
        features: what it was trained on (e.g. ``"pca (53 components)"``).
        skipped: why no classifier was trained (``None`` when it was).
        untrained: Test classes without Training images (each of their Test images counts
            as a mistake: the classifier cannot predict a class it never saw).
    """

    labels: List[str] = field(default_factory=list)
    confusion: List[List[int]] = field(default_factory=list)
    train_images: int = 0
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
        matrix = np.asarray(self.confusion, dtype=int).reshape(len(self.labels), -1) \
            if self.confusion else np.zeros((0, 0), dtype=int)
        per_class = matrix.sum(axis=1)
        rows = [(self.labels[i], self.labels[j], int(matrix[i, j]),
                 float(matrix[i, j]) / per_class[i])
                for i, j in zip(*np.nonzero(matrix)) if i != j]
        frame = pd.DataFrame(rows, columns=["true class", "predicted class", "images",
                                            "share of true class"])
        frame = frame.sort_values(["images", "true class", "predicted class"],
                                  ascending=[False, True, True], kind="stable")
        return frame.head(top).reset_index(drop=True)

    def class_accuracy(self) -> pd.DataFrame:
        """Test accuracy per class: ``class``, ``Test images``, ``right``, ``accuracy``; worst
        first (then by name). Classes without Test images are left out."""
        matrix = np.asarray(self.confusion, dtype=int).reshape(len(self.labels), -1) \
            if self.confusion else np.zeros((0, 0), dtype=int)
        rows = [(label, int(matrix[i].sum()), int(matrix[i, i]),
                 float(matrix[i, i]) / matrix[i].sum())
                for i, label in enumerate(self.labels[:len(matrix)]) if matrix[i].sum()]
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
            return plots.message_figure("No confusion matrix",
                                        f"Classifier skipped: {self.skipped or 'no Test images'}.")
        if len(self.labels) > plots.MANY_CLASSES:
            return plots.confused_pairs_figure(self.confused_pairs(), self.worst_classes(),
                                               self.accuracy)
        return plots.confusion_matrix_figure(self.confusion, self.labels, self.accuracy)

    def untrained_text(self) -> str:
        """One sentence on Test classes without Training images (``""`` when there are none)."""
        if not self.untrained:
            return ""
        return (f"Test classes without Training images: {', '.join(self.untrained)} "
                f"(counted as errors)")

    def text(self) -> str:
        """One line: accuracy against chance, or why there is none."""
        if self.skipped:
            return f"classifier skipped: {self.skipped}"
        untrained = f"; {self.untrained_text()}" if self.untrained else ""
        return (
            f"logistic regression on {self.features}: Test accuracy {100 * self.accuracy:.1f}% "
            f"({int(np.trace(np.asarray(self.confusion)))} of {self.test_images} Test images), "
            f"chance {100 * self.chance:.1f}% ({len(self.labels)} classes); "
            f"trained on {self.train_images} Training images{untrained}"
        )

    def as_dict(self) -> Dict[str, Any]:
        """Plain-dict view (with accuracy and chance), for ``classification.json``."""
        return {**asdict(self), "accuracy": self.accuracy, "chance": self.chance}

    def __repr__(self) -> str:
        return self.text()


def evaluate(
    spark: SparkSession,
    pca_location: str,
    reg_param: float = REG_PARAM,
    max_iter: int = MAX_ITER,
) -> Classification:
    """Train on the Training split of the PCA Parquet at ``pca_location``, score on Test.

    Classes are indexed alphabetically over both splits; a Test class absent from Training
    can only be mispredicted, and counts as such.
    """
    scores = storage.read_parquet(spark, pca_location).where(F.col("label").isNotNull())
    return evaluate_frame(scores, reg_param=reg_param, max_iter=max_iter)


def evaluate_frame(
    scores: DataFrame, reg_param: float = REG_PARAM, max_iter: int = MAX_ITER
) -> Classification:
    """:func:`evaluate` on a DataFrame with ``label``, ``split`` and the ``pca`` array column."""
    counts = scores.groupBy("split", "label").count().collect()
    labels = sorted({row["label"] for row in counts})
    per_split = {TRAIN_SPLIT: 0, TEST_SPLIT: 0}
    labels_of = {TRAIN_SPLIT: set(), TEST_SPLIT: set()}
    for row in counts:
        if row["split"] in per_split:
            per_split[row["split"]] += row["count"]
            labels_of[row["split"]].add(row["label"])
    train_labels = labels_of[TRAIN_SPLIT]
    result = Classification(labels=labels, train_images=per_split[TRAIN_SPLIT],
                            test_images=per_split[TEST_SPLIT],
                            untrained=sorted(labels_of[TEST_SPLIT] - train_labels))
    dim = scores.select(F.size(PCA_COLUMN).alias("k")).first()
    if dim is not None:
        result.features = f"{PCA_COLUMN} ({dim['k']} components)"
    if per_split[TEST_SPLIT] == 0:
        result.skipped = f"no images in a {TEST_SPLIT} split"
    elif len(train_labels) < 2:
        result.skipped = f"fewer than 2 classes in the {TRAIN_SPLIT} split"
    if result.skipped:
        return result

    index = {label: position for position, label in enumerate(labels)}
    mapping = F.create_map(
        *[item for label in labels for item in (F.lit(label), F.lit(index[label]))]
    )
    frame = scores.where(F.col("split").isin(TRAIN_SPLIT, TEST_SPLIT)).select(
        "split",
        mapping[F.col("label")].cast("double").alias("target"),
        array_to_vector(PCA_COLUMN).alias("vector"),
    )
    model = LogisticRegression(
        featuresCol="vector", labelCol="target", family="multinomial",
        regParam=reg_param, maxIter=max_iter,
    ).fit(frame.where(F.col("split") == TRAIN_SPLIT))
    predicted = model.transform(frame.where(F.col("split") == TEST_SPLIT))
    pairs = predicted.groupBy("target", "prediction").count().collect()
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for row in pairs:
        matrix[int(row["target"]), int(row["prediction"])] += int(row["count"])
    result.confusion = matrix.tolist()
    return result


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
            result = Classification(skipped=f"no PCA scores (PCA skipped: {why})" if why
                                    else "no PCA scores")
        else:
            result = evaluate(run.spark, run.location(storage.PCA_DIR))
        storage.write_json(run.spark, run.location(CLASSIFICATION_JSON), result.as_dict())
        if not result.skipped:
            storage.write_bytes(run.spark, run.location(CONFUSION_CSV),
                                result.confusion_table().to_csv().encode("utf-8"))
            storage.write_bytes(run.spark, run.location(CONFUSION_PLOT),
                                plots.figure_png(result.confusion_figure()))
    LOG.info("%s", result.text())
    return result
