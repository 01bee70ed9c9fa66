"""Shared fixtures: one real local Spark session, the real weights, small real data sets.

Expensive things (Spark, the model, a pipeline run) are made once per test session.
"""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/corpus.py

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
SAMPLE = os.path.join(REPO, "data", "sample")

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def copy_subset(destination: str, classes: int, train: int, test: int) -> str:
    """Copy the first ``classes`` classes of the bundled sample, ``train``/``test`` images each."""
    for split, count in (("Training", train), ("Test", test)):
        for label in sorted(os.listdir(os.path.join(SAMPLE, split)))[:classes]:
            source = os.path.join(SAMPLE, split, label)
            target = os.path.join(destination, split, label)
            os.makedirs(target, exist_ok=True)
            names = sorted(os.listdir(source), key=lambda name: int(name.split("_")[0]))
            for name in names[:count]:
                shutil.copy(os.path.join(source, name), target)
    return destination


@pytest.fixture(scope="session")
def spark():
    from helpers.config import PipelineConfig
    from helpers.session import get_spark

    session = get_spark(PipelineConfig("unused", "unused", spark_master="local[2]"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """3 classes x (6 Training + 2 Test) real images, plus every decode edge case and one
    image outside any class folder. Returns (folder, expected outcome per edge-case path)."""
    from corpus import jpeg_bytes, photo, write_edge_cases

    folder = str(tmp_path_factory.mktemp("small_dataset"))
    copy_subset(folder, classes=3, train=6, test=2)
    expected = write_edge_cases(folder)
    stray = os.path.join(folder, "stray_at_top_level.jpg")
    with open(stray, "wb") as handle:
        handle.write(jpeg_bytes(photo()))
    with open(os.path.join(folder, "Training", "notes.txt"), "w") as handle:
        handle.write("not an image extension: never listed\n")
    expected[stray] = "no class folder"
    return folder, expected


@pytest.fixture(scope="session")
def pipeline_run(spark, small_dataset, tmp_path_factory):
    """The whole chain, run once on :func:`small_dataset`."""
    from helpers.config import PipelineConfig
    from helpers.pipeline import run_pipeline

    folder, _ = small_dataset
    output = str(tmp_path_factory.mktemp("pipeline_output"))
    return run_pipeline(PipelineConfig(folder, output, spark_master="local[2]"), spark)
