"""Fruits! image processing chain: the machinery behind the notebooks.

One module per concern:

- :mod:`helpers.config`: the run's parameters (:class:`~helpers.config.PipelineConfig`).
- :mod:`helpers.images`: decoding and preprocessing of encoded image bytes.
- :mod:`helpers.weights`: MobileNetV2 ImageNet weights (offline torchvision file, Keras, .h5).
- :mod:`helpers.features`: the feature extractor and its Spark pandas UDF.
- :mod:`helpers.reduction`: PCA fit, choice of k, projection.
- :mod:`helpers.storage`: paths, Parquet/CSV/JSON outputs, atomic publication of the manifest.
- :mod:`helpers.session`: the Spark session (local, YARN, existing Livy session, S3A).
- :mod:`helpers.plots`: figures (variance, scatter, sample grid).
- :mod:`helpers.progress`: progress of long Spark work (a Jupyter bar, plain log lines).
- :mod:`helpers.pipeline`: the chain's stages, as the notebooks call them.
- :mod:`helpers.classify`: a logistic regression on the PCA features (are they useful?).
- :mod:`helpers.report`: the run's summary and its self-contained ``report.html``.
"""

__version__ = "0.1.0"
