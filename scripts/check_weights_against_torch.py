"""Compare the chain's MobileNetV2 with torchvision's own network in real PyTorch, or write the
suite's reference fixture of torchvision's features.

PyTorch never goes into the project venv. Make a throw-away venv with torch and the torchvision
built for it (check torchvision's compatibility table), then run this script with the *project*
venv, naming the throw-away venv's python::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.14.1 numpy pillow
    /tmp/torchvenv/bin/pip install --no-deps torchvision==0.29.1

    # print the comparison (Keras reference model and the chain's graph vs torchvision)
    .venv/bin/python scripts/check_weights_against_torch.py --torch-python /tmp/torchvenv/bin/python

    # remake tests/data/torchvision_features.npz (what tests/test_features.py checks against)
    .venv/bin/python scripts/check_weights_against_torch.py \\
        --torch-python /tmp/torchvenv/bin/python --write-fixture tests/data/torchvision_features.npz

Two processes, so that each side runs in its own venv:

* this process (project venv) reads the inputs, decodes them with the chain's own
  :func:`helpers.images.decode_image` (so only the network is compared, not two decoders) and
  finds the checkpoint the chain reads (:func:`helpers.weights.torchvision_weights_path`);
  ``--write-fixture`` imports nothing else of the project (numpy and Pillow level: no
  TensorFlow), the comparison also runs the Keras reference model and the chain's graph;
* a child (``--torch-side``, the throw-away venv's python; it imports torch, torchvision and
  numpy, nothing of the project) normalises the uint8 pixels as torchvision does
  (``to_tensor`` then ``normalize`` with ImageNet's mean and std), builds
  ``torchvision.models.mobilenet_v2(weights=None)``, loads the same ``.pth`` with
  ``torch.load(weights_only=True)`` and returns the 1280 average-pooled features (the input of
  torchvision's classifier, checked equal to ``model(x)``'s path) and the logits.

The fixture (``np.load(path)`` without pickle) holds ``features`` (float32 ``(n, 1280)``) and,
to know what it was made from: ``files`` (paths from the repository root), ``file_sha256``,
``pixels_sha256`` (of each decoded uint8 image), ``image_size``, ``weights_file`` and
``weights_sha256``, the ``torch_version``, ``torchvision_version``, ``pillow_version`` and
``numpy_version`` used, and ``command`` (the command above that remakes it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Inputs of the comparison and of the fixture, from the repository root: the three real photos
#: and three views of the bundled sample (100x100, upscaled), one per fruit not shown alone above.
INPUTS = (
    "data/photos/orange.jpg",
    "data/photos/fruits.jpg",
    "data/photos/apple.jpg",
    "data/sample/Training/Banana/0_100.jpg",
    "data/sample/Test/Kiwi/3_100.jpg",
    "data/sample/Training/Lime/17_100.jpg",
)
#: Side the inputs are decoded to (the chain's default ``image_size``).
IMAGE_SIZE = 224
#: Where the suite's fixture lives, from the repository root.
FIXTURE = "tests/data/torchvision_features.npz"
#: The command that remakes the fixture (run from the repository root).
REMAKE_COMMAND = (
    ".venv/bin/python scripts/check_weights_against_torch.py "
    f"--torch-python /tmp/torchvenv/bin/python --write-fixture {FIXTURE}"
)

#: torchvision's ImageNet normalisation (``MobileNet_V2_Weights.IMAGENET1K_V1.transforms()``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Child process: the throw-away venv (torch, torchvision, numpy)
# ----------------------------------------------------------------------------------------------


def torch_side(weights: str, inputs: str, outputs: str) -> None:
    """torchvision's MobileNetV2 on the given uint8 pixels; writes features, logits, versions."""
    import torch
    import torchvision
    from torchvision.models import mobilenet_v2
    from torchvision.transforms import functional as F

    pixels = np.load(inputs)["pixels"]  # (n, s, s, 3) uint8, decoded by the chain
    x = torch.stack(
        [F.normalize(F.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD) for image in pixels]
    )
    model = mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        # torchvision's MobileNetV2.forward: features, adaptive_avg_pool2d to 1x1, flatten,
        # classifier. The pooled vector is the classifier's input.
        maps = model.features(x)
        pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(maps, (1, 1)), 1)
        logits = model.classifier(pooled)
        forward = model(x)
        pooled64 = torch.flatten(
            torch.nn.functional.adaptive_avg_pool2d(model.double().features(x.double()), (1, 1)), 1
        )
    if not torch.equal(forward, logits):
        raise RuntimeError(
            "model(x) differs from classifier(pooled features): torchvision's "
            "forward is no longer what this script assumes"
        )
    print(
        f"torch side: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} threads; float32 vs float64 pooled features: max abs diff "
        f"{(pooled.double() - pooled64).abs().max().item():.2e}"
    )
    np.savez(
        outputs,
        features=pooled.numpy(),
        logits=logits.numpy(),
        torch_version=np.array(torch.__version__),
        torchvision_version=np.array(torchvision.__version__),
    )


