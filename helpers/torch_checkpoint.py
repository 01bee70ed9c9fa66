"""Torch checkpoint: a restricted reader of the legacy ``torch.save`` format, without torch.

Reads torchvision's MobileNetV2 ``IMAGENET1K_V1`` checkpoint (pre-1.6, non-zip format) into
numpy arrays with an unpickler that knows only the few globals a state dict needs, so a hostile
file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from typing import Any, Dict, Optional, Tuple

import numpy as np

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

    def __init__(
        self,
        key: str,
        storage_type: _StorageType,
        numel: int,
        view_offset: int = 0,
        view_numel: Optional[int] = None,
    ) -> None:
        self.key = key
        self.dtype = storage_type.dtype
        self.numel = numel
        self.view_offset = view_offset
        self.view_numel = numel if view_numel is None else view_numel


class _PendingTensor:
    """What ``torch._utils._rebuild_tensor_v2`` returns here: a recipe, filled in later."""

    def __init__(
        self, storage: _StorageRef, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
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
    storage = storage[base : base + tensor.storage.view_numel]
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
        storage[tensor.offset :],
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
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
        ) as error:
            raise ValueError(
                f"{path}: cannot read the {what} of a legacy torch checkpoint "
                f"({type(error).__name__}: {error})"
            ) from None

    magic = load_next("magic number")
    protocol = load_next("protocol version")
    if magic != TORCH_LEGACY_MAGIC or protocol != TORCH_LEGACY_PROTOCOL:
        raise ValueError(
            f"{path} is not a legacy torch checkpoint (magic {magic!r:.40}, "
            f"protocol {protocol!r:.40})"
        )
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
