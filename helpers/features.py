"""Features: MobileNetV2 ImageNet embeddings of encoded images, in one process or in Spark.

Owns the feature extractor (MobileNetV2 without its classifier, average-pooled: 1280 floats
per image) and the Spark pandas UDF that runs it on executors. Both go through the same
code path: :func:`helpers.images.decode_batch` then :class:`FeatureExtractor`, so a feature
computed in a test, in a notebook cell or on an EMR executor is the same number.

The extractor runs MobileNetV2 as a plain TensorFlow graph written from the weights
(:func:`mobilenet_v2_features`): each BatchNormalization is folded into the convolution before
it, so every layer is one fused convolution + bias (+ ReLU6). It computes what the reference
Keras model (:func:`helpers.reference_model.build_model`) computes (same padding per flavour;
features within 1e-4, cosine > 0.99999), with fewer operations and no Keras layers to build
(its speed: ``docs/benchmarks.md``); the workers' cold start is mostly TensorFlow's import,
which :mod:`helpers.worker_daemon` does once per executor, before forking the workers.

Public contract (relied on by other code and checks)::

    extract_features(contents, image_size=224) -> np.ndarray  # float32, shape (n, 1280)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from pyspark import Accumulator
from pyspark.broadcast import Broadcast
from pyspark.sql import SparkSession
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from helpers.config import DEFAULT_BATCH_SIZE, DEFAULT_WEIGHTS
from helpers.images import ImageDecodeError, decode_batch, decode_image
from helpers.weights import (
    FLAVOUR_TORCHVISION,
    TORCH_BATCHNORM_EPSILON,
    WeightSet,
    load_weight_set,
)

#: Length of one feature vector (MobileNetV2's last convolution, average-pooled; the input of
#: the ImageNet classifier).
FEATURE_DIM = 1280

#: What the Spark UDF returns per image: the features, or the reason it failed.
FEATURE_RESULT_TYPE = StructType(
    [
        StructField("features", ArrayType(FloatType()), True),
        StructField("error", StringType(), True),
    ]
)

#: Environment variable naming a folder: when set (in the executors' environment), every Python
#: worker appends one JSON line per model build and per model batch to ``<folder>/<pid>.jsonl``
#: (wall-clock start/end and image count). Used by the benchmarks to measure steady-state
#: featurization inside a real run; unset, nothing is written.
TIMINGS_ENV = "FRUITS_FEATURE_TIMINGS"

#: MobileNetV2's 17 inverted-residual blocks: Keras layer-name prefix and depthwise stride.
MOBILENET_V2_BLOCKS: Tuple[Tuple[str, int], ...] = (("expanded_conv", 1),) + tuple(
    (f"block_{index}", 2 if index in (1, 3, 6, 13) else 1) for index in range(1, 17)
)

#: BatchNorm epsilon of Keras' own MobileNetV2.
KERAS_BATCHNORM_EPSILON = 1e-3

#: ImageNet mean and standard deviation of torchvision's preprocessing (``mode="torch"``).
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

_cache_lock = threading.Lock()
_extractors: Dict[Tuple, "FeatureExtractor"] = {}
_threads_configured = False
_gpus_configured = False


def _fold_batchnorm(
    kernel: np.ndarray, batchnorm: Sequence[np.ndarray], epsilon: float, depthwise: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of ``BatchNorm(conv(x, kernel))`` as one convolution (float64 maths)."""
    gamma, beta, mean, variance = (np.asarray(array, dtype=np.float64) for array in batchnorm)
    scale = gamma / np.sqrt(variance + epsilon)
    shape = (1, 1, -1, 1) if depthwise else (1, 1, 1, -1)
    folded = np.asarray(kernel, dtype=np.float64) * scale.reshape(shape)
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)


