"""Reference model: the Keras MobileNetV2 for a weight set, and ImageNet's class names.

The chain does not run this model: it runs :func:`helpers.features.mobilenet_v2_features`, a
plain TensorFlow graph written from the same weights. This Keras model is the reference that
graph is checked against (features within 1e-4), the one that gives ImageNet probabilities
(tests, ``scripts/check_weights_against_torch.py``), and the graph a ``.weights.h5`` file is
written from and read into (:mod:`helpers.weights`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np

from helpers.torchvision_keras import PREDICTIONS_LAYER
from helpers.weights import (
    FLAVOUR_TORCHVISION,
    PREPROCESS_MODES,
    TORCH_BATCHNORM_EPSILON,
    WeightSet,
)

#: Name of the padding layer inserted before ``Conv1`` in the torchvision-flavoured graph.
CONV1_PAD_LAYER = "Conv1_pad"
#: Number of ImageNet-1k classes (include_top=True).
NUM_CLASSES = 1000

#: ImageNet-1k class names this project relies on, by index (Keras' ``imagenet_class_index``
#: spelling). The full list of 1000 names is not available offline; see
#: :func:`imagenet_class_names`.
KNOWN_IMAGENET_CLASSES: Dict[int, str] = {
    607: "jack-o'-lantern",
    936: "head_cabbage",
    937: "broccoli",
    938: "cauliflower",
    939: "zucchini",
    943: "cucumber",
    945: "bell_pepper",
    948: "Granny_Smith",
    949: "strawberry",
    950: "orange",
    951: "lemon",
    952: "fig",
    953: "pineapple",
    954: "banana",
    955: "jackfruit",
    956: "custard_apple",
    957: "pomegranate",
}


def _torchvision_graph(model: Any) -> Any:
    """Turn ``keras.applications.MobileNetV2`` into torchvision's MobileNetV2 graph.

    Keras pads its stride-2 convolutions TF-style (asymmetric: ``Conv1`` with ``padding="same"``,
    the depthwise ``ZeroPadding2D`` layers with ``correct_pad``, i.e. (0, 1) at 224), torchvision
    pads 1 on every side; Keras' BatchNorm epsilon is 1e-3, torchvision's 1e-5.
    """
    import keras

    def clone_function(layer: Any) -> Any:
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["epsilon"] = TORCH_BATCHNORM_EPSILON
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            config["padding"] = ((1, 1), (1, 1))
        elif layer.name == "Conv1":
            config["padding"] = "valid"
        return layer.__class__.from_config(config)

    def call_function(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer.name == "Conv1":
            padded = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name=CONV1_PAD_LAYER)(args[0])
            return layer(padded, *args[1:], **kwargs)
        return layer(*args, **kwargs)

    return keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function
    )


def keras_graph(flavour: str, image_size: int, include_top: bool) -> Any:
    """The (unweighted) Keras graph a weight flavour needs."""
    import keras

    model = keras.applications.MobileNetV2(
        weights=None,
        include_top=include_top,
        input_shape=(image_size, image_size, 3),
        pooling=None if include_top else "avg",
    )
    if flavour == FLAVOUR_TORCHVISION:
        model = _torchvision_graph(model)
    return model


def build_model(weight_set: WeightSet, image_size: int = 224, include_top: bool = False) -> Any:
    """Build the Keras MobileNetV2 for ``weight_set`` and give it its weights.

    ``include_top=False`` outputs the average-pooled 1280 features; ``include_top=True`` the
    1000 ImageNet softmax probabilities (the weight set must then hold ``"predictions"``).
    Feed it ``preprocess_pixels(pixels, weight_set.preprocess_mode)``.

    Raises:
        ValueError: a layer with weights gets none, or arrays of the wrong shape.
    """
    if include_top and not weight_set.has_top:
        raise ValueError(
            f"weights {weight_set.source!r} have no classifier: "
            "use include_top=False, or load the weights again with it"
        )
    model = keras_graph(weight_set.flavour, int(image_size), include_top)
    assigned = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = weight_set.layers.get(layer.name)
        if arrays is None:
            raise ValueError(f"weights {weight_set.source!r} have nothing for layer {layer.name}")
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"layer {layer.name} expects weight shapes {expected}, got {got}")
        layer.set_weights(arrays)
        assigned.add(layer.name)
    extra = set(weight_set.layers) - assigned - ({PREDICTIONS_LAYER} if not include_top else set())
    if extra:
        raise ValueError(f"weights for layers the model does not have: {sorted(extra)[:10]}")
    return model


def preprocess_pixels(pixels: np.ndarray, mode: str) -> np.ndarray:
    """uint8 RGB pixels ``(n, h, w, 3)`` -> float32 model input for a flavour's ``mode``.

    ``"torch"``: ``(x / 255 - mean) / std`` with ImageNet's mean and std;
    ``"tf"``: ``x / 127.5 - 1``.
    Works on a copy (Keras' ``preprocess_input`` modifies float arrays in place).
    """
    from keras.applications import imagenet_utils

    if mode not in PREPROCESS_MODES.values():
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    batch = np.array(pixels, dtype=np.float32, copy=True)
    return np.asarray(imagenet_utils.preprocess_input(batch, mode=mode), dtype=np.float32)


def imagenet_class_names() -> List[str]:
    """The 1000 ImageNet-1k class names, offline.

    Uses Keras' ``imagenet_class_index.json`` when it is already in the Keras cache
    (``~/.keras/models``); never downloads it. Otherwise the names of
    :data:`KNOWN_IMAGENET_CLASSES` are filled in and every other class is ``"class_<index>"``.
    """
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    cached = os.path.join(keras_home, "models", "imagenet_class_index.json")
    if os.path.isfile(cached):
        try:
            with open(cached, encoding="utf-8") as handle:
                index = json.load(handle)
            names = [str(index[str(i)][1]) for i in range(NUM_CLASSES)]
            return names
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass  # a damaged cache: fall back to the known names
    return [KNOWN_IMAGENET_CLASSES.get(i, f"class_{i}") for i in range(NUM_CLASSES)]


def decode_top(probabilities: np.ndarray, top: int = 5) -> List[List[Tuple[int, str, float]]]:
    """Top classes of each row of ``(n, 1000)`` (or one ``(1000,)``) probabilities.

    Returns, per row, ``[(index, name, probability), ...]`` best first; ``name`` comes from
    :func:`imagenet_class_names` (``"class_<index>"`` where the name is not known offline).
    """
    rows = np.atleast_2d(np.asarray(probabilities))
    if rows.ndim != 2 or rows.shape[1] != NUM_CLASSES:
        raise ValueError(f"expected (n, {NUM_CLASSES}) probabilities, got {rows.shape}")
    names = imagenet_class_names()
    result = []
    for row in rows:
        order = np.argsort(-row, kind="stable")[:top]
        result.append([(int(i), names[int(i)], float(row[i])) for i in order])
    return result