# ----------------------------------------------------------------------------------------------
# Parent process: the project venv
# ----------------------------------------------------------------------------------------------


def read_inputs(names: Sequence[str]) -> List[bytes]:
    contents = []
    for name in names:
        with open(os.path.join(ROOT, name), "rb") as handle:
            contents.append(handle.read())
    return contents


def decode_inputs(contents: Sequence[bytes], image_size: int) -> np.ndarray:
    """The chain's decoding (numpy/Pillow only): ``(n, s, s, 3)`` uint8."""
    from helpers.images import decode_image

    return np.stack([decode_image(content, image_size) for content in contents])


def run_torch(torch_python: str, weights: str, pixels: np.ndarray) -> Dict[str, np.ndarray]:
    """Run :func:`torch_side` under ``torch_python`` on ``pixels``; its outputs as arrays."""
    if not os.path.isfile(torch_python):
        sys.exit(f"{torch_python} does not exist: make the torch venv first (see --help)")
    with tempfile.TemporaryDirectory() as folder:
        inputs, outputs = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(inputs, pixels=pixels)
        subprocess.run(
            [
                torch_python,
                os.path.abspath(__file__),
                "--torch-side",
                "--weights",
                weights,
                "--inputs",
                inputs,
                "--outputs",
                outputs,
            ],
            check=True,
        )
        with np.load(outputs) as result:
            return {name: result[name] for name in result.files}


def write_fixture(torch_python: str, path: str) -> int:
    """torchvision's features of :data:`INPUTS` and what they were made from, into ``path``."""
    import PIL

    from helpers.weights import torchvision_weights_path

    contents = read_inputs(INPUTS)
    pixels = decode_inputs(contents, IMAGE_SIZE)
    weights = torchvision_weights_path()
    result = run_torch(torch_python, weights, pixels)
    features = result["features"].astype(np.float32)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    np.savez_compressed(
        path,
        features=features,
        files=np.array(INPUTS),
        file_sha256=np.array([sha256_bytes(content) for content in contents]),
        pixels_sha256=np.array(
            [sha256_bytes(np.ascontiguousarray(image).tobytes()) for image in pixels]
        ),
        image_size=np.array(IMAGE_SIZE),
        weights_file=np.array(os.path.basename(weights)),
        weights_sha256=np.array(sha256_file(weights)),
        torch_version=result["torch_version"],
        torchvision_version=result["torchvision_version"],
        pillow_version=np.array(PIL.__version__),
        numpy_version=np.array(np.__version__),
        command=np.array(REMAKE_COMMAND),
    )
    print(
        f"wrote {path} ({os.path.getsize(path)} bytes): features {features.shape} of "
        f"{len(INPUTS)} inputs at {IMAGE_SIZE}, torch {result['torch_version']}, "
        f"torchvision {result['torchvision_version']}"
    )
    return 0