def mobilenet_v2_features(weight_set: WeightSet, image_size: int) -> Callable:
    """MobileNetV2 (no top, average-pooled) as a ``tf.function`` of uint8 ``(n, s, s, 3)`` pixels.

    Written directly with ``tf.nn`` ops from the Keras-named arrays of ``weight_set``:
    preprocessing of the weights' flavour, BatchNorm folded into each convolution, ReLU6,
    residual additions, global average pooling; padding as the flavour's graph pads
    (torchvision: 1 on every side of every stride-2 convolution; Keras: TF ``"same"`` for
    ``Conv1``, ``correct_pad`` before the stride-2 depthwise convolutions). The weights are
    graph constants. Returns ``(n, 1280)`` float32.

    Raises:
        ValueError: a layer the graph needs is missing from ``weight_set``.
    """
    import tensorflow as tf

    layers = weight_set.layers
    torchvision = weight_set.flavour == FLAVOUR_TORCHVISION
    epsilon = TORCH_BATCHNORM_EPSILON if torchvision else KERAS_BATCHNORM_EPSILON

    def arrays(name: str) -> List[np.ndarray]:
        if name not in layers:
            raise ValueError(f"weights {weight_set.source!r} have nothing for layer {name}")
        return layers[name]

    def folded(conv: str, batchnorm: str, depthwise: bool = False) -> Tuple[Any, Any]:
        kernel, bias = _fold_batchnorm(arrays(conv)[0], arrays(batchnorm), epsilon, depthwise)
        return tf.constant(kernel), tf.constant(bias)

    if torchvision:
        mean = np.array(_TORCH_MEAN, dtype=np.float64) * 255.0
        std = np.array(_TORCH_STD, dtype=np.float64) * 255.0
        input_scale, input_shift = 1.0 / std, -mean / std
    else:
        input_scale, input_shift = np.full(3, 1.0 / 127.5), np.full(3, -1.0)
    input_scale = tf.constant(input_scale.astype(np.float32))
    input_shift = tf.constant(input_shift.astype(np.float32))
    stem = folded("Conv1", "bn_Conv1")
    blocks = []
    for name, stride in MOBILENET_V2_BLOCKS:
        expand = (
            folded(f"{name}_expand", f"{name}_expand_BN") if f"{name}_expand" in layers else None
        )
        depthwise = folded(f"{name}_depthwise", f"{name}_depthwise_BN", depthwise=True)
        project = folded(f"{name}_project", f"{name}_project_BN")
        blocks.append((stride, expand, depthwise, project))
    head = folded("Conv_1", "Conv_1_bn")

    def pointwise(x: Any, kernel_bias: Tuple[Any, Any], relu: bool = True) -> Any:
        y = tf.nn.bias_add(
            tf.nn.conv2d(x, kernel_bias[0], strides=1, padding="VALID"), kernel_bias[1]
        )
        return tf.nn.relu6(y) if relu else y

    def stride2_pads(size: int) -> List[int]:
        return [1, 1] if torchvision or size % 2 else [0, 1]

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)])
    def features(pixels: Any) -> Any:
        x = tf.cast(pixels, tf.float32) * input_scale + input_shift
        if torchvision:
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            x = tf.nn.conv2d(x, stem[0], strides=2, padding="VALID")
        else:
            x = tf.nn.conv2d(x, stem[0], strides=2, padding="SAME")
        x = tf.nn.relu6(tf.nn.bias_add(x, stem[1]))
        for stride, expand, depthwise, project in blocks:
            block_input = x
            if expand is not None:
                x = pointwise(x, expand)
            if stride == 1:
                x = tf.nn.depthwise_conv2d(x, depthwise[0], [1, 1, 1, 1], padding="SAME")
            else:
                pads = stride2_pads(int(x.shape[1]))
                x = tf.pad(x, [[0, 0], pads, pads, [0, 0]])
                x = tf.nn.depthwise_conv2d(x, depthwise[0], [1, 2, 2, 1], padding="VALID")
            x = tf.nn.relu6(tf.nn.bias_add(x, depthwise[1]))
            x = pointwise(x, project, relu=False)
            if stride == 1 and block_input.shape[-1] == x.shape[-1]:
                x = x + block_input
        x = pointwise(x, head)
        return tf.reduce_mean(x, axis=[1, 2])

    return features


