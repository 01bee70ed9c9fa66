"""Fruits! image processing chain: the machinery behind the notebooks.

One module per concern:

- :mod:`helpers.onednn`: TensorFlow's oneDNN kernels on (x86) before TensorFlow is imported.
- :mod:`helpers.config`: the run's parameters (:class:`~helpers.config.PipelineConfig`).
- :mod:`helpers.images`: decoding and preprocessing of encoded image bytes; each file's label
  and split.
- :mod:`helpers.torch_checkpoint`: a restricted reader of legacy ``torch.save`` files.
- :mod:`helpers.torchvision_keras`: torchvision's MobileNetV2 tensors as Keras layer weights.
- :mod:`helpers.weights`: MobileNetV2 ImageNet weights (offline torchvision file, Keras, .h5).
- :mod:`helpers.reference_model`: the Keras MobileNetV2 the chain's graph is checked against.
- :mod:`helpers.features`: the feature extractor and its Spark pandas UDF.
- :mod:`helpers.reduction`: PCA fit, choice of k, projection.
- :mod:`helpers.storage`: the one seam for local and S3 paths, Parquet/CSV/JSON outputs.
- :mod:`helpers.manifest`: what a published run consists of; :func:`read_features` reads it;
  what an incremental run reuses.
- :mod:`helpers.session`: the Spark session (local, YARN, existing Livy session, S3A).
- :mod:`helpers.class_archive`: local mode's JVM class archive (Spark's classes, pre-parsed).
- :mod:`helpers.plots`: figures (variance, scatter, sample grid).
- :mod:`helpers.progress`: progress of long Spark work (a Jupyter bar, plain log lines).
- :mod:`helpers.pipeline`: the chain's stages, as the notebooks call them.
- :mod:`helpers.listing`: the images under ``input_path``, found once, labelled.
- :mod:`helpers.failures`: why an image has no features; the ``failed/`` table.
- :mod:`helpers.samples`: a few images per class, decoded for the sample grid.
- :mod:`helpers.classify`: a logistic regression on the PCA features (are they useful?).
- :mod:`helpers.report`: the run's summary and its self-contained ``report.html``.
- :mod:`helpers.report_page`, :mod:`helpers.report_html`, :mod:`helpers.class_summary`: the
  report's cells, their HTML export, and the table of images per class.
- :mod:`helpers.cluster`: what the executors run (helpers, TensorFlow, oneDNN): one probe job.
- :mod:`helpers.lock`: one run at a time per ``output_path`` (local disk and S3).
- :mod:`helpers.history`: one row per run in ``output_path/history/``.
- :mod:`helpers.scheduled`: the scheduled run (``make nightly``): papermill, incremental.
- :mod:`helpers.log`: where the log lines go, set by the entry points (notebooks, CLIs).
- :mod:`helpers.deferred_imports`: a slow optional import of ``nbformat``'s made on first use.
- :mod:`helpers.papermill_cli`: papermill's command line after helpers' settings (``make run``).
"""

# First, before any module can import TensorFlow: oneDNN on unless the user chose otherwise.
from helpers.onednn import enable_onednn as _enable_onednn

_enable_onednn()

# Before nbformat (the report, papermill in process) is imported.
from helpers.deferred_imports import defer_iri_checker as _defer_iri_checker  # noqa: E402

_defer_iri_checker()


def _version() -> str:
    """The version of the installed ``fruits-helpers`` distribution; from a source checkout that
    is not installed, the one in the ``pyproject.toml`` beside this package (its one place,
    read on Python 3.11+); ``"0+unknown"`` when neither can be read."""
    import importlib.metadata
    import os

    try:
        return importlib.metadata.version("fruits-helpers")
    except importlib.metadata.PackageNotFoundError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        import tomllib

        with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (ImportError, OSError, KeyError, ValueError):
        return "0+unknown"


__version__ = _version()


def read_features(spark, output_path):  # noqa: ANN001, ANN201 (pyspark imported on call)
    """The features of every image of the run published in ``output_path``, one row per image
    (path, label, split, features), from all the folders holding them
    (:func:`helpers.manifest.read_features`)."""
    from helpers.manifest import read_features as read_published_features

    return read_published_features(spark, output_path)
