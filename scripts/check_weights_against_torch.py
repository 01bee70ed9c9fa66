"""Optional manual check: is helpers.weights' Keras MobileNetV2 numerically torchvision's network?

Not part of the test suite, and it needs PyTorch, which the project venv must not get. Make a
throw-away venv with CPU torch (no torchvision needed: its MobileNetV2 is rewritten below in
plain torch, about 60 lines), then run this script with the *project* venv::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy pillow
    .venv/bin/python scripts/check_weights_against_torch.py --torch-python /tmp/torchenv/bin/python

The project side decodes ``data/photos/*.jpg`` with ``helpers.images.decode_image`` and
preprocesses them with torchvision's normalisation, runs the Keras model, and hands the same
float batch to a child process (``--torch-side``, under the torch venv) that builds torchvision's
MobileNetV2, ``torch.load``\\ s the same ``.pth`` and runs it. It prints the max absolute
differences of the 1280 pooled features, the logits and the probabilities, and each photo's top
classes from both, and exits 1 when the features differ by more than ``--tolerance``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import List

import numpy as np

PHOTOS = ("orange", "fruits", "apple")


def torch_side(weights: str, inputs: str, outputs: str) -> None:
    """Child process (torch venv): torchvision's MobileNetV2 in plain torch on the given batch."""
    import torch
    from torch import nn

    class ConvBNReLU(nn.Sequential):
        def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
            super().__init__(
                nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU6(inplace=True),
            )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int):
            super().__init__()
            hidden = int(round(inp * expand))
            self.use_res = stride == 1 and inp == out
            layers: List[nn.Module] = []
            if expand != 1:
                layers.append(ConvBNReLU(inp, hidden, kernel=1))
            layers += [
                ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
            features: List[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
            channels = 32
            for expand, out, repeats, stride in settings:
                for i in range(repeats):
                    step = stride if i == 0 else 1
                    features.append(InvertedResidual(channels, out, step, expand))
                    channels = out
            features.append(ConvBNReLU(channels, 1280, kernel=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

        def pooled(self, x):
            return nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    model = MobileNetV2()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    batch = np.load(inputs)["batch"]  # NHWC float32, already normalised
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        features = model.pooled(x)
        logits = model.classifier(features)
    np.savez(outputs, features=features.numpy(), logits=logits.numpy(),
             torch_version=np.array(torch.__version__))


def project_side(torch_python: str, tolerance: float) -> int:
    """Parent process (project venv): Keras side, then compare with the torch child's output."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras

    from helpers.images import decode_image
    from helpers.weights import (build_model, decode_top, load_weight_set, preprocess_pixels,
                                 torchvision_weights_path)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pixels = np.stack([
        decode_image(open(os.path.join(root, "data", "photos", f"{name}.jpg"), "rb").read(), 224)
        for name in PHOTOS
    ])
    weight_set = load_weight_set("torchvision")
    batch = preprocess_pixels(pixels, weight_set.preprocess_mode)
    classifier = build_model(weight_set, include_top=True)
    # Logits: the classifier's Dense applied without its softmax.
    pooled = keras.Model(classifier.inputs, classifier.get_layer("predictions").input)
    k_features = np.asarray(pooled.predict(batch, verbose=0), dtype=np.float64)
    kernel, bias = classifier.get_layer("predictions").get_weights()
    k_logits = k_features @ kernel.astype(np.float64) + bias
    k_probs = np.asarray(classifier.predict(batch, verbose=0), dtype=np.float64)

    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(inputs, batch=batch)
        subprocess.run([torch_python, os.path.abspath(__file__), "--torch-side",
                        "--weights", torchvision_weights_path(), "--inputs", inputs,
                        "--outputs", outputs], check=True)
        result = np.load(outputs)
        t_features = result["features"].astype(np.float64)
        t_logits = result["logits"].astype(np.float64)
        torch_version = str(result["torch_version"])
    t_probs = np.exp(t_logits - t_logits.max(axis=1, keepdims=True))
    t_probs /= t_probs.sum(axis=1, keepdims=True)

    feature_diff = float(np.abs(k_features - t_features).max())
    print(f"torch {torch_version} vs keras {keras.__version__}, batch {batch.shape}")
    print(f"max |features| {np.abs(t_features).max():.4f}; max abs diff: features "
          f"{feature_diff:.3e}, logits {np.abs(k_logits - t_logits).max():.3e}, "
          f"probabilities {np.abs(k_probs - t_probs).max():.3e}")
    for name, k_top, t_top in zip(PHOTOS, decode_top(k_probs, 3), decode_top(t_probs, 3)):
        print(f"{name:7s} keras: " + ", ".join(f"{n} {p:.4f}" for _, n, p in k_top))
        print(f"{'':7s} torch: " + ", ".join(f"{n} {p:.4f}" for _, n, p in t_top))
    if feature_diff > tolerance:
        print(f"FAIL: features differ by more than {tolerance}")
        return 1
    print("OK")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default="/tmp/torchenv/bin/python",
                        help="python of a venv that has torch (and numpy)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest acceptable abs difference of the pooled features")
    parser.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_side:
        torch_side(args.weights, args.inputs, args.outputs)
        return 0
    return project_side(args.torch_python, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
