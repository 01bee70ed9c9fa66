"""Incremental runs: reused features stay in their folders, and the published run is the one a
full run would publish (same images, same vectors, PCA on all), with only new images in the CNN."""

import os
import shutil

import numpy as np
import pytest
from pyspark.sql import functions as F

from conftest import SAMPLE, copy_subset
from helpers import manifest as parts_of
from helpers.config import PipelineConfig
from helpers.manifest import PART_COLUMN, feature_parts, plan_parts, read_features
from helpers.pipeline import run_pipeline


def sample(label, number):
    return os.path.join(SAMPLE, "Training", label, f"{number}_100.jpg")


def vectors(spark, output):
    """path -> feature vector of the run published in ``output`` (all its parts)."""
    rows = read_features(spark, output).select("path", "features").collect()
    assert len(rows) == len({row.path for row in rows}), "an image has features twice"
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def run(spark, images, output, incremental=True):
    config = PipelineConfig(images, output, spark_master="local[2]", incremental=incremental)
    done = run_pipeline(config, spark)
    done.close()
    return done.manifest


@pytest.fixture(scope="module")
def incremental_nights(spark, tmp_path_factory):
    """A first run on 2 classes x (4 + 1) images, then four incremental nights on the same
    output: 1 adds 4 images; 2 changes 3 of those and adds 1 (the night-1 folder keeps one row
    in use of four: folded); 3 deletes a first-run image (its folder is filtered, not copied);
    4 adds 1 image with the part limit at 2 (folds every part but the largest). Then a full
    run of the final images into another output. Returns the images' folder, the incremental
    output, the manifests and what each night changed."""
    images = copy_subset(str(tmp_path_factory.mktemp("images")), classes=2, train=4, test=1)
    output = str(tmp_path_factory.mktemp("incremental"))
    labels = sorted(os.listdir(os.path.join(images, "Training")))
    target = lambda label, number: os.path.join(images, "Training", label, f"{number}_100.jpg")  # noqa: E731
    manifests = [run(spark, images, output)]
    snapshots = [vectors(spark, output)]
    added = [target(label, number) for label in labels for number in (20, 21)]
    for path in added:
        shutil.copy(
            sample(os.path.basename(os.path.dirname(path)), os.path.basename(path).split("_")[0]),
            path,
        )
    manifests.append(run(spark, images, output))
    snapshots.append(vectors(spark, output))
    changed = added[:3]
    for path, number in zip(changed, (25, 26, 27)):  # other photos under the same names
        shutil.copy(sample(os.path.basename(os.path.dirname(path)), number), path)
        os.utime(path, (1_700_000_000 + number, 1_700_000_000 + number))
    one_more = target(labels[0], 28)
    shutil.copy(sample(labels[0], 28), one_more)
    manifests.append(run(spark, images, output))
    snapshots.append(vectors(spark, output))
    deleted = target(
        labels[1],
        sorted(
            int(name.split("_")[0])
            for name in os.listdir(os.path.join(images, "Training", labels[1]))
        )[0],
    )
    os.remove(deleted)
    manifests.append(run(spark, images, output))
    snapshots.append(vectors(spark, output))
    last = target(labels[1], 29)
    shutil.copy(sample(labels[1], 29), last)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parts_of, "MAX_FEATURE_PARTS", 2)
        manifests.append(run(spark, images, output))
    snapshots.append(vectors(spark, output))
    full_output = str(tmp_path_factory.mktemp("full"))
    full = run(spark, images, full_output, incremental=False)
    return {
        "images": images,
        "output": output,
        "manifests": manifests,
        "snapshots": snapshots,
        "full": full,
        "full_vectors": vectors(spark, full_output),
        "changes": {
            "added": added,
            "changed": changed,
            "one_more": one_more,
            "deleted": deleted,
            "last": last,
        },
    }


def local(path):
    return path.split(":", 1)[-1]


