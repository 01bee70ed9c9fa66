"""Generated test inputs: good and bad image files, made on the fly (no binary blobs in git).

``write_edge_cases(folder)`` writes one file per case under ``folder/<Split>/<Class>/`` and
returns what the chain must do with each: ``"ok"`` (featurized) or a fragment of the reason
it must be listed under in ``failed/``.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from typing import Dict

import numpy as np
from PIL import Image

PHOTOS = os.path.join(os.path.dirname(__file__), os.pardir, "data", "photos")


def photo(name: str = "orange.jpg", size: int = 100) -> Image.Image:
    """A real fruit photo from ``data/photos``, resized."""
    with Image.open(os.path.join(PHOTOS, name)) as image:
        return image.convert("RGB").resize((size, size), Image.BILINEAR)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upright_image() -> Image.Image:
    """A 100x50 image, the way :func:`exif_rotated_jpeg` must be seen once its EXIF is applied."""
    return photo("apple.jpg").resize((100, 50))


def exif_rotated_jpeg() -> bytes:
    """:func:`upright_image` stored sideways (50x100) with EXIF orientation 6 (rotate 90 CW)."""
    sideways = upright_image().transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(sideways, exif=exif.tobytes())


def bomb_png(side: int = 20000) -> bytes:
    """A tiny-on-disk PNG claiming ``side x side`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=1)
def edge_case_files() -> Dict[str, bytes]:
    """File name -> content for every decode edge case (built once per test session)."""
    rgb = photo()
    gray = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 128))
    sixteen_bit = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # mode I;16
    good_jpeg = jpeg_bytes(rgb)
    return {
        "grayscale.jpg": jpeg_bytes(gray),
        "rgba.png": png_bytes(rgba),
        "sixteen_bit.png": png_bytes(sixteen_bit),
        "cmyk.jpg": jpeg_bytes(rgb.convert("CMYK")),
        "exif_rotated.jpg": exif_rotated_jpeg(),
        "upper_case.JPG": good_jpeg,
        "mixed_case.Jpeg": good_jpeg,
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 3],
        "zero_bytes.jpg": b"",
        "text.jpg": b"this is not an image, just text named .jpg\n",
        "bomb.png": bomb_png(),
    }


#: What the chain must do with each edge case: "ok" or a fragment of the failure reason.
EXPECTED = {
    "grayscale.jpg": "ok",
    "rgba.png": "ok",
    "sixteen_bit.png": "ok",
    "cmyk.jpg": "ok",
    "exif_rotated.jpg": "ok",
    "upper_case.JPG": "ok",
    "mixed_case.Jpeg": "ok",
    "truncated.jpg": "corrupt",
    "zero_bytes.jpg": "empty",
    "text.jpg": "not an image",
    "bomb.png": "bomb",
}


def write_edge_cases(
    folder: str, split: str = "Training", label: str = "Edge cases"
) -> Dict[str, str]:
    """Write the edge cases into ``folder/split/label/``; return path -> expected outcome."""
    target = os.path.join(folder, split, label)
    os.makedirs(target, exist_ok=True)
    expected = {}
    for name, content in edge_case_files().items():
        path = os.path.join(target, name)
        with open(path, "wb") as handle:
            handle.write(content)
        expected[path] = EXPECTED[name]
    return expected


SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "data", "sample")


def write_many_classes(
    folder: str, classes: int, train: int, test: int, seed: int = 0
) -> Dict[str, Dict[str, int]]:
    """``classes`` classes of 100x100 JPEGs under ``folder/<Split>/<Class>/``, Fruits-360 style.

    Class ``i`` is one photo of the bundled sample's class ``i % 6`` with its hue turned by a
    step of its own (``i // 6``), so classes from one fruit differ by colour; each image is
    that photo rotated and shifted at random. Every fourth class (``i % 4 == 0``) has one
    Training image more than ``train``, so images per class are not all equal. Returns the
    images written per split and class.
    """
    rng = np.random.default_rng(seed)
    fruits = sorted(os.listdir(os.path.join(SAMPLE, "Training")))
    written: Dict[str, Dict[str, int]] = {"Training": {}, "Test": {}}
    steps = -(-classes // len(fruits))  # hue steps needed for every class to differ
    for index in range(classes):
        fruit = fruits[index % len(fruits)]
        step = index // len(fruits)
        label = f"{fruit} {step + 1:02d}"
        source = os.path.join(
            SAMPLE,
            "Training",
            fruit,
            sorted(os.listdir(os.path.join(SAMPLE, "Training", fruit)))[0],
        )
        with Image.open(source) as opened:
            hsv = np.asarray(opened.convert("RGB").resize((100, 100)).convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + step * 256 // steps) % 256
        base = Image.fromarray(hsv, "HSV").convert("RGB")
        for split, count in (("Training", train + (index % 4 == 0)), ("Test", test)):
            target = os.path.join(folder, split, label)
            os.makedirs(target, exist_ok=True)
            for number in range(count):
                turned = base.rotate(float(rng.uniform(0, 360)), fillcolor=(255, 255, 255))
                with open(os.path.join(target, f"{number}_100.jpg"), "wb") as handle:
                    handle.write(jpeg_bytes(turned))
            written[split][label] = count
    return written
