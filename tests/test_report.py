"""report.html of a run: what it shows, that it is self-contained, and that a browser renders it.

The report is written for the shared ``pipeline_run`` (3 classes, decode edge cases, a stray
image, a non-ASCII class only in Training), so the failures table has real reasons in it.
The browser test loads the page in headless Chromium (Debian package ``chromium``) and checks,
in the browser, that every image decoded; it is skipped only where Chromium is not installed.
"""

import html
import json
import os
import re
import types

import nbformat
import numpy as np
import pandas as pd
import pytest
from browser import CHROMIUM, measure_page

from helpers import class_summary, classify, plots, report, report_html, report_page, samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPORT_FIGURES = (
    report_page.CLASS_COUNTS_PLOT,
    report_page.SAMPLE_GRID_PLOT,
    report_page.SCATTER_PLOT,
    report_page.TIMINGS_PLOT,
    classify.CONFUSION_PLOT,
    report_page.HISTORY_PLOT,
)


@pytest.fixture(scope="module")
def report_run(pipeline_run):
    result = classify.evaluate_run(pipeline_run)
    location = report.write_report(pipeline_run, result)
    with open(location, encoding="utf-8") as handle:
        page = handle.read()
    return pipeline_run, result, location, page


def test_report_is_written_next_to_the_outputs(report_run):
    run, _, location, page = report_run
    assert location == os.path.join(run.config.output_path, report.REPORT_HTML)
    with open(run.location(report.REPORT_HTML), encoding="utf-8") as handle:
        assert handle.read() == page  # the run's own copy and the latest run's are one page
    for name in REPORT_FIGURES:
        with open(run.location(name), "rb") as handle:
            assert handle.read(8) == PNG_MAGIC, name
    assert run.seconds["report"] > 0


def test_report_shows_data_failures_figures_classifier_timings_parameters(
    report_run, small_dataset
):
    run, result, _, page = report_run
    manifest = run.manifest
    headings = (
        "1. PCA of the MobileNetV2 features",
        "2. Are the features useful?",
        "3. The data",
        "4. Sample images",
        "5. Time per stage",
        "6. Parameters and versions",
        "7. Outputs",
        "8. Run history",
    )
    positions = [page.index(heading) for heading in headings]
    assert positions == sorted(positions)  # in this order: results first, then the details
    # data summary: images per class and split, with the non-ASCII class and the totals
    for label in ("Pêche de vigne été", "all classes", "Training", "Test"):
        assert html.escape(label, quote=False) in page, label
    assert f"<strong>{manifest['images_total']}</strong> images" in page
    # failures with their reasons
    assert f"Failed images: {manifest['images_failed']}" in page and manifest["images_failed"] > 0
    for reason in set(run.failed_images()["reason"]):
        assert html.escape(reason, quote=False) in page, reason
    # figures: variance (first), scatter, confusion matrix, class counts, sample grid, timings,
    # history
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 7
    # few classes: the whole table, each class a bar, the confusion matrix; nothing folded
    assert "<details>" not in page and "images per class: min" not in page
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
    assert len(alts) == 7
    assert alts[0].startswith(f"Explained variance of the PCA: k = {manifest['k']} components")
    assert alts[1].startswith(f"Scatter of {manifest['images_featurized']} images")
    assert alts[2].startswith(f"Confusion matrix of {len(result.labels)} classes")
    assert alts[3].startswith(f"Bar chart of the images of each of {len(result.labels)} classes")
    assert alts[4].startswith("Sample images of")
    assert alts[5].startswith("Bar chart of the wall-clock seconds")
    assert alts[6].startswith("Run history")
    # classifier
    assert f"Test accuracy {100 * result.accuracy:.1f}%" in page
    # timings per stage, parameters and versions from the manifest
    for stage in ("list", "featurize", "pca_fit", "classify"):
        assert f"<td>{stage}</td>" in page, stage
    assert (
        "<td>variance_target</td>" in page
        and f"<td>{manifest['parameters']['variance_target']}</td>" in page
    )
    assert f"<td>{manifest['versions']['pyspark']}</td>" in page
    assert manifest["run_id"] in page
    # which kernels TensorFlow used, driver and executors, in one line
    line = manifest["tensorflow"]["summary"]
    assert re.match(r"(on|off|mixed) \(driver [^;]+; executors .+ x\d+\)$", line), line
    assert "<td>TensorFlow oneDNN</td>" in page and f"<td>{html.escape(line)}</td>" in page


