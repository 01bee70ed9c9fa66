"""Build a small Fruits-360-like sample data set from the real fruit photos in ``data/photos/``.

Fruits-360 (Muresan & Oltean) holds 100x100 RGB JPEGs of one fruit on a white background,
filmed while the fruit turns through 360 degrees; the Test split is another recording of the
same fruits.  This script imitates that from the three OpenCV sample photos described in
``data/photos/README.md`` (Apache 2.0):

* each class is one crop box of one photo (the boxes of ``data/photos/README.md`` for the
  fruits in ``fruits.jpg``; a box around the whole fruit for ``apple.jpg`` and ``orange.jpg``);
* the crop is cut out with a soft-edged ellipse inscribed in the box (a crude stand-in for
  Fruits-360's background removal: no segmentation) and composited on a white canvas;
* view ``i`` of ``N`` turns the crop by ``360 * i / N`` degrees plus a little jitter; the Test
  angles are shifted by half a step (``360 * (i + 0.5) / N``) and use their own random
  stream, so they are never copies of Training views;
* each view gets small random changes of scale (about +-10 %), position (a few pixels),
  brightness and contrast (about +-12 %).

Output layout (like Fruits-360)::

    <out>/Training/<Class>/<n>_100.jpg
    <out>/Test/<Class>/<n>_100.jpg
    <out>/README.md

Everything is seeded (``--seed``), JPEGs are written with fixed settings and no metadata, so a
rerun with the same arguments (and the same Pillow/numpy) gives byte-identical files.  The
output directory is deleted and rebuilt on every run.

Usage::

    python scripts/make_sample.py [--photos data/photos] [--out data/sample] [--seed 360] \
        [--train-per-class 30] [--test-per-class 10]

Only Pillow, numpy and the standard library are used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from helpers.images import KNOWN_SPLITS, TEST_SPLIT, TRAIN_SPLIT

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO_ROOT / "data" / "photos"
DEFAULT_OUT = REPO_ROOT / "data" / "sample"
DEFAULT_SEED = 360

SIZE = 100  # output images are SIZE x SIZE, like Fruits-360's 100x100
FRUIT_SPAN = 86.0  # longest side of the fruit ellipse in output pixels, before scale jitter
SCALE_JITTER = 0.10  # +-10 % scale
SHIFT_PX = 3  # +-3 px position
ANGLE_JITTER = 3.0  # +-3 degrees on top of the regular 360*i/N steps
LIGHT_JITTER = 0.12  # +-12 % brightness and contrast
MASTER_SIDE = 176  # crops are downscaled once to this longest side before the per-view work
FEATHER = 0.02  # blur radius of the ellipse edge, as a fraction of the crop's longest side
JPEG_QUALITY = 90
BACKGROUND = (255, 255, 255)

Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class FruitClass:
    """One output class: a Fruits-360-style name and a crop box inside one source photo."""

    name: str
    photo: str
    box: Box  # (left, upper, right, lower), as for PIL.Image.crop


# Boxes inside fruits.jpg are those of data/photos/README.md.  apple.jpg and orange.jpg each
# show one whole fruit; their boxes only trim the background around it (checked by eye).
CLASSES: Tuple[FruitClass, ...] = (
    FruitClass("Apple Red", "apple.jpg", (36, 48, 470, 504)),
    FruitClass("Banana", "fruits.jpg", (0, 100, 78, 280)),
    FruitClass("Kiwi", "fruits.jpg", (0, 282, 106, 480)),
    FruitClass("Lemon", "fruits.jpg", (322, 252, 512, 480)),
    FruitClass("Lime", "fruits.jpg", (330, 118, 512, 262)),
    FruitClass("Orange", "orange.jpg", (30, 46, 470, 500)),
)


@dataclass(frozen=True)
class Master:
    """A class's crop, downscaled once, with its soft elliptical alpha mask."""

    rgb: np.ndarray  # float32, H x W x 3, 0..255
    mask: Image.Image  # mode "L", same size


