"""The one-process model ceiling: MobileNetV2 features as fast as one plain Python process goes.

Pillow decode + bilinear resize, batches of 64, the model called through a compiled
``tf.function`` (:class:`helpers.features.FeatureExtractor`), TensorFlow's default threads (all
cores). One warm-up pass, then ``--repeats`` timed passes over the same images; prints one JSON
line with images/s per pass.

Variants (``--variant``): ``fp32`` (the chain's), ``xla`` (``jit_compile=True``) and
``bf16`` (Keras ``mixed_bfloat16`` policy); for the variants the JSON also holds the cosine
similarity of their features with fp32 ones on the same images.

TensorFlow's oneDNN kernels follow :mod:`helpers.onednn` (imported first: on for x86 unless
``TF_ENABLE_ONEDNN_OPTS`` is set); the JSON says whether they were on (``onednn``, TensorFlow's
own switch) and the CPU's ISA (``isa``).

Usage: ``python -m benchmarks.ceiling IMAGES_DIR [--image-size 224] [--variant fp32] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import time
from typing import List

import numpy as np

import helpers  # noqa: F401 - first: oneDNN as helpers.onednn decides, before TensorFlow
from benchmarks.data import image_files


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def build(variant: str, image_size: int, batch_size: int):
    """The extractor for ``variant``: ``fp32`` (the chain's own graph), ``xla`` (that same graph
    compiled with XLA) or ``bf16`` (the Keras MobileNetV2 under the ``mixed_bfloat16`` policy:
    bfloat16 compute, float32 variables)."""
    import keras
    import tensorflow as tf
    from keras.applications import imagenet_utils

    from helpers.features import FeatureExtractor
    from helpers.reference_model import build_model
    from helpers.weights import load_weight_set

    weight_set = load_weight_set("torchvision")
    extractor = FeatureExtractor(weight_set, image_size, batch_size)
    signature = [tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)]
    if variant == "xla":
        graph = extractor._infer.python_function  # noqa: SLF001 (same graph, XLA-compiled)
        extractor._infer = tf.function(graph, input_signature=signature, jit_compile=True)
    elif variant == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            model = build_model(weight_set, image_size=image_size, include_top=False)
        finally:
            keras.mixed_precision.set_global_policy("float32")

        @tf.function(input_signature=signature)
        def infer(pixels):
            inputs = imagenet_utils.preprocess_input(tf.cast(pixels, tf.float32), mode="torch")
            return tf.cast(model(inputs, training=False), tf.float32)

        extractor._infer = infer  # noqa: SLF001 (benchmark variant of the same network)
    elif variant != "fp32":
        raise ValueError(f"unknown variant {variant!r}: fp32, xla or bf16")
    return extractor


def run(paths: List[str], image_size: int, variant: str, repeats: int, batch_size: int) -> dict:
    from helpers.images import decode_batch
    from helpers.onednn import tensorflow_state

    contents = [open(path, "rb").read() for path in paths]
    extractor = build(variant, image_size, batch_size)

    def one_pass() -> np.ndarray:
        pixels, errors = decode_batch(contents, image_size)
        assert not any(errors)
        return np.asarray(extractor(pixels), dtype=np.float32)

    features = one_pass()  # warm-up: tracing, oneDNN primitive creation
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        rates.append(len(paths) / (time.perf_counter() - start))
    result = {
        "measure": "ceiling",
        "variant": variant,
        "image_size": image_size,
        "images": len(paths),
        "images_per_s": rates,
        "median_images_per_s": float(np.median(rates)),
    }
    state = tensorflow_state()
    result.update(onednn=state["onednn"], isa=state["isa"], onednn_env=state["env"])
    if variant != "fp32":
        reference = np.asarray(
            build("fp32", image_size, batch_size)(decode_batch(contents, image_size)[0])
        )
        result["cosine_min"] = float(cosine(features, reference).min())
        result["cosine_mean"] = float(cosine(features, reference).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--variant", choices=("fp32", "xla", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = parser.parse_args()
    paths = image_files(args.images)
    if args.limit:
        paths = paths[: args.limit]
    print(json.dumps(run(paths, args.image_size, args.variant, args.repeats, args.batch_size)))


if __name__ == "__main__":
    main()
