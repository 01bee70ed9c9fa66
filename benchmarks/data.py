"""Synthetic Fruits-360-like image sets of any size, generated on the fly for the benchmarks.

Every image is a 100x100 JPEG derived from one of the bundled ``data/sample`` images (its class
is kept) by a random rotation, crop/zoom, mirror and colour shift, so that N can be any number
while the images still look like Fruits-360 (one fruit on white) and decode like it (JPEG,
quality 90, ~3-5 kB). Layout: ``<root>/Training/<Class>/<i>_100.jpg`` for 75 % of the images,
``<root>/Test/<Class>/<i>_100.jpg`` for the rest. Seeded: the same ``n`` and ``seed`` give the
same files.

:func:`make_fruits360` makes a Fruits-360-shaped set instead: 155 classes named as in Fruits-360
(spaces and digits: ``Apple Red 1``, ``Cherry Wax Black 2``, ``Pear 3``), uneven class sizes (class
weights drawn between 400 and 1,000, as Fruits-360's images per class), each class one sample
class's photos under its own fixed colour cast of the fruit (the white background is kept), so
that classes differ as Fruits-360's varieties do. Image ``i`` depends only on ``(seed, i)``:
images ``n .. n+m-1`` added to a tree of ``n`` are the ones a tree of ``n+m`` holds, and the work
splits over processes. :func:`cached_fruits360` keeps such trees in a git-ignored cache
(``benchmarks/data-cache/`` or ``$BENCH_DATA``), keyed by ``n`` and ``seed``, made once.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance

from helpers.images import KNOWN_SPLITS

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
SAMPLE = os.path.join(REPO, "data", "sample")
SIZE = 100
#: Where :func:`cached_fruits360` keeps generated trees unless ``$BENCH_DATA`` names a folder.
CACHE = os.path.join(REPO, "benchmarks", "data-cache")
CACHE_ENV = "BENCH_DATA"
#: Written last into a cached tree, with its counts: a tree without it is incomplete.
COMPLETE = ".complete.json"
#: Fruits-360's size: images (Training + Test, 100x100) and classes.
FRUITS360_IMAGES = 102_639
FRUITS360_CLASSES = 155
#: Fruits-360-style class names: (name, varieties); varieties > 1 get numbers 1, 2, ...
_FRUIT_NAMES: Sequence[Tuple[str, int]] = (
    ("Apple Braeburn", 1),
    ("Apple Crimson Snow", 1),
    ("Apple Golden", 3),
    ("Apple Granny Smith", 1),
    ("Apple Pink Lady", 1),
    ("Apple Red", 3),
    ("Apple Red Delicious", 1),
    ("Apple Red Yellow", 2),
    ("Apricot", 1),
    ("Avocado", 1),
    ("Avocado ripe", 1),
    ("Banana", 1),
    ("Banana Lady Finger", 1),
    ("Banana Red", 1),
    ("Beetroot", 1),
    ("Blueberry", 1),
    ("Cactus fruit", 1),
    ("Cantaloupe", 2),
    ("Carambula", 1),
    ("Cauliflower", 1),
    ("Cherry", 2),
    ("Cherry Rainier", 1),
    ("Cherry Wax Black", 2),
    ("Cherry Wax Red", 1),
    ("Cherry Wax Yellow", 1),
    ("Chestnut", 1),
    ("Clementine", 1),
    ("Cocos", 1),
    ("Corn", 1),
    ("Corn Husk", 1),
    ("Cucumber Ripe", 2),
    ("Dates", 1),
    ("Eggplant", 1),
    ("Fig", 1),
    ("Ginger Root", 1),
    ("Granadilla", 1),
    ("Grape Blue", 1),
    ("Grape Pink", 1),
    ("Grape White", 4),
    ("Grapefruit Pink", 1),
    ("Grapefruit White", 1),
    ("Guava", 1),
    ("Hazelnut", 1),
    ("Huckleberry", 1),
    ("Kaki", 1),
    ("Kiwi", 1),
    ("Kohlrabi", 1),
    ("Kumquats", 1),
    ("Lemon", 1),
    ("Lemon Meyer", 1),
    ("Limes", 1),
    ("Lychee", 1),
    ("Mandarine", 1),
    ("Mango", 1),
    ("Mango Red", 1),
    ("Mangostan", 1),
    ("Maracuja", 1),
    ("Melon Piel de Sapo", 1),
    ("Mulberry", 1),
    ("Nectarine", 1),
    ("Nectarine Flat", 1),
    ("Nut Forest", 1),
    ("Nut Pecan", 1),
    ("Onion Red", 1),
    ("Onion Red Peeled", 1),
    ("Onion White", 1),
    ("Orange", 1),
    ("Papaya", 1),
    ("Passion Fruit", 1),
    ("Peach", 2),
    ("Peach Flat", 1),
    ("Pear", 3),
    ("Pear Abate", 1),
    ("Pear Forelle", 1),
    ("Pear Kaiser", 1),
    ("Pear Monster", 1),
    ("Pear Red", 1),
    ("Pear Stone", 1),
    ("Pear Williams", 1),
    ("Pepino", 1),
    ("Pepper Green", 1),
    ("Pepper Orange", 1),
    ("Pepper Red", 1),
    ("Pepper Yellow", 1),
    ("Physalis", 1),
    ("Physalis with Husk", 1),
    ("Pineapple", 1),
    ("Pineapple Mini", 1),
    ("Pitahaya Red", 1),
    ("Plum", 3),
    ("Pomegranate", 1),
    ("Pomelo Sweetie", 1),
    ("Potato Red", 1),
    ("Potato Red Washed", 1),
    ("Potato Sweet", 1),
    ("Potato White", 1),
    ("Quince", 1),
    ("Rambutan", 1),
    ("Raspberry", 1),
    ("Redcurrant", 1),
    ("Salak", 1),
    ("Strawberry", 1),
    ("Strawberry Wedge", 1),
    ("Tamarillo", 1),
    ("Tangelo", 1),
    ("Tomato", 4),
    ("Tomato Cherry Red", 1),
    ("Tomato Heart", 1),
    ("Tomato Maroon", 1),
    ("Tomato Yellow", 1),
    ("Tomato not Ripened", 1),
    ("Walnut", 1),
    ("Watermelon", 1),
    ("Zucchini", 1),
    ("Zucchini dark", 1),
    ("Apple Golden Red", 2),
    ("Carrot", 2),
    ("Cabbage White", 2),
    ("Pistachio", 2),
    ("Almond", 2),
    ("Blackberry", 3),
    ("Gooseberry", 2),
    ("Persimmon", 2),
    ("Plum Yellow", 2),
    ("Apple Fuji", 3),
    ("Apple Gala", 2),
    ("Apple Jonagold", 2),
    ("Bell Pepper", 3),
)


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
    cropped = rotated.crop((left, top, left + side, top + side)).resize(
        (SIZE, SIZE), Image.BILINEAR
    )
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


def fruits360_classes(count: int = FRUITS360_CLASSES) -> List[str]:
    """``count`` Fruits-360-style class names (at most as many as the name list gives)."""
    names = [
        name if varieties == 1 else f"{name} {number}"
        for name, varieties in _FRUIT_NAMES
        for number in range(1, varieties + 1)
    ]
    if count > len(names):
        raise ValueError(f"at most {len(names)} class names, asked for {count}")
    return sorted(names[:count])


def _class_plan(seed: int, classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per class: the probability of an image to be of it (weights 400..1,000, normalised) and
    the RGB gains of its colour cast."""
    rng = np.random.default_rng([seed, classes, 360])
    weights = rng.uniform(400, 1000, classes)
    gains = rng.uniform(0.7, 1.3, (classes, 3))
    return weights / weights.sum(), gains


