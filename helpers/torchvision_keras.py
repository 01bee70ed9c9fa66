"""Torchvision to Keras: the names and layouts that turn torchvision's MobileNetV2 tensors
into the weights of Keras' MobileNetV2 layers."""

from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

import numpy as np

#: Name of the classifier layer in ``keras.applications.MobileNetV2``.
PREDICTIONS_LAYER = "predictions"


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
        name
        for name, array in state_dict.items()
        if name not in used
        and not (name.endswith(".num_batches_tracked") and np.issubdtype(array.dtype, np.integer))
    ]
    if unused:
        raise ValueError(f"torchvision tensors not mapped to any Keras layer: {unused[:10]}")
    return layers