def test_report_has_no_code_and_fetches_nothing(report_run):
    _, _, _, page = report_run
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page
    assert "write_report" not in page and 'class="highlight' not in page  # no code cell input
    references = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert references
    assert all(ref.startswith(("data:", "#")) for ref in references), [
        ref[:60] for ref in references if not ref.startswith(("data:", "#"))
    ]
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page)


def test_report_needs_the_manifest():
    with pytest.raises(ValueError, match="write_manifest"):
        report.write_report(types.SimpleNamespace(manifest={}))


def test_report_notebook_caps_failures_and_says_why_a_classifier_was_skipped():
    failures = pd.DataFrame(
        {
            "path": [f"/data/x/{i}.jpg" for i in range(60)],
            "reason": ["cannot identify image file"] * 60,
        }
    )
    counts = pd.DataFrame({"split": ["Training"], "label": ["Kiwi"], "images": [3]})
    manifest = {
        "run_id": "r1",
        "images_total": 63,
        "images_featurized": 3,
        "images_failed": 60,
        "k": 2,
        "explained_variance_kept": 0.97,
        "seconds": {"featurize": 2.0, "list": 1.0},
        "parameters": {"k": None, "output_path": "/out"},
        "versions": {"numpy": "2"},
    }
    skipped = classify.Classification(labels=["Kiwi"], skipped="no images in a Test split")
    notebook = report_page.report_notebook(manifest, counts, failures, {}, skipped)
    page = report_html.export_html(notebook)
    assert (
        page.count("cannot identify image file") == report_page.MAX_FAILURES_LISTED + 1
    )  # + summary
    assert "10 more in" in page
    assert "Classifier skipped: no images in a Test split" in page
    assert "<td>None</td>" in page  # k = None shown as such, not as an empty cell
    assert list(report_page.ordered_seconds(manifest["seconds"])) == ["list", "featurize"]


def test_command_line_prints_summary_and_report_and_exports_a_notebook(
    report_run, tmp_path, capsys
):
    run, _, location, _ = report_run
    executed = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# A headless run"),
            nbformat.v4.new_code_cell(
                "secret_code_marker = 42\nprint('visible output')",
                outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="visible output\n"),
                    nbformat.v4.new_output(
                        "stream", name="stderr", text="WARN noisy_spark_warning\n"
                    ),
                ],
            ),
        ]
    )
    path = tmp_path / "executed.ipynb"
    nbformat.write(executed, str(path))
    assert report.main([run.config.output_path, "--notebook", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"report:             {location}" in out and "k (PCA components)" in out
    exported = (tmp_path / "executed.html").read_text(encoding="utf-8")
    assert "visible output" in exported and "A headless run" in exported
    assert "secret_code_marker" not in exported and "<script" not in exported
    assert "noisy_spark_warning" not in exported


def test_command_line_fails_without_a_report(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "images_total": 1,
                "images_featurized": 1,
                "images_failed": 0,
                "k": 1,
                "explained_variance_kept": 1.0,
                "parameters": {"output_path": str(tmp_path)},
            }
        )
    )
    assert report.main([str(tmp_path)]) == 1
    assert "no report.html" in capsys.readouterr().err


def test_figures_for_many_classes_stay_drawable():
    labels = [f"class {i}" for i in range(40)]
    confusion = np.eye(40, dtype=int) * 5
    assert plots.figure_png(plots.confusion_matrix_figure(confusion, labels, 1.0))[:8] == PNG_MAGIC
    timings = plots.timings_figure({"list": 1.0, "featurize": 20.0, "pca_fit": 3.5})
    assert plots.figure_png(timings)[:8] == PNG_MAGIC
    # 40 classes in a scatter: tab20 would repeat colours, so no legend, and the title says so.
    rng = np.random.default_rng(0)
    points = pd.DataFrame(
        {
            "label": np.repeat(labels, 3),
            "split": "Training",
            "pc_1": rng.normal(size=120),
            "pc_2": rng.normal(size=120),
        }
    )
    scatter = plots.scatter_figure(points)
    assert scatter.axes[0].get_legend() is None
    assert "40 classes: colours repeat" in scatter.axes[0].get_title()
    few = plots.scatter_figure(points[points.label.isin(labels[:5])])
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == labels[:5]