_SOURCES: Dict[str, List[Image.Image]] = {}


def _fruits360_image(
    index: int, seed: int, labels: List[str], plan: Tuple[np.ndarray, np.ndarray], test_share: float
) -> Tuple[str, str, bytes]:
    """(split, class, JPEG bytes) of image ``index``: a function of ``seed`` and ``index`` only."""
    if not _SOURCES:
        for label, path in sample_images():
            _SOURCES.setdefault(label, []).append(Image.open(path).convert("RGB"))
    probabilities, gains = plan
    rng = np.random.default_rng([seed, index])
    klass = int(rng.choice(len(labels), p=probabilities))
    split = "Test" if rng.random() < test_share else "Training"
    sources = sorted(_SOURCES)
    photos = _SOURCES[sources[klass % len(sources)]]
    pixels = np.asarray(photos[int(rng.integers(len(photos)))], dtype=np.float32)
    fruit = pixels.min(axis=2) < 235  # the class's colour cast on the fruit; white stays white
    pixels[fruit] = np.clip(pixels[fruit] * gains[klass], 0, 255)
    buffer = io.BytesIO()
    _variant(Image.fromarray(pixels.astype(np.uint8)), rng).save(buffer, format="JPEG", quality=90)
    return split, labels[klass], buffer.getvalue()


