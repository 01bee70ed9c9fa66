"""Images: decoding encoded bytes into model-ready pixels, and naming what each file is.

Owns the preprocessing contract shared by the notebook, the Spark UDF and the tests:
decode with Pillow, apply the EXIF orientation, convert to RGB, resize to a square with
bilinear filtering. Bad input raises :class:`ImageDecodeError` with a readable reason, so the
caller can record the file and go on; nothing here ever lets a bad file crash a job.
"""

from __future__ import annotations

import io
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps
from pyspark.sql import Column
from pyspark.sql import functions as F

from helpers.config import IMAGE_EXTENSIONS

#: Pillow's decompression-bomb guard, made explicit: images above this many pixels are refused.
MAX_IMAGE_PIXELS = 50_000_000

#: Split folder names recognised as the grandparent of an image (Fruits-360 layout): the
#: classifier trains on the first and evaluates on the second.
TRAIN_SPLIT = "Training"
TEST_SPLIT = "Test"
KNOWN_SPLITS = (TRAIN_SPLIT, TEST_SPLIT)


class ImageDecodeError(ValueError):
    """An input file could not be turned into pixels; the message says why."""


def decode_image(content: Optional[bytes], image_size: int) -> np.ndarray:
    """Decode encoded image bytes into a ``(image_size, image_size, 3)`` uint8 RGB array.

    Applies the EXIF orientation, converts any mode (grayscale, palette, RGBA, CMYK, 16-bit)
    to RGB (alpha is composited on white) and resizes with bilinear filtering.

    Raises:
        ImageDecodeError: empty content, not an image, truncated data, or too many pixels.
    """
    if not content:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(
                        f"too many pixels ({width}x{height} > {MAX_IMAGE_PIXELS}): "
                        "refused as a possible decompression bomb"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"refused as a possible decompression bomb: {error}") from None
    except Image.DecompressionBombWarning as error:
        raise ImageDecodeError(f"refused as a possible decompression bomb: {error}") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt image data: {error}") from None
    resized = rgb.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: map the 16-bit range onto 8 bits.
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if array.size and array.max() > 255 else 1.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_batch(contents: Sequence[Optional[bytes]], image_size: int) -> Tuple[np.ndarray, list]:
    """Decode many images; return ``(pixels, errors)``.

    ``pixels`` is ``(n_ok, image_size, image_size, 3)`` uint8 for the images that decoded, in
    order; ``errors`` has one entry per input: ``None`` when it decoded, else the reason.
    """
    arrays = []
    errors: list = []
    for content in contents:
        try:
            arrays.append(decode_image(content, image_size))
            errors.append(None)
        except ImageDecodeError as error:
            errors.append(str(error))
    if arrays:
        pixels = np.stack(arrays)
    else:
        pixels = np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    return pixels, errors


def is_image_path(path: str) -> bool:
    """True when ``path`` ends with a readable image extension, in any letter case."""
    return path.lower().endswith(IMAGE_EXTENSIONS)


def label_columns(root: str) -> Tuple[Column, Column]:
    """Spark columns ``label`` and ``split`` of the files listed under ``root``.

    They are computed from the ``path`` column, as Spark's ``binaryFile`` source writes it;
    ``root`` is the listed folder, qualified the same way (``file:/data``, ``s3a://b/p``)
    without a trailing ``/``. ``label`` is the folder holding the file (``None`` for a file
    directly in ``root``); ``split`` the folder above it when its name is in
    :data:`KNOWN_SPLITS`, else ``None`` (no split folder, or another name).
    """
    parts = F.split(F.expr(f"substring(path, {len(root) + 2})"), "/")
    label = F.when(F.size(parts) >= 2, F.element_at(parts, -2))
    split = F.when(
        (F.size(parts) >= 3) & F.element_at(parts, -3).isin(*KNOWN_SPLITS),
        F.element_at(parts, -3),
    )
    return label.alias("label"), split.alias("split")
