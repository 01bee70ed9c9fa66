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
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


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


def write_edge_cases(folder: str, split: str = "Training", label: str = "Edge cases") -> Dict[str, str]:
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