def test_only_new_and_changed_images_go_through_the_cnn(incremental_nights):
    through = [manifest["images_through_model"] for manifest in incremental_nights["manifests"]]
    assert through == [10, 4, 4, 0, 1]
    reused = [manifest["images_reused"] for manifest in incremental_nights["manifests"]]
    assert reused == [0, 10, 11, 14, 14]
    totals = [manifest["images_total"] for manifest in incremental_nights["manifests"]]
    assert totals == [10, 14, 15, 14, 15]


def test_the_manifest_names_the_parts_and_folds_stale_and_surplus_ones(incremental_nights):
    first, night1, night2, night3, night4 = incremental_nights["manifests"]
    folder = lambda manifest: f"{manifest['run_path']}/features"  # noqa: E731
    shapes = [
        [(part["path"], part["rows"], part["images"]) for part in feature_parts(manifest)]
        for manifest in incremental_nights["manifests"]
    ]
    assert shapes[0] == [(folder(first), 10, 10)]
    assert shapes[1] == [(folder(first), 10, 10), (folder(night1), 4, 4)]
    # Night 2: night 1's folder keeps 1 row in use of 4, so that row moves into night 2's.
    assert shapes[2] == [(folder(first), 10, 10), (folder(night2), 5, 5)]
    # Night 3: nothing new; the first folder has a deleted image's row, filtered on read.
    assert shapes[3] == [(folder(first), 10, 9), (folder(night2), 5, 5)]
    # Night 4, at most 2 parts: all but the largest fold into night 4's folder.
    assert shapes[4] == [(folder(first), 10, 9), (folder(night4), 6, 6)]
    for manifest in incremental_nights["manifests"]:
        assert manifest["outputs"]["features"] == [
            part["path"] for part in manifest["feature_parts"]
        ]
        assert manifest["images_featurized"] == sum(
            part["images"] for part in manifest["feature_parts"]
        )


def test_the_pca_reads_only_parts_without_stored_moments(incremental_nights):
    """Each run's own part gets its moments file; a part all of whose rows are in use is not
    read again: night 1 reads its 4 new vectors, night 2 its part (4 + 1 folded), night 3 the
    first part (9 of its 10 rows in use), night 4 its part (1 + 5 folded) and the first's 9."""
    manifests = incremental_nights["manifests"]
    assert [manifest["pca_vectors_read"] for manifest in manifests] == [10, 4, 5, 9, 15]
    for manifest in manifests:
        own = [part for part in manifest["feature_parts"] if manifest["run_id"] in part["path"]]
        assert [part["moments"] for part in own] == [
            f"{manifest['run_path']}/feature_moments.npz"
        ] * len(own)
    for part in manifests[-1]["feature_parts"]:  # the published run's, kept with their parts
        assert os.path.isfile(local(part["moments"]))


def test_each_night_publishes_the_images_on_disk_and_keeps_unchanged_vectors(incremental_nights):
    snapshots = incremental_nights["snapshots"]
    changes = incremental_nights["changes"]
    changed = set(changes["changed"])
    for before, after in zip(snapshots, snapshots[1:]):
        for path, vector in after.items():
            if path in before and local(path) not in changed:
                assert np.array_equal(before[path], vector), f"{path} changed without reason"
    assert {local(path) for path in snapshots[3]} == {local(path) for path in snapshots[2]} - {
        changes["deleted"]
    }
    for path in changed:
        assert not np.array_equal(snapshots[1]["file:" + path], snapshots[2]["file:" + path])


def test_the_last_night_publishes_what_a_full_run_would(spark, incremental_nights):
    incremental, full = incremental_nights["snapshots"][-1], incremental_nights["full_vectors"]
    assert incremental.keys() == full.keys()
    for path in full:  # the CNN's last bits depend on the batch an image was in (oneDNN)
        np.testing.assert_allclose(incremental[path], full[path], rtol=0, atol=1e-4, err_msg=path)
    last, whole = incremental_nights["manifests"][-1], incremental_nights["full"]
    assert last["k"] == whole["k"]
    assert last["images_featurized"] == whole["images_featurized"]
    np.testing.assert_allclose(
        last["explained_variance"], whole["explained_variance"], rtol=1e-4, atol=1e-7
    )
    pca = spark.read.parquet(last["outputs"]["pca"])
    assert pca.count() == whole["images_featurized"]