class FeatureExtractor:
    """MobileNetV2 features of uint8 RGB pixel batches, as one traced TensorFlow graph.

    Args:
        weight_set: weights and their preprocessing flavour (see :mod:`helpers.weights`).
        image_size: side of the square input the model is built for.
        batch_size: images per model call; larger batches use more memory (GPU: raise it).
    """

    def __init__(
        self, weight_set: WeightSet, image_size: int, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        configure_gpus()
        self.image_size = image_size
        self.batch_size = batch_size
        self.weight_set = weight_set
        self._infer = mobilenet_v2_features(weight_set, image_size)
        # Trace the graph now, on one blank image, so that building the extractor is the whole
        # cold start and the first real batch already runs at full speed.
        self._infer(np.zeros((1, image_size, image_size, 3), dtype=np.uint8))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Features of ``pixels`` (``(n, size, size, 3)`` uint8) as ``(n, 1280)`` float32."""
        if len(pixels) == 0:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        chunks = [
            self._infer(pixels[start : start + self.batch_size]).numpy()
            for start in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def configure_tensorflow_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` cores in this process (once, before any model runs).

    Spark runs one Python worker per concurrent task; giving each ``spark.task.cpus`` threads
    keeps workers x threads equal to the executor's cores instead of oversubscribing them.
    On a GPU executor the model runs on the GPU whatever these CPU thread counts are.
    """
    global _threads_configured
    if _threads_configured:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this process; keep its settings.
    _threads_configured = True


def configure_gpus() -> None:
    """Let TensorFlow grow its GPU memory as needed instead of taking it all (once per process).

    An executor runs one Python worker per concurrent task and each holds a model: with memory
    growth they share the GPU instead of the first one reserving all of it. A no-op without GPU.
    """
    global _gpus_configured
    if _gpus_configured:
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # the GPU is already initialised in this process; keep its settings
    _gpus_configured = True


def get_extractor(
    weights: Union[str, WeightSet] = DEFAULT_WEIGHTS,
    image_size: int = 224,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> FeatureExtractor:
    """The process-wide extractor for these weights and size, built on first use."""
    weight_key = weights if isinstance(weights, str) else weights.source
    key = (weight_key, image_size, batch_size)
    with _cache_lock:
        if key not in _extractors:
            weight_set = load_weight_set(weights) if isinstance(weights, str) else weights
            _extractors[key] = FeatureExtractor(weight_set, image_size, batch_size)
        return _extractors[key]


def extract_features(
    contents: Sequence[bytes],
    image_size: int = 224,
    weights: Union[str, WeightSet] = DEFAULT_WEIGHTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """MobileNetV2 ImageNet features of encoded images.

    Args:
        contents: encoded image bytes (JPEG, PNG, ...), one entry per image.
        image_size: images are resized to ``image_size x image_size`` (bilinear).
        weights: weight source (default: torchvision's ImageNet weights, offline).
        batch_size: images per model call.

    Returns:
        float32 array of shape ``(len(contents), 1280)``, in the order of ``contents``.

    Raises:
        ImageDecodeError: an entry is not a readable image; the message gives its index.
    """
    pixels = []
    for index, content in enumerate(contents):
        try:
            pixels.append(decode_image(content, image_size))
        except ImageDecodeError as error:
            raise ImageDecodeError(f"image {index}: {error}") from None
    if not pixels:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    return get_extractor(weights, image_size, batch_size)(np.stack(pixels))


def weights_fingerprint(weight_set: WeightSet) -> str:
    """A digest of the weights' values (layer names, shapes and bytes): the workers' cache key.

    Two runs with the same weights in the same session find the model already built in each
    Python worker (Spark reuses its workers); other weights get a model of their own.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{weight_set.flavour}|".encode())
    for name in sorted(weight_set.layers):
        digest.update(name.encode())
        for array in weight_set.layers[name]:
            contiguous = np.ascontiguousarray(array)
            digest.update(f"{contiguous.dtype}{contiguous.shape}".encode())
            digest.update(contiguous.data)
    return digest.hexdigest()


def _extractor_for_broadcast(
    weights: Broadcast, token: str, image_size: int, batch_size: int, threads: int
) -> FeatureExtractor:
    """The worker's extractor for broadcast weights: built once per Python worker process.

    ``token`` identifies the weights (:func:`weights_fingerprint`, computed on the driver):
    worker-side broadcasts carry no id, and a digest keeps the model across UDFs and runs.
    """
    key = ("broadcast", token, image_size, batch_size)
    with _cache_lock:
        if key not in _extractors:
            started = time.time()
            configure_tensorflow_threads(threads)
            _extractors[key] = FeatureExtractor(weights.value, image_size, batch_size)
            _record_timing("build", started, time.time(), 0)
        return _extractors[key]


def _record_timing(event: str, start: float, end: float, images: int) -> None:
    """Append one timing line when ``$FRUITS_FEATURE_TIMINGS`` names a folder (benchmarks)."""
    folder = os.environ.get(TIMINGS_ENV)
    if not folder:
        return
    line = json.dumps(
        {"pid": os.getpid(), "event": event, "start": start, "end": end, "images": images}
    )
    try:
        with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError:
        pass  # timings are best effort; never fail a batch over them


def featurize_udf(
    spark: SparkSession,
    weight_set: WeightSet,
    image_size: int,
    batch_size: int,
    threads_per_task: int,
    images_through_model: Optional[Accumulator] = None,
):
    """A pandas UDF ``binary content -> struct<features: array<float>, error: string>``.

    The weights travel once to each executor as a broadcast (no download, no file on the
    executors); each Python worker builds the model on its first batch and keeps it for the
    following tasks (and later runs with the same weights). Each Arrow batch is decoded and
    featurized ``batch_size`` images at a time, so the decoded pixels in memory stay bounded
    whatever ``spark.sql.execution.arrow.maxRecordsPerBatch`` is. Images that fail to decode get
    ``features = null`` and the reason in ``error``; the batch goes on.
    ``images_through_model`` (an accumulator), when given, counts the images that went
    through the CNN.
    """
    headless = weight_set.without_top()
    broadcast_weights = spark.sparkContext.broadcast(headless)
    token = weights_fingerprint(headless)

    @pandas_udf(FEATURE_RESULT_TYPE)  # type: ignore[call-overload]
    def featurize(contents: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        extractor = _extractor_for_broadcast(
            broadcast_weights, token, image_size, batch_size, threads_per_task
        )
        for batch in contents:
            values = batch.tolist()
            vectors: List[np.ndarray] = []
            errors: List[Optional[str]] = []
            for start in range(0, len(values), batch_size):
                began = time.time()
                pixels, chunk_errors = decode_batch(values[start : start + batch_size], image_size)
                chunk = extractor(pixels)
                _record_timing("batch", began, time.time(), len(chunk))
                vectors.append(chunk)
                errors.extend(chunk_errors)
            matrix = np.concatenate(vectors) if vectors else np.zeros((0, FEATURE_DIM), np.float32)
            if images_through_model is not None:
                images_through_model.add(len(matrix))
            yield _result_frame(matrix, errors)

    # Marked nondeterministic so that the optimizer never copies the call into two places of
    # a plan (a filter on ``error`` and a projection of ``features`` would run the CNN twice).
    return featurize.asNondeterministic()


def decode_error_udf(image_size: int):
    """A pandas UDF ``binary content -> string``: why the image does not decode (the same
    message :func:`featurize_udf` records), or null when it does. No model: for failures."""

    @pandas_udf("string")  # type: ignore[call-overload]
    def decode_error(contents: pd.Series) -> pd.Series:
        errors = [decode_batch([content], image_size)[1][0] for content in contents]
        return pd.Series(errors, dtype=object)

    return decode_error


def _result_frame(vectors: np.ndarray, errors: List[Optional[str]]) -> pd.DataFrame:
    """One row per input: its feature vector, or ``None`` and the decode error."""
    rows: List[Optional[np.ndarray]] = []
    next_vector = iter(vectors)
    for error in errors:
        rows.append(next(next_vector) if error is None else None)
    return pd.DataFrame({"features": rows, "error": errors})