def make_master(photo: Image.Image, box: Box) -> Master:
    """Crop ``box`` out of ``photo``, downscale it to MASTER_SIDE and build its ellipse mask."""
    crop = photo.convert("RGB").crop(box)
    w, h = crop.size
    factor = MASTER_SIDE / max(w, h)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    crop = crop.resize(size, Image.Resampling.LANCZOS)
    # Ellipse inscribed in the crop, drawn 4x supersampled, then feathered.
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    ImageDraw.Draw(big).ellipse((0, 0, big.size[0] - 1, big.size[1] - 1), fill=255)
    mask = big.resize(size, Image.Resampling.BOX)
    mask = mask.filter(ImageFilter.GaussianBlur(FEATHER * MASTER_SIDE))
    return Master(rgb=np.asarray(crop, dtype=np.float32), mask=mask)


def view_angles(count: int, split: str, rng: np.random.Generator) -> List[float]:
    """Angles of one recording: 360*i/N plus jitter; Test is offset by half a step."""
    offset = 0.0 if split == TRAIN_SPLIT else 0.5
    jitter = rng.uniform(-ANGLE_JITTER, ANGLE_JITTER, size=count)
    return [float((360.0 * (i + offset) / count + j) % 360.0) for i, j in enumerate(jitter)]


def render_view(master: Master, angle: float, rng: np.random.Generator) -> Image.Image:
    """One 100x100 view: light jitter, turn by ``angle``, scale/shift jitter, white background."""
    brightness = 1.0 + rng.uniform(-LIGHT_JITTER, LIGHT_JITTER)
    contrast = 1.0 + rng.uniform(-LIGHT_JITTER, LIGHT_JITTER)
    scale = 1.0 + rng.uniform(-SCALE_JITTER, SCALE_JITTER)
    dx, dy = (int(v) for v in rng.integers(-SHIFT_PX, SHIFT_PX + 1, size=2))

    rgb = master.rgb
    mean = rgb.reshape(-1, 3).mean(axis=0)
    lit = ((rgb - mean) * contrast + mean) * brightness
    fruit = Image.fromarray(np.clip(np.rint(lit), 0, 255).astype(np.uint8), "RGB")

    bicubic = Image.Resampling.BICUBIC
    fruit = fruit.rotate(angle, resample=bicubic, expand=True, fillcolor=BACKGROUND)
    mask = master.mask.rotate(angle, resample=bicubic, expand=True, fillcolor=0)

    factor = FRUIT_SPAN * scale / max(master.mask.size)
    size = (max(1, round(fruit.size[0] * factor)), max(1, round(fruit.size[1] * factor)))
    fruit = fruit.resize(size, Image.Resampling.LANCZOS)
    mask = mask.resize(size, Image.Resampling.LANCZOS)

    canvas = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    left = (SIZE - size[0]) // 2 + dx
    upper = (SIZE - size[1]) // 2 + dy
    canvas.paste(fruit, (left, upper), mask)
    return canvas


def class_rng(seed: int, split_index: int, class_index: int) -> np.random.Generator:
    """Independent, reproducible random stream for one (split, class) recording."""
    return np.random.default_rng([seed, split_index, class_index])


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Write a baseline JPEG with fixed settings and no metadata (byte-reproducible)."""
    image.save(path, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)


def clear_output(out: Path) -> None:
    """Delete a previous output directory, refusing anything that does not look like one."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"error: {out} exists and is not a directory")
    allowed = set(KNOWN_SPLITS) | {"README.md"}
    unexpected = sorted(p.name for p in out.iterdir() if p.name not in allowed)
    if unexpected:
        raise SystemExit(
            f"error: refusing to delete {out}: it holds {unexpected[:5]}, "
            "which this script does not write"
        )
    shutil.rmtree(out)


