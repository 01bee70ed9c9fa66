"""Report: what a run tells the people who read its results.

Owns the closing summary of a run (from its ``manifest.json``), the run's ``report.html`` (the
page's cells, in order) and the PNG figures saved next to it, and the command line. The HTML
export and its cells are :mod:`helpers.report_html`'s; the table of images per class is
:mod:`helpers.class_summary`'s.

How every run gets its ``report.html``
--------------------------------------
One code path, in every mode: the notebook's last cell calls :func:`write_report` with the
finished :class:`~helpers.pipeline.Run` (and its :class:`~helpers.classify.Classification`).
It gathers the run's own tables and figures (images per class and split, failures with their
reasons, sample images, explained variance, PC1/PC2 scatter, classifier accuracy and confusion
matrix, seconds per stage, parameters and versions from the manifest, and the history of the
runs into ``output_path``: :mod:`helpers.history`, where it records this run), puts them in a small
notebook built in memory (markdown cells, and code cells carrying only outputs) and exports
that with nbconvert's ``HTMLExporter`` without code cells or prompts. The page is written
through :mod:`helpers.storage` (local folder or ``s3://``) next to the run's outputs
(``run.location``: the run's own folder ``output_path/runs/<run_id>/``), with the figures as
PNG files beside it, and once more as ``output_path/report.html``: the latest run's report,
beside the top-level ``manifest.json`` (written after it, so a reader between the two writes
may see the previous run's report for a moment).

The report repeats what the run's cells show but is not a copy of the notebook; someone who
wants the notebook's own narrative of a headless run exports the executed file (below).

Why not export the executed notebook itself: in JupyterHub no executed ``.ipynb`` exists while
the kernel runs (and with EMR's PySpark kernel the kernel does not even run where the notebook
file is), while a headless EMR step is a single papermill command with nothing after it. Built
from the run, the report is the same page in JupyterHub, under papermill (``make run``, the EMR
step), in the tests and in scripts, and it needs nothing after the kernel ends.

The page is readable offline (:mod:`helpers.report_html`): no script, figures embedded, each
image with an ``alt`` text saying what it shows.

What is shown scales with the number of classes: up to :data:`~helpers.plots.MANY_CLASSES`,
every class (table of images per class, bar chart, confusion matrix); with more, a summary
(:class:`~helpers.class_summary.ClassSummary`: classes, images per class min / median / max,
the smallest and largest classes, the whole table folded in a ``<details>`` element), a
histogram instead of one bar per class, and the most confused pairs and worst classes instead
of the matrix; the whole data stay in ``class_counts.csv``, ``confusion.csv`` and
``classification.json``. The variance plot is the first figure of the page, after the headline.
The same exporter turns an executed notebook into HTML without its code
(:func:`helpers.report_html.export_notebook`), for those who want the whole narrative of a
headless run too:

    python -m helpers.report OUTPUT_PATH [--notebook EXECUTED.ipynb]

prints the run's summary and where its report is (exit status 1 when ``report.html`` is
missing); with ``--notebook`` it also writes ``EXECUTED.html`` next to ``EXECUTED.ipynb``.
Local paths and ``s3://`` (through :mod:`helpers.storage`, without Spark).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from helpers import log, plots, storage
from helpers.class_summary import class_summary
from helpers.classify import CLASSIFICATION_JSON, CONFUSION_CSV, CONFUSION_PLOT
from helpers.report_html import export_html, export_notebook
from helpers.report_page import (
    CLASS_COUNTS_CSV,
    CLASS_COUNTS_PLOT,
    HISTORY_PLOT,
    SAMPLE_GRID_PLOT,
    SCATTER_PLOT,
    TIMINGS_PLOT,
    ordered_seconds,
    report_notebook,
)
from helpers.storage import MANIFEST, VARIANCE_PLOT

if TYPE_CHECKING:  # annotations only: helpers.pipeline imports this module
    from helpers.classify import Classification
    from helpers.pipeline import Run

#: The report, written next to the run's outputs and as ``output_path/report.html``.
REPORT_HTML = "report.html"


# -- the closing summary -------------------------------------------------------------------
def summary_text(manifest: Dict[str, Any]) -> str:
    """Closing lines of a run: images, failures, k, explained variance, where outputs are."""
    parameters = manifest.get("parameters", {})
    target = parameters.get("variance_target")
    target_text = f" (target {100 * target:.0f}%)" if target and parameters.get("k") is None else ""
    kept = manifest.get("explained_variance_kept")
    variance = (
        f"{100 * kept:.1f}%{target_text}"
        if kept is not None
        else manifest.get("pca_skipped", "no PCA")
    )
    return "\n".join(
        [
            f"images:             {manifest['images_total']}",
            f"featurized:         {manifest['images_featurized']}",
            f"failed:             {manifest['images_failed']}",
            f"k (PCA components): {manifest['k']}",
            f"explained variance: {variance}",
            f"outputs:            {parameters.get('output_path', '?')}",
        ]
    )


def read_manifest(output_path: str, s3_endpoint: Optional[str] = None) -> Dict[str, Any]:
    """The manifest of the run in ``output_path`` (a local folder or ``s3://bucket/prefix``)."""
    location = storage.output_location(output_path, MANIFEST)
    if not storage.exists(None, location, s3_endpoint or ""):
        raise FileNotFoundError(f"no manifest.json in {output_path}: did the run finish?")
    return storage.read_json(None, location, s3_endpoint or "")


# -- the run's report ----------------------------------------------------------------------
def write_report(
    run: Run, classification: Optional[Classification] = None, per_class: int = 6
) -> str:
    """Write ``report.html`` and its PNG figures next to the run's outputs; return where.

    Call it last, after ``run.write_manifest()`` (and :func:`helpers.classify.evaluate_run`).
    It first records the run in ``output_path``'s history (:func:`helpers.history.record_run`:
    every run that writes its report is recorded once) and shows the last runs
    (``history.png`` and a table).
    The figures are redrawn from the run (its class counts, counted once per listing, and a
    few Spark reads: failures, a sample of images, PCA scores) and saved as
    ``sample_grid.png``, ``scatter.png``, ``class_counts.png`` and ``timings.png`` beside the
    report, with the images per class and split as ``class_counts.csv`` (the whole table the
    page summarises for many classes), through :mod:`helpers.storage` (local or ``s3://``).
    When the run keeps its outputs in a folder of its own inside ``output_path``
    (``run.location``), the page (self-contained) is also written as
    ``output_path/report.html``, the report of the latest run, like the top-level
    ``manifest.json``; that is the location returned.

    Raises:
        ValueError: the run has no manifest yet.
    """
    from helpers import history

    if not run.manifest:
        raise ValueError("the run has no manifest yet: call run.write_manifest() before the report")
    with run.stage("report"):
        counts = run.class_counts()
        seconds = ordered_seconds(run.seconds)
        figures: Dict[str, Any] = {
            CLASS_COUNTS_PLOT: plots.class_counts_figure(counts),
            SAMPLE_GRID_PLOT: run.sample_images(per_class=per_class),
            VARIANCE_PLOT: run.variance_figure(),
            SCATTER_PLOT: run.scatter_figure(),
            TIMINGS_PLOT: plots.timings_figure(seconds),
        }
        history.record_run(run, classification)  # once per run, the classifier result known
        runs = history.read_rows(run.spark, run.config.output_path)[-history.SHOWN_IN_REPORT :]
        figures[HISTORY_PLOT] = plots.history_figure(runs)
        if classification is not None and not classification.skipped:
            figures[CONFUSION_PLOT] = classification.confusion_figure()
        descriptions = {name: plots.describe(figure) for name, figure in figures.items()}
        pngs = {name: plots.figure_png(figure) for name, figure in figures.items()}
        for name in (CLASS_COUNTS_PLOT, SAMPLE_GRID_PLOT, SCATTER_PLOT, TIMINGS_PLOT, HISTORY_PLOT):
            storage.write_bytes(run.spark, run.location(name), pngs[name])
        summary = class_summary(counts)
        if summary.classes:
            storage.write_bytes(
                run.spark, run.location(CLASS_COUNTS_CSV), summary.table.to_csv().encode("utf-8")
            )
        written = [
            REPORT_HTML,
            CLASS_COUNTS_PLOT,
            SAMPLE_GRID_PLOT,
            SCATTER_PLOT,
            TIMINGS_PLOT,
            HISTORY_PLOT,
        ]
        if summary.classes:
            written.append(CLASS_COUNTS_CSV)
        if classification is not None:
            written.append(CLASSIFICATION_JSON)
            if not classification.skipped:
                written += [CONFUSION_PLOT, CONFUSION_CSV]
        notebook = report_notebook(
            run.manifest,
            counts,
            run.failed_images(),
            pngs,
            classification,
            seconds,
            {name: run.location(name) for name in written},
            history=runs,
            descriptions=descriptions,
        )
        page = export_html(notebook, title=notebook.metadata["title"]).encode("utf-8")
        locations = [run.location(REPORT_HTML)]
        latest = storage.output_location(run.config.output_path, REPORT_HTML)
        if latest.rstrip("/") != locations[0].rstrip("/"):
            locations.append(latest)
        for location in locations:
            storage.write_bytes(run.spark, location, page)
    return locations[-1]


# -- command line --------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    """``python -m helpers.report OUTPUT_PATH [--notebook EXECUTED.ipynb]``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.report",
        description="Print a finished run's summary and where its report.html is; optionally "
        "export an executed notebook to HTML without its code.",
    )
    parser.add_argument("output_path", help="the run's output_path (local folder or s3://...)")
    parser.add_argument(
        "--notebook",
        help="an executed notebook (.ipynb, local or s3://): "
        "written as .html without code next to it",
    )
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    log.configure()
    print(summary_text(read_manifest(arguments.output_path)))
    if arguments.notebook:
        target = os.path.splitext(arguments.notebook)[0] + ".html"
        storage.write_bytes(None, target, export_notebook(arguments.notebook).encode("utf-8"))
        print(f"notebook:           {target}")
    report = storage.output_location(arguments.output_path, REPORT_HTML)
    if not storage.exists(None, report):
        print(
            f"no {REPORT_HTML} in {arguments.output_path}: did the notebook's last cell run?",
            file=sys.stderr,
        )
        return 1
    print(f"report:             {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
