"""Images: every decode edge case is pixels of the right shape or a readable error; every listed
file gets the label and split the chain gives it (real Spark)."""

import numpy as np
import pytest
from corpus import EXPECTED, edge_case_files, jpeg_bytes, photo, upright_image

from helpers import storage
from helpers.images import (
    ImageDecodeError,
    decode_batch,
    decode_image,
    is_image_path,
    label_columns,
)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_edge_case_decodes_or_fails_with_reason(name):
    content = edge_case_files()[name]
    if EXPECTED[name] == "ok":
        pixels = decode_image(content, 64)
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
        assert pixels.std() > 5, "decoded to a flat image"
    else:
        with pytest.raises(ImageDecodeError, match=EXPECTED[name]):
            decode_image(content, 64)


def test_grayscale_and_16_bit_decode_to_the_same_gray_pixels():
    files = edge_case_files()
    gray8 = decode_image(files["grayscale.jpg"], 100).astype(int)
    gray16 = decode_image(files["sixteen_bit.png"], 100).astype(int)
    assert np.all(gray8[..., 0] == gray8[..., 1])  # gray replicated into R, G, B
    assert np.abs(gray8 - gray16).mean() < 3  # 16-bit range mapped onto 8 bits, not clipped


def test_exif_orientation_is_applied():
    rotated = decode_image(edge_case_files()["exif_rotated.jpg"], 64).astype(int)
    upright = decode_image(jpeg_bytes(upright_image()), 64).astype(int)
    sideways = np.rot90(upright)  # what ignoring the EXIF tag would give, roughly
    assert np.abs(rotated - upright).mean() < 8
    assert np.abs(rotated - upright).mean() < np.abs(rotated - sideways).mean() / 2


def test_transparency_is_composited_on_white():
    rgba = decode_image(edge_case_files()["rgba.png"], 100).astype(int)
    opaque = decode_image(jpeg_bytes(photo()), 100).astype(int)
    assert rgba.mean() > opaque.mean() + 20  # half-transparent over white is lighter


def test_resize_is_bilinear_to_the_requested_size():
    content = jpeg_bytes(photo(size=100))
    for size in (32, 100, 224):
        assert decode_image(content, size).shape == (size, size, 3)


def test_decode_batch_keeps_order_and_reports_each_failure():
    files = edge_case_files()
    pixels, errors = decode_batch([files["cmyk.jpg"], b"", files["rgba.png"], None], 32)
    assert pixels.shape == (2, 32, 32, 3)
    assert errors[0] is None and errors[2] is None
    assert "empty" in errors[1] and "empty" in errors[3]


def test_image_extensions_in_any_letter_case():
    assert is_image_path("a/b/x.JPG") and is_image_path("x.jpeg") and is_image_path("y.Png")
    assert not is_image_path("notes.txt") and not is_image_path("x.jpg.bak")


#: Files under the listed folder -> (label, split) the chain gives them.
LAYOUT = {
    "Training/Apple Red 2/0_100.jpg": ("Apple Red 2", "Training"),
    "Test/Kiwi/1_100.jpg": ("Kiwi", "Test"),
    "Test/Pear 3/r2_100.jpg": ("Pear 3", "Test"),
    "Kiwi/2_100.jpg": ("Kiwi", None),  # class folders without a split folder
    "Validation/Fig/3_100.jpg": ("Fig", None),  # a split folder the chain does not know
    "more/Training/Lime/4_100.jpg": ("Lime", "Training"),  # deeper: the last two folders count
    "Training/5_100.jpg": ("Training", None),  # an image directly in a split folder
    "6_100.jpg": (None, None),  # an image directly in the listed folder: no class
}


def test_label_columns_name_class_and_split_from_the_spark_path(spark, tmp_path):
    root = tmp_path / "fruits 360 v2"  # spaces and digits in the listed folder's name too
    for name in LAYOUT:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded here")
    listed = storage.qualified(spark, str(root)).rstrip("/")
    files = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(listed)
    rows = files.select("path", *label_columns(listed)).collect()
    found = {row.path[len(listed) + 1 :]: (row.label, row.split) for row in rows}
    assert found == LAYOUT
