"""report.html at Fruits-360 scale stays readable: measured in headless Chromium on 150 classes.

One run of the real chain (the shared Spark session, real weights, real JPEGs) on a generated
input of 150 classes x (2 or 3 Training + 1 Test) 100x100 images (``corpus.write_many_classes``),
featurized at ``image_size=32`` to keep the CNN quick, then ``classify.evaluate_run`` and
``report.write_report``, once for the module. The page is loaded in headless Chromium (Debian
package ``chromium``) in a 1280 px wide frame, and what a reader meets is measured there: the
page height, where each section and figure is, the alt text of every image, the folded table.
The IPython display path of the notebooks (the same helpers' objects in a real IPython shell)
is checked on the same run.
"""

import html
import logging
import re

import numpy as np
import pytest
from browser import CHROMIUM, measure_page
from corpus import write_many_classes

from helpers import classify, plots, report, report_page
from helpers.config import PipelineConfig
from helpers.pipeline import run_pipeline

CLASSES, TRAIN, TEST = 150, 2, 1

#: What a person scrolls through: 12,000 CSS px is 15 screens of a 800 px high laptop window,
#: the length of a long article. On this input, measured in this frame (Dec 2026): the report
#: that listed every class (150-row table, 150-bar chart, 150x150 matrix) was 19,491 px high,
#: its variance plot 13,640 px down; the summarised one is 10,408 to 10,441 px, the variance plot 404 px.
MAX_PAGE_HEIGHT = 12_000

#: Width of the frame the page is laid out in (a laptop browser window).
FRAME_WIDTH = 1280

SECTIONS = (
    "Fruits! run report",
    "1. PCA of the MobileNetV2 features",
    "2. Are the features useful?",
    "The most confused pairs",
    "The worst classes",
    "3. The data",
    "Failed images: none",
    "4. Sample images",
    "5. Time per stage",
    "6. Parameters and versions",
    "7. Outputs",
)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def many_class_report(spark, tmp_path_factory):
    """(run, classification, page, warnings logged while the report was written, written)."""
    images = str(tmp_path_factory.mktemp("many_classes"))
    written = write_many_classes(images, CLASSES, TRAIN, TEST)
    output = str(tmp_path_factory.mktemp("many_classes_output"))
    run = run_pipeline(
        PipelineConfig(images, output, spark_master="local[2]", image_size=32), spark
    )
    result = classify.evaluate_run(run)
    records = _Records()
    logging.getLogger().addHandler(records)
    try:
        location = report.write_report(run, result)
    finally:
        logging.getLogger().removeHandler(records)
    with open(location, encoding="utf-8") as handle:
        page = handle.read()
    return run, result, location, page, records.messages, written


def per_class_totals(written):
    labels = sorted(written["Training"])
    return np.array(
        [written["Training"][label] + written["Test"].get(label, 0) for label in labels]
    )


