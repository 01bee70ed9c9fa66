"""Tests for scripts/make_sample.py and the committed Fruits-360-like sample in data/sample/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from PIL import Image

from helpers.images import KNOWN_SPLITS, TEST_SPLIT, TRAIN_SPLIT

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "make_sample.py"
PHOTOS = REPO_ROOT / "data" / "photos"
COMMITTED = REPO_ROOT / "data" / "sample"
MIN_PER_CLASS = {TRAIN_SPLIT: 30, TEST_SPLIT: 10}
FILE_NAME = re.compile(r"^\d+_100\.jpg$")


def run_script(out: Path) -> str:
    """Run the script with its default settings (as committed) into ``out``; return stdout."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--photos", str(PHOTOS), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout


def tree_bytes(root: Path) -> Dict[str, bytes]:
    """Every file under ``root`` by relative POSIX path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    first = tmp_path_factory.mktemp("sample_a") / "sample"
    second = tmp_path_factory.mktemp("sample_b") / "sample"
    stdout = run_script(first)
    assert "Training:" in stdout and "Test:" in stdout
    # Rebuilding over a previous output must work too: the script deletes it first, so this
    # stale file must be gone afterwards (test_deterministic compares the full trees).
    stale = second / "Training" / "Stale Class" / "0_100.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    run_script(second)
    assert not stale.parent.exists()
    return {"first": first, "second": second}


def test_layout_and_images(runs: Dict[str, Path]) -> None:
    out = runs["first"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "Test", "Training"]
    classes = {split: sorted(p.name for p in (out / split).iterdir()) for split in KNOWN_SPLITS}
    assert classes["Training"] == classes["Test"]
    assert len(classes["Training"]) >= 6
    for split in KNOWN_SPLITS:
        for name in classes[split]:
            folder = out / split / name
            assert folder.is_dir()
            files = sorted(folder.iterdir())
            assert len(files) >= MIN_PER_CLASS[split], (split, name)
            for path in files:
                assert FILE_NAME.match(path.name), path
                with Image.open(path) as im:
                    assert im.format == "JPEG", path
                    assert im.mode == "RGB", path
                    assert im.size == (100, 100), path
                    # Fruits-360-like: a light (white) background at the corners.
                    corner = im.getpixel((0, 0))
                    assert min(corner) >= 200, (path, corner)


def test_readme(runs: Dict[str, Path]) -> None:
    text = (runs["first"] / "README.md").read_text(encoding="utf-8")
    assert "--seed 360" in text
    assert "data/photos/README.md" in text and "Apache 2.0" in text
    for name in (p.name for p in (runs["first"] / "Training").iterdir()):
        assert f"| {name} |" in text


def test_test_views_differ_from_training(runs: Dict[str, Path]) -> None:
    out = runs["first"]
    training = {b for b in tree_bytes(out / "Training").values()}
    assert not training & set(tree_bytes(out / "Test").values())


def test_deterministic(runs: Dict[str, Path]) -> None:
    assert tree_bytes(runs["first"]) == tree_bytes(runs["second"])


def test_committed_sample_matches_script(runs: Dict[str, Path]) -> None:
    assert COMMITTED.is_dir(), "data/sample/ is missing: run python scripts/make_sample.py"
    fresh = tree_bytes(runs["first"])
    committed = tree_bytes(COMMITTED)
    assert sorted(committed) == sorted(fresh), "file lists differ"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, (
        f"data/sample/ differs from a fresh run in {len(stale)} files (e.g. {stale[:3]}): "
        "rerun python scripts/make_sample.py and commit data/sample/"
    )