def test_the_inventory_names_the_part_of_every_featurized_image(spark, incremental_nights):
    last = incremental_nights["manifests"][-1]
    inventory = spark.read.parquet(last["outputs"]["inventory"]).toPandas()
    assert set(inventory[PART_COLUMN].dropna()) == set(last["outputs"]["features"])
    assert inventory["featurized"].sum() == last["images_featurized"]
    assert inventory[PART_COLUMN].notna().equals(inventory["featurized"])


def test_cleanup_keeps_every_folder_a_published_run_names(incremental_nights):
    first, night1, night2, night3, night4 = incremental_nights["manifests"]
    kept = sorted(os.listdir(os.path.join(incremental_nights["output"], "runs")))
    # night 4 (published) needs the first run's folder; night 3 (replaced, still readable)
    # needs night 2's; night 1's folder was folded into night 2's and is gone.
    assert kept == sorted([first["run_id"], night2["run_id"], night3["run_id"], night4["run_id"]])
    for manifest in (night3, night4):
        for part in manifest["outputs"]["features"]:
            assert os.path.isdir(local(part)), f"{part} deleted while a published run names it"


def test_plan_parts_keeps_live_parts_and_folds_stale_and_surplus_ones():
    parts = [
        {"path": name, "rows": rows, "images": rows}
        for name, rows in (("a", 100), ("b", 10), ("c", 10), ("d", 4))
    ]
    kept, folded = plan_parts(parts, {"a": 100, "b": 6, "c": 4, "d": 4})
    assert [part["path"] for part in kept] == ["a", "b", "d"]
    assert [(part["path"], part["images"]) for part in folded] == [("c", 4)]
    kept, folded = plan_parts(parts, {"a": 60, "b": 10, "c": 10})  # d: nothing in use, dropped
    assert [part["path"] for part in kept] == ["a", "b", "c"] and folded == []
    kept, folded = plan_parts(parts, {"a": 60, "b": 10, "c": 10}, limit=2)
    assert [part["path"] for part in kept] == ["a"]
    assert sorted(part["path"] for part in folded) == ["b", "c"]


@pytest.mark.parametrize("failed", [False, True], ids=["all-written", "one-failed"])
def test_the_inventory_gives_each_image_its_part(spark, tmp_path, failed):
    """Kept parts keep their images; images carried from a folded part and images sent to the
    CNN go to the new part if it holds them; unlabelled, empty and failed images get none."""
    listing_rows = [  # path, length, label, previous part
        ("kept", 10, "Apple", "K"),
        ("carried", 10, "Apple", "F"),
        ("sent-1", 10, "Kiwi", None),
        ("sent-2", 10, "Kiwi", None),
        ("unlabelled", 10, None, None),
        ("empty", 0, "Kiwi", None),
    ]
    seen = spark.createDataFrame(
        [(path, length, label, part) for path, length, label, part in listing_rows],
        "path string, length long, label string, part string",
    ).withColumn("modificationTime", F.current_timestamp())
    new_paths = ["carried", "sent-1"] + ([] if failed else ["sent-2"])
    new_folder = str(tmp_path / "new")
    spark.createDataFrame([(p,) for p in new_paths], "path string").write.parquet(new_folder)
    new_part = {"path": new_folder, "rows": len(new_paths), "images": len(new_paths)}
    inventory = parts_of.write_inventory(
        spark,
        seen,
        kept=[{"path": "K", "rows": 1, "images": 1}],
        folded=[{"path": "F", "rows": 3, "images": 1}],
        new_part=new_part,
        sent=2,
        carried=1,
        location=str(tmp_path / "inventory"),
    )
    got = {row.path: (row.featurized, row[PART_COLUMN]) for row in inventory.collect()}
    assert got == {
        "kept": (True, "K"),
        "carried": (True, new_folder),
        "sent-1": (True, new_folder),
        "sent-2": (False, None) if failed else (True, new_folder),
        "unlabelled": (False, None),
        "empty": (False, None),
    }
