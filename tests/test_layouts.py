"""Every input layout the README accepts completes and publishes, with a report that says why
the classifier (or PCA) is skipped or partial.

Each layout runs the whole chain in the shared Spark session (``run_pipeline``, then
``evaluate_run`` and ``write_report`` as the notebooks' last cells do), on a few small real
images. The layout without a Test split runs through the real notebook in
``tests/test_scheduled.py`` (the nightly input is exactly that layout).
"""

import json
import os
import shutil

import pytest

from conftest import SAMPLE, copy_subset
from helpers import classify, plots, report
from helpers.config import PipelineConfig
from helpers.pipeline import run_pipeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def one_class(folder):
    return copy_subset(folder, classes=1, train=3, test=1)


def one_image(folder):
    target = os.path.join(folder, "Training", "Kiwi")
    os.makedirs(target)
    shutil.copy(os.path.join(SAMPLE, "Training", "Kiwi", "0_100.jpg"), target)
    return folder


def untrained_test_class(folder):
    """Training: 2 classes; Test: one of them and a third class never seen in Training."""
    copy_subset(folder, classes=3, train=3, test=1)
    third = sorted(os.listdir(os.path.join(folder, "Training")))[2]
    shutil.rmtree(os.path.join(folder, "Training", third))
    shutil.rmtree(os.path.join(folder, "Test", sorted(os.listdir(os.path.join(folder, "Test")))[1]))
    return folder


LAYOUTS = {"one_class": one_class, "one_image": one_image, "untrained": untrained_test_class}


@pytest.fixture(scope="module")
def layout_runs(spark, tmp_path_factory):
    """Each layout run once: (run, classification, report page) by layout name."""
    done = {}
    for name, make in LAYOUTS.items():
        images = make(str(tmp_path_factory.mktemp(f"{name}_images")))
        output = str(tmp_path_factory.mktemp(f"{name}_output"))
        run = run_pipeline(PipelineConfig(images, output, spark_master="local[2]"), spark)
        result = classify.evaluate_run(run)
        location = report.write_report(run, result)
        with open(location, encoding="utf-8") as handle:
            done[name] = (run, result, handle.read())
        run.close()
    return done


def published_manifest(run):
    with open(os.path.join(run.config.output_path, "manifest.json")) as handle:
        return json.load(handle)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_publishes_features_and_a_report(layout_runs, name):
    run, _, page = layout_runs[name]
    manifest = published_manifest(run)
    assert manifest["run_id"] == run.run_id
    assert manifest["images_total"] == manifest["images_featurized"] > 0
    assert all(os.path.isdir(part) for part in manifest["outputs"]["features"])
    assert "Fruits! run report" in page and run.run_id in page


def test_one_class_skips_the_classifier_and_says_why(layout_runs):
    run, result, page = layout_runs["one_class"]
    assert result.skipped == "fewer than 2 classes in the Training split"
    assert "Classifier skipped: fewer than 2 classes in the Training split." in page
    assert published_manifest(run)["k"] >= 1 and os.path.isdir(run.location("pca_csv"))
    figure = result.confusion_figure()  # the notebook's cell: a figure saying why, no error
    assert plots.figure_png(figure)[:8] == PNG_MAGIC
    assert "Classifier skipped" in " ".join(text.get_text() for text in figure.axes[0].texts)


def test_one_image_publishes_features_and_says_pca_was_skipped(layout_runs):
    run, result, page = layout_runs["one_image"]
    manifest = published_manifest(run)
    assert manifest["images_featurized"] == 1 and manifest["images_failed"] == 0
    assert manifest["k"] is None and manifest["explained_variance_kept"] is None
    assert manifest["pca_skipped"] == "PCA skipped: needs at least 2 images, 1 featurized"
    assert set(manifest["outputs"]) == {"features", "inventory"}
    assert not os.path.exists(run.location("pca"))
    assert "PCA skipped: needs at least 2 images, 1 featurized" in page
    assert result.skipped.startswith("no PCA scores (PCA skipped")
    assert "explained variance: PCA skipped" in report.summary_text(manifest)
    for figure in (run.variance_figure(), run.scatter_figure(), result.confusion_figure()):
        assert plots.figure_png(figure)[:8] == PNG_MAGIC


def test_test_classes_absent_from_training_are_named_as_errors(layout_runs):
    run, result, page = layout_runs["untrained"]
    classes = sorted(os.listdir(os.path.join(run.config.input_path, "Training")))
    absent = sorted(set(os.listdir(os.path.join(run.config.input_path, "Test"))) - set(classes))
    assert absent and result.untrained == absent and result.accuracy is not None
    sentence = f"Test classes without Training images: {', '.join(absent)} (counted as errors)."
    assert sentence in page
    row = result.labels.index(absent[0])
    assert result.confusion[row][row] == 0 and sum(result.confusion[row]) == 1