def test_sample_grid_shows_at_most_max_classes_and_says_how_many_there_are(pipeline_run):
    classes = pipeline_run.class_counts()["label"].nunique()
    assert classes > 3
    figure = pipeline_run.sample_images(per_class=2, max_classes=3)
    rows = [text.get_text() for axis in figure.axes for text in axis.texts]  # a class per row
    assert len(rows) == 3 and set(rows) <= set(pipeline_run.class_counts()["label"])
    assert f"(3 of {classes} classes)" in figure._suptitle.get_text()  # noqa: SLF001
    again = samples.sample_grid(  # drawn anew: seeded, so the same classes and images
        pipeline_run.spark,
        pipeline_run.features.select("path", "label"),
        pipeline_run.config.seed,
        per_class=2,
        max_classes=3,
    )
    assert [t.get_text() for a in figure.axes for t in a.texts] == [
        t.get_text() for a in again.axes for t in a.texts
    ]
    everything = pipeline_run.sample_images(per_class=1)
    assert "classes)" not in everything._suptitle.get_text()  # noqa: SLF001


# -- in a real browser ---------------------------------------------------------------------

#: A test page (never part of the report, which has no script) served from the same origin:
#: it fetches report.html, parses it, loads every image source the page holds into the browser's
#: image decoder, and writes what the browser made of each one.
WRAPPER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>report check</title></head>
<body><pre id="result">pending</pre>
<script>
fetch("report.html").then(function (response) { return response.text(); }).then(function (text) {
  var doc = new DOMParser().parseFromString(text, "text/html");
  var sources = Array.prototype.map.call(doc.images, function (img) { return img.getAttribute("src"); });
  return Promise.all(sources.map(function (src) {
    return new Promise(function (resolve) {
      var image = new Image();
      var dataUri = src.indexOf("data:image/png;base64,") === 0;
      image.onload = function () {
        resolve({decoded: true, width: image.naturalWidth, height: image.naturalHeight, data_uri: dataUri});
      };
      image.onerror = function () { resolve({decoded: false, width: 0, height: 0, data_uri: dataUri}); };
      image.src = src;
    });
  })).then(function (images) {
    document.getElementById("result").textContent = JSON.stringify(
      {title: doc.title, scripts: doc.scripts.length, images: images});
  });
});
</script></body></html>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_run, tmp_path):
    _, _, location, page = report_run
    seen = measure_page(location, WRAPPER, tmp_path)
    assert seen["title"].startswith("Fruits! run report") and seen["scripts"] == 0
    assert len(seen["images"]) == page.count("<img ") == 7
    for image in seen["images"]:
        assert image["decoded"] and image["data_uri"], image
        assert image["width"] > 100 and image["height"] > 100, image


def test_class_summary_lists_few_classes_and_summarises_many():
    def counts(classes):
        rows = [("Training", f"class {i:03d}", 10 + i) for i in range(classes)]
        return pd.DataFrame(
            rows + [("Test", f"class {i:03d}", 2) for i in range(classes)],
            columns=["split", "label", "images"],
        )

    few = class_summary.class_summary(counts(plots.MANY_CLASSES))
    assert (
        not few.many and "class 019" in few._repr_html_() and "<details>" not in few._repr_html_()
    )
    many = class_summary.class_summary(
        counts(plots.MANY_CLASSES + 2)
    )  # 22 classes: 12 .. 33 images
    assert many.many and many.classes == 22
    assert many.statistics["all splits"].tolist() == [22, sum(range(12, 34)), 12, 22.5, 33]
    assert list(many.smallest.index) == [f"class {i:03d}" for i in range(5)]
    assert list(many.largest.index) == [f"class {i:03d}" for i in range(21, 16, -1)]
    shown = many._repr_html_()
    assert "min 12, median 22.5, max 33" in shown and shown.count("<details>") == 1
    assert many.text().startswith(
        "22 classes, 495 images; images per class (all splits): "
        "min 12, median 22.5, max 33; smallest: class 000 (12)"
    )