def differences(ours: np.ndarray, reference: np.ndarray) -> str:
    """Max abs difference and min cosine of two ``(n, d)`` arrays, in words."""
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    cosine = np.sum(ours * reference, axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return (
        f"max abs diff {np.abs(ours - reference).max():.3e}, min cosine {cosine.min():.9f} "
        f"(1 - cosine {1 - cosine.min():.1e})"
    )


def compare(torch_python: str, tolerance: float) -> int:
    """Keras reference model and the chain's graph against torchvision, printed; exit 1 when
    either's features differ from torchvision's by more than ``tolerance``."""
    import keras

    from helpers.features import extract_features
    from helpers.reference_model import build_model, decode_top, preprocess_pixels
    from helpers.weights import load_weight_set, torchvision_weights_path

    contents = read_inputs(INPUTS)
    pixels = decode_inputs(contents, IMAGE_SIZE)
    result = run_torch(torch_python, torchvision_weights_path(), pixels)
    t_features = result["features"].astype(np.float64)
    t_logits = result["logits"].astype(np.float64)
    t_probs = np.exp(t_logits - t_logits.max(axis=1, keepdims=True))
    t_probs /= t_probs.sum(axis=1, keepdims=True)

    weight_set = load_weight_set("torchvision")
    batch = preprocess_pixels(pixels, weight_set.preprocess_mode)
    classifier = build_model(weight_set, image_size=IMAGE_SIZE, include_top=True)
    # Logits: the classifier's Dense applied without its softmax.
    pooled = keras.Model(classifier.inputs, classifier.get_layer("predictions").input)
    k_features = np.asarray(pooled.predict(batch, verbose=0), dtype=np.float64)
    kernel, bias = classifier.get_layer("predictions").get_weights()
    k_logits = k_features @ kernel.astype(np.float64) + bias
    k_probs = np.asarray(classifier.predict(batch, verbose=0), dtype=np.float64)
    chain = extract_features(contents, IMAGE_SIZE).astype(np.float64)

    print(
        f"torch {result['torch_version']}, torchvision {result['torchvision_version']}, "
        f"keras {keras.__version__}; {len(INPUTS)} inputs at {IMAGE_SIZE}; "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(unset)')}"
    )
    print(f"max |features| {np.abs(t_features).max():.4f}")
    print(f"chain graph (extract_features) vs torchvision: {differences(chain, t_features)}")
    print(f"Keras reference model vs torchvision:        {differences(k_features, t_features)}")
    print(f"chain graph vs Keras reference model:        {differences(chain, k_features)}")
    print(
        f"Keras logits vs torch: max abs diff {np.abs(k_logits - t_logits).max():.3e}; "
        f"probabilities {np.abs(k_probs - t_probs).max():.3e}"
    )
    for name, k_top, t_top in zip(INPUTS, decode_top(k_probs, 3), decode_top(t_probs, 3)):
        print(f"{name}\n  keras: " + ", ".join(f"{n} {p:.4f}" for _, n, p in k_top))
        print("  torch: " + ", ".join(f"{n} {p:.4f}" for _, n, p in t_top))
    worst = max(np.abs(chain - t_features).max(), np.abs(k_features - t_features).max())
    if worst > tolerance:
        print(f"FAIL: features differ by more than {tolerance}")
        return 1
    print("OK")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + " " + __doc__.splitlines()[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "--torch-python",
        default="/tmp/torchvenv/bin/python",
        help="python of a throw-away venv with torch, torchvision and numpy",
    )
    parser.add_argument(
        "--write-fixture",
        metavar="PATH",
        help=f"write torchvision's features of the inputs to PATH ({FIXTURE})",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest acceptable abs difference of the pooled features",
    )
    parser.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_side:
        torch_side(args.weights, args.inputs, args.outputs)
        return 0
    sys.path.insert(0, ROOT)
    if args.write_fixture:
        return write_fixture(args.torch_python, args.write_fixture)
    return compare(args.torch_python, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
