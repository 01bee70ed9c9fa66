"""The Fruits-360-shaped benchmark data (benchmarks/data.py): seeded, extendable, cached once."""

import os

from benchmarks import data


def tree(root):
    return {os.path.relpath(path, root): open(path, "rb").read() for path in data.image_files(root)}


def test_fruits360_tree_is_seeded_extendable_and_named_like_fruits360(tmp_path):
    names = data.fruits360_classes()
    assert len(names) == len(set(names)) == data.FRUITS360_CLASSES == 155
    assert {"Apple Red 1", "Cherry Wax Black 2", "Pear 3"} <= set(names)
    counts = data.make_fruits360(str(tmp_path / "a"), 60, seed=5)
    assert counts["Training"] + counts["Test"] == 60 and counts["Test"] > 0
    first = tree(str(tmp_path / "a"))
    assert len(first) == 60
    assert {path.split(os.sep)[0] for path in first} == {"Training", "Test"}
    assert {path.split(os.sep)[1] for path in first} <= set(names)
    # the same seed: the same files; 20 more images on top: the tree of 80, in 2 processes
    data.make_fruits360(str(tmp_path / "b"), 80, seed=5, workers=2)
    data.make_fruits360(str(tmp_path / "a"), 20, seed=5, first=60)
    assert tree(str(tmp_path / "a")) == tree(str(tmp_path / "b"))
    data.make_fruits360(str(tmp_path / "c"), 60, seed=6)
    assert tree(str(tmp_path / "c")) != first


def test_cached_tree_is_made_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    root = data.cached_fruits360(30, seed=1, workers=1)
    assert root == str(tmp_path / "fruits360-n30-seed1")
    assert os.path.exists(os.path.join(root, data.COMPLETE)) and len(data.image_files(root)) == 30
    marker = os.path.join(root, "Training", "kept.jpg")
    open(marker, "wb").close()
    assert data.cached_fruits360(30, seed=1) == root and os.path.exists(marker)  # reused
    os.remove(os.path.join(root, data.COMPLETE))  # incomplete: made again
    assert data.cached_fruits360(30, seed=1, workers=1) == root and not os.path.exists(marker)