def readme_text(seed: int, train_per_class: int, test_per_class: int) -> str:
    """Contents of ``<out>/README.md`` (no paths or dates, so it is reproducible)."""
    lines = [
        "# Fruits-360-like sample data set",
        "",
        "A tiny synthetic stand-in for the Fruits-360 data set (100x100 RGB JPEGs of one fruit",
        "on a white background, turned through 360 degrees), for tests and demos. It is",
        "generated; do not edit by hand. Rebuild it with:",
        "",
        "```",
        f"python scripts/make_sample.py --seed {seed} --train-per-class {train_per_class} "
        f"--test-per-class {test_per_class}",
        "```",
        "",
        "(`--photos` defaults to `data/photos`, `--out` to `data/sample`.)",
        "",
        "## How it was made",
        "",
        "Each class is one crop box of one of the three real photos in `data/photos/`",
        "(`apple.jpg`, `orange.jpg`, `fruits.jpg`: OpenCV's sample images, Apache 2.0; see",
        "`data/photos/README.md` for provenance). The crop is cut out with a soft-edged",
        "ellipse inscribed in its box (no segmentation, so some of the photo's background",
        "shows at the edges) and composited on white.",
        "",
        f"- View `i` of `N` turns the crop by `360*i/N` degrees, +-{ANGLE_JITTER:g} deg jitter.",
        "- Test angles are shifted by half a step (`360*(i+0.5)/N`) and drawn from their own",
        "  random stream, like Fruits-360's separate Test recording; with the default 30",
        "  Training and 10 Test views, every Test angle lies midway between two Training ones.",
        f"- Every view also gets random scale (+-{SCALE_JITTER:.0%}), position (+-{SHIFT_PX} px),",
        f"  brightness and contrast (+-{LIGHT_JITTER:.0%}).",
        f"- JPEG quality {JPEG_QUALITY}, no metadata: the same seed ({seed}) and the same",
        "  Pillow/numpy give byte-identical files.",
        "",
        "Layout: `Training/<Class>/<n>_100.jpg` and `Test/<Class>/<n>_100.jpg`, `n` = view",
        "number.",
        "",
        "## Classes",
        "",
        "| class | source photo | crop box (left, upper, right, lower) | Training | Test |",
        "|---|---|---|---|---|",
    ]
    for cls in CLASSES:
        lines.append(
            f"| {cls.name} | `{cls.photo}` | {cls.box} | {train_per_class} | {test_per_class} |"
        )
    n = len(CLASSES)
    lines += [
        f"| **total** | | | {n * train_per_class} | {n * test_per_class} |",
        "",
    ]
    return "\n".join(lines)


def build(
    photos: Path,
    out: Path,
    seed: int = DEFAULT_SEED,
    train_per_class: int = 30,
    test_per_class: int = 10,
) -> Dict[str, int]:
    """Rebuild ``out`` from the photos in ``photos``; return the number of images per split."""
    if train_per_class < 1 or test_per_class < 1:
        raise SystemExit("error: --train-per-class and --test-per-class must be >= 1")
    sources: Dict[str, Image.Image] = {}
    for name in sorted({cls.photo for cls in CLASSES}):
        path = photos / name
        if not path.is_file():
            raise SystemExit(f"error: missing source photo {path}")
        with Image.open(path) as im:
            sources[name] = im.convert("RGB")
    masters = [make_master(sources[cls.photo], cls.box) for cls in CLASSES]

    clear_output(out)
    counts: Dict[str, int] = {}
    per_split = {TRAIN_SPLIT: train_per_class, TEST_SPLIT: test_per_class}
    for split_index, split in enumerate(KNOWN_SPLITS):
        count = per_split[split]
        for class_index, (cls, master) in enumerate(zip(CLASSES, masters)):
            rng = class_rng(seed, split_index, class_index)
            folder = out / split / cls.name
            folder.mkdir(parents=True)
            for i, angle in enumerate(view_angles(count, split, rng)):
                save_jpeg(render_view(master, angle, rng), folder / f"{i}_100.jpg")
        counts[split] = count * len(CLASSES)
    (out / "README.md").write_text(
        readme_text(seed, train_per_class, test_per_class), encoding="utf-8", newline="\n"
    )
    return counts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--photos",
        type=Path,
        default=DEFAULT_PHOTOS,
        help="folder with apple.jpg, orange.jpg, fruits.jpg (default: data/photos)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder, deleted and rebuilt (default: data/sample)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: 360)")
    parser.add_argument(
        "--train-per-class", type=int, default=30, help="Training views per class (default: 30)"
    )
    parser.add_argument(
        "--test-per-class", type=int, default=10, help="Test views per class (default: 10)"
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    counts = build(args.photos, args.out, args.seed, args.train_per_class, args.test_per_class)
    per_class = {TRAIN_SPLIT: args.train_per_class, TEST_SPLIT: args.test_per_class}
    for split in KNOWN_SPLITS:
        print(
            f"{split}: {len(CLASSES)} classes x {per_class[split]} = {counts[split]} images "
            f"of {SIZE}x{SIZE} in {args.out / split}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