def _write_fruits360(job: Tuple[str, int, int, int, int, float]) -> Dict[str, int]:
    root, first, stop, seed, classes, test_share = job
    labels, plan = fruits360_classes(classes), _class_plan(seed, classes)
    counts = {"Training": 0, "Test": 0}
    for index in range(first, stop):
        split, label, data = _fruits360_image(index, seed, labels, plan, test_share)
        with open(os.path.join(root, split, label, f"{index}_100.jpg"), "wb") as handle:
            handle.write(data)
        counts[split] += 1
    return counts


def make_fruits360(
    root: str,
    n: int,
    seed: int = 0,
    first: int = 0,
    classes: int = FRUITS360_CLASSES,
    test_share: float = 0.25,
    workers: int = 1,
) -> Dict[str, int]:
    """Write images ``first .. first+n-1`` of the Fruits-360-shaped set ``seed`` under ``root``
    (see the module docstring), in ``workers`` processes; return images per split."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if not sample_images():
        raise FileNotFoundError(f"no sample images under {SAMPLE}")
    for split in ("Training", "Test"):
        for label in fruits360_classes(classes):
            os.makedirs(os.path.join(root, split, label), exist_ok=True)
    chunk = 2_000
    jobs = [
        (root, start, min(start + chunk, first + n), seed, classes, test_share)
        for start in range(first, first + n, chunk)
    ]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_write_fruits360, jobs)
    else:
        parts = [_write_fruits360(job) for job in jobs]
    return {split: sum(part[split] for part in parts) for split in ("Training", "Test")}


def cache_root() -> str:
    """The folder of cached trees: ``$BENCH_DATA`` or ``benchmarks/data-cache``."""
    return os.path.abspath(os.environ.get(CACHE_ENV) or CACHE)


def cached_fruits360(n: int, seed: int = 0, workers: Optional[int] = None) -> str:
    """The Fruits-360-shaped tree of ``n`` images for ``seed`` in the cache (made now when it is
    missing or incomplete); its path."""
    root = os.path.join(cache_root(), f"fruits360-n{n}-seed{seed}")
    if os.path.exists(os.path.join(root, COMPLETE)):
        return root
    partial = root + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    counts = make_fruits360(partial, n, seed, workers=workers or os.cpu_count() or 1)
    with open(os.path.join(partial, COMPLETE), "w") as handle:
        json.dump({"n": n, "seed": seed, "classes": FRUITS360_CLASSES, **counts}, handle)
    os.rename(partial, root)
    return root


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
    parser.add_argument(
        "--fruits360",
        action="store_true",
        help="the Fruits-360-shaped set (155 classes); ROOT 'cache': in the cache",
    )
    args = parser.parse_args()
    if args.fruits360 and args.root == "cache":
        print(cached_fruits360(args.n, args.seed))
    elif args.fruits360:
        print(make_fruits360(args.root, args.n, args.seed, workers=os.cpu_count() or 1))
    else:
        print(make_dataset(args.root, args.n, args.seed))


if __name__ == "__main__":
    main()
