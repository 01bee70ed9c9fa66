"""helpers.features against torchvision's own numbers: the graph the chain runs, without torch.

``tests/data/torchvision_features.npz`` holds the 1280 pooled features that real PyTorch and
``torchvision.models.mobilenet_v2`` give for a few real images (decoded by the chain's own
``decode_image``, torchvision's normalisation, the checkpoint the chain reads), made by
``scripts/check_weights_against_torch.py --write-fixture`` (its ``command`` entry says how).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from helpers.config import DEFAULT_WEIGHTS, PipelineConfig
from helpers.features import FEATURE_DIM, extract_features, featurize_udf
from helpers.images import decode_image
from helpers.session import task_cpus
from helpers.weights import load_weight_set, torchvision_weights_path

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
FIXTURE = os.path.join(REPO, "tests", "data", "torchvision_features.npz")

#: Largest abs difference allowed between the chain's features and torchvision's.
TOLERANCE = 1e-4
#: Smallest cosine similarity allowed between the chain's feature vectors and torchvision's.
MIN_COSINE = 0.99999


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def contents(reference):
    result = []
    for name in reference["files"]:
        with open(os.path.join(REPO, str(name)), "rb") as handle:
            result.append(handle.read())
    return result


def remake(reference) -> str:
    return f"remake the fixture with `{reference['command']}` (see its docstring)"


def agreement(ours: np.ndarray, theirs: np.ndarray):
    """Max abs difference and min cosine similarity of two ``(n, d)`` arrays."""
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    cosine = np.sum(ours * theirs, axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    return float(np.abs(ours - theirs).max()), float(cosine.min())


def test_fixture_was_made_from_these_files_and_weights(reference, contents):
    assert reference["features"].shape == (len(reference["files"]), FEATURE_DIM)
    assert reference["features"].dtype == np.float32
    changed = [
        str(name)
        for name, content, expected in zip(reference["files"], contents, reference["file_sha256"])
        if sha256(content) != str(expected)
    ]
    assert not changed, f"inputs changed since the fixture was made: {changed}; {remake(reference)}"
    with open(torchvision_weights_path(), "rb") as handle:
        weights_sha256 = sha256(handle.read())
    assert weights_sha256 == str(reference["weights_sha256"]), (
        f"the chain's checkpoint is not the fixture's {reference['weights_file']}; "
        + remake(reference)
    )


def test_decoding_gives_the_fixtures_pixels(reference, contents):
    """The fixture compares networks only: the chain decodes the inputs as when it was made."""
    size = int(reference["image_size"])
    changed = [
        str(name)
        for name, content, expected in zip(reference["files"], contents, reference["pixels_sha256"])
        if sha256(decode_image(content, size).tobytes()) != str(expected)
    ]
    assert not changed, (
        f"decode_image gives other pixels than when the fixture was made (Pillow "
        f"{reference['pillow_version']} then) for {changed}: a decoding change, not a network "
        f"one; {remake(reference)}"
    )


def test_extract_features_equal_torchvisions(reference, contents):
    features = extract_features(contents, int(reference["image_size"]))
    assert features.shape == reference["features"].shape and features.dtype == np.float32
    max_diff, min_cosine = agreement(features, reference["features"])
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    print(
        f"extract_features vs torchvision {reference['torchvision_version']} "
        f"(TF_ENABLE_ONEDNN_OPTS={onednn}): max abs diff {max_diff:.2e}, "
        f"min cosine {min_cosine:.9f} (1 - cosine {1 - min_cosine:.1e})"
    )
    assert max_diff <= TOLERANCE and min_cosine >= MIN_COSINE, (max_diff, min_cosine)


def test_spark_udf_features_equal_torchvisions(spark, reference, contents):
    """The pandas UDF the chain runs on executors gives torchvision's numbers too.

    Called as the chain calls it (default batch size, ``spark.task.cpus`` threads), in one
    task, so the Python worker's model is the one later runs of the session reuse.
    """
    size = int(reference["image_size"])
    rows = [(str(name), bytearray(content)) for name, content in zip(reference["files"], contents)]
    frame = spark.createDataFrame(rows, "path string, content binary").coalesce(1)
    udf = featurize_udf(
        spark,
        load_weight_set(DEFAULT_WEIGHTS),
        size,
        PipelineConfig("unused", "unused").batch_size,
        task_cpus(spark),
    )
    result = (
        frame.select("path", udf("content").alias("result"))
        .select("path", "result.features", "result.error")
        .toPandas()
        .set_index("path")
    )
    assert result.error.isna().all(), result.error.dropna().to_dict()
    features = np.stack(result.loc[[str(name) for name in reference["files"]], "features"])
    max_diff, min_cosine = agreement(features, reference["features"])
    print(
        f"Spark UDF vs torchvision: max abs diff {max_diff:.2e}, "
        f"min cosine {min_cosine:.9f} (1 - cosine {1 - min_cosine:.1e})"
    )
    assert max_diff <= TOLERANCE and min_cosine >= MIN_COSINE, (max_diff, min_cosine)
