"""Synthetic Fruits-360-like image sets of any size, generated on the fly for the benchmarks.

Every image is a 100x100 JPEG derived from one of the bundled ``data/sample`` images (its class
is kept) by a random rotation, crop/zoom, mirror and colour shift, so that N can be any number
while the images still look like Fruits-360 (one fruit on white) and decode like it (JPEG,
quality 90, ~3-5 kB). Layout: ``<root>/Training/<Class>/<i>_100.jpg`` for 75 % of the images,
``<root>/Test/<Class>/<i>_100.jpg`` for the rest. Seeded: the same ``n`` and ``seed`` give the
same files.
"""
from __future__ import annotations

import argparse
import io
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageEnhance

from helpers.images import KNOWN_SPLITS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
SAMPLE = os.path.join(REPO, "data", "sample")
SIZE = 100


def sample_images() -> List[Tuple[str, str]]:
    """(class, path) of every image of the bundled sample, sorted."""
    found = []
    for split in KNOWN_SPLITS:
        for label in sorted(os.listdir(os.path.join(SAMPLE, split))):
            folder = os.path.join(SAMPLE, split, label)
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(".jpg"):
                    found.append((label, os.path.join(folder, name)))
    return found


def _variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(0, 360))
    rotated = image.rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255))
    zoom = float(rng.uniform(0.85, 1.0))
    side = int(round(SIZE * zoom))
    left = int(rng.integers(0, SIZE - side + 1))
    top = int(rng.integers(0, SIZE - side + 1))
    cropped = rotated.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
    if rng.random() < 0.5:
        cropped = cropped.transpose(Image.FLIP_LEFT_RIGHT)
    cropped = ImageEnhance.Brightness(cropped).enhance(float(rng.uniform(0.88, 1.12)))
    cropped = ImageEnhance.Contrast(cropped).enhance(float(rng.uniform(0.88, 1.12)))
    cropped = ImageEnhance.Color(cropped).enhance(float(rng.uniform(0.85, 1.15)))
    return cropped


def make_dataset(root: str, n: int, seed: int = 0, test_share: float = 0.25) -> Dict[str, int]:
    """Write ``n`` synthetic images under ``root``; return images per split."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    sources = sample_images()
    if not sources:
        raise FileNotFoundError(f"no sample images under {SAMPLE}")
    rng = np.random.default_rng(seed)
    decoded = {path: Image.open(path).convert("RGB") for _, path in sources}
    counts = {"Training": 0, "Test": 0}
    for index in range(n):
        label, path = sources[int(rng.integers(len(sources)))]
        split = "Test" if rng.random() < test_share else "Training"
        folder = os.path.join(root, split, label)
        os.makedirs(folder, exist_ok=True)
        buffer = io.BytesIO()
        _variant(decoded[path], rng).save(buffer, format="JPEG", quality=90)
        with open(os.path.join(folder, f"{index}_100.jpg"), "wb") as handle:
            handle.write(buffer.getvalue())
        counts[split] += 1
    return counts


def image_files(root: str) -> List[str]:
    """Every .jpg under ``root``, sorted."""
    found = []
    for folder, _, names in os.walk(root):
        found.extend(os.path.join(folder, name) for name in names if name.endswith(".jpg"))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_dataset(args.root, args.n, args.seed))


if __name__ == "__main__":
    main()