def test_the_page_summarises_the_classes_and_keeps_the_whole_table_folded(many_class_report):
    run, _, _, page, _, written = many_class_report
    totals = per_class_totals(written)
    assert run.manifest["images_failed"] == 0 and len(totals) == CLASSES
    low, middle, high = totals.min(), np.median(totals), totals.max()
    assert (low, middle, high) == (3, 3, 4)  # the generator's every fourth class has one more
    assert (
        f"<strong>{CLASSES} classes</strong>; images per class (all splits): "
        f"<strong>min {low}, median {middle:.0f}, max {high}</strong>"
    ) in page
    assert "The 5 smallest and the 5 largest classes" in page
    folded = re.search(r"<details>(.*?)</details>", page, re.S)
    assert folded and "<details open" not in page
    for label in written["Training"]:
        assert f"<th>{html.escape(label)}</th>" in folded.group(1), label
    # the whole table is in a file too
    with open(run.location(report_page.CLASS_COUNTS_CSV), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "class,Training,Test,all splits" and len(lines) == 1 + CLASSES + 1


def test_mistakes_are_shown_as_pairs_and_worst_classes_not_as_a_matrix(many_class_report):
    run, result, _, page, _, _ = many_class_report
    pairs = result.confused_pairs()
    assert result.test_images == CLASSES * TEST and len(pairs) > 0, result.text()
    matrix = np.asarray(result.confusion)
    mistaken_cells = int(np.count_nonzero(matrix - np.diag(np.diag(matrix))))
    assert len(pairs) == min(classify.TOP_ROWS, mistaken_cells)
    assert list(pairs["images"]) == sorted(pairs["images"], reverse=True)
    assert pairs["images"].iloc[0] == (matrix - np.diag(np.diag(matrix))).max()
    section = page[page.index("The most confused pairs") : page.index("The worst classes")]
    assert "<th>true class</th>" in section and "<th>predicted class</th>" in section
    for true, predicted in zip(pairs["true class"], pairs["predicted class"]):
        assert re.search(
            rf"<td>{re.escape(html.escape(true))}</td>\s*"
            rf"<td>{re.escape(html.escape(predicted))}</td>",
            section,
        ), (true, predicted)
    assert "Rows of the matrix" not in page  # no matrix to explain
    # the whole matrix stays in files
    with open(run.location(classify.CONFUSION_CSV), encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 1 + CLASSES
    worst = result.worst_classes()
    assert list(worst["accuracy"]) == sorted(worst["accuracy"]) and (worst["accuracy"] < 1).all()


def test_every_image_has_alt_text_and_nbconvert_warns_of_none(many_class_report):
    run, result, _, page, warnings, _ = many_class_report
    assert not [message for message in warnings if "Alternative text" in message], warnings
    alts = re.findall(r"<img\b[^>]*?\balt=\"([^\"]*)\"", page)
    assert (
        len(alts) == page.count("<img ") == 6
    )  # variance, scatter, histogram, grid, timings, history
    assert alts[0] == (
        f"Explained variance of the PCA: k = {run.pca.k} components keep "
        f"{100 * run.pca.explained_variance_kept:.1f}% of the variance (target 95%); "
        f"bars per component and the cumulative line, for the first "
        f"{min(len(run.pca.explained_variance), max(2 * run.pca.k, 30))} components"
    )
    assert any(
        alt.startswith(
            f"Histogram of the number of images per class over {CLASSES} "
            f"classes: min 3, median 3, max 4"
        )
        for alt in alts
    )
    assert any(alt.startswith("Sample images of 12 of 150 classes") for alt in alts)


def test_notebook_cells_show_the_summary_and_the_pairs_through_ipython(many_class_report):
    """The notebooks' cells ``run.class_summary()`` and ``classification.confusion_figure()``,
    formatted by a real IPython shell as Jupyter shows them."""
    from IPython.core.interactiveshell import InteractiveShell

    run, result, _, _, _, _ = many_class_report
    shell = InteractiveShell.instance()
    assert plots.show_figures_in_ipython()
    data, _ = shell.display_formatter.format(run.class_summary())
    assert "<details>" in data["text/html"] and "min 3, median 3, max 4" in data["text/html"]
    assert data["text/plain"].startswith(
        f"{CLASSES} classes, {run.manifest['images_total']} images"
    )
    figure = result.confusion_figure()
    data, metadata = shell.display_formatter.format(figure)
    assert data["image/png"] and metadata["image/png"]["alt"] == data["text/plain"]
    assert data["text/plain"].startswith(
        f"Bar charts of the {len(result.confused_pairs())} most confused class pairs"
    )


# -- in a real browser ---------------------------------------------------------------------
#: A test page (never part of the report) served from the report's origin: it lays report.html
#: out in a FRAME_WIDTH frame and writes what a reader meets there.
WRAPPER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>report height</title></head>
<body style="margin:0"><pre id="result">pending</pre>
<iframe id="report" src="report.html" style="width:%(width)dpx;height:900px;border:0"></iframe>
<script>
var frame = document.getElementById("report");
frame.onload = function () {  // after every image of the page (data: URIs) has loaded
  var doc = frame.contentDocument;
  var top = function (element) { return element.getBoundingClientRect().top; };
  document.getElementById("result").textContent = JSON.stringify({
    height: doc.documentElement.scrollHeight,
    headings: Array.prototype.map.call(doc.querySelectorAll("h1, h2, h3"), function (h) {
      return {text: h.textContent.replace("\u00b6", "").trim(), top: top(h)}; }),
    images: Array.prototype.map.call(doc.images, function (img) {
      return {alt: img.getAttribute("alt"), top: top(img), decoded: img.naturalWidth > 0}; }),
    details: Array.prototype.map.call(doc.querySelectorAll("details"), function (d) {
      return {open: d.open, height: d.getBoundingClientRect().height}; })
  });
};
</script></body></html>
""" % {"width": FRAME_WIDTH}


def measure_in_chromium(page_path, tmp_path):
    """What headless Chromium made of the page at ``page_path`` (see :data:`WRAPPER`)."""
    return measure_page(
        page_path, WRAPPER, tmp_path, f"--window-size={FRAME_WIDTH + 40},900", budget_ms=20000
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_page_height_sections_and_order_in_headless_chromium(many_class_report, tmp_path):
    _, _, location, _, _, _ = many_class_report
    seen = measure_in_chromium(location, tmp_path)
    print(f"report.html at {CLASSES} classes: {seen['height']} CSS px high at {FRAME_WIDTH} px")
    assert seen["height"] < MAX_PAGE_HEIGHT, seen["height"]
    headings = [heading["text"] for heading in seen["headings"]]
    assert [text for text in headings if text in SECTIONS] == list(SECTIONS), headings
    images = seen["images"]
    assert images and all(image["decoded"] and image["alt"] for image in images), images
    # the variance plot is the first figure, and it comes before the class chart
    assert images[0]["alt"].startswith("Explained variance")
    chart = next(image for image in images if image["alt"].startswith("Histogram"))
    assert images[0]["top"] < chart["top"]
    # the whole table is folded: closed, one line high
    assert len(seen["details"]) == 1 and not seen["details"][0]["open"]
    assert seen["details"][0]["height"] < 60, seen["details"]
