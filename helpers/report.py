"""Report: what a run tells the people who read its results.

Owns the closing summary of a run (from its ``manifest.json``), the run's ``report.html`` and
the PNG figures saved next to it, and the export of notebooks to self-contained HTML.

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

The page is readable offline: figures are embedded as ``data:`` URIs and the template is
nbconvert's ``lab`` template with every script block (require.js, MathJax, Mermaid, widgets)
emptied, so the page fetches nothing (:data:`REPORT_TEMPLATE`). The same exporter turns an
executed notebook into HTML without its code (:func:`export_notebook`), for those who want the
whole narrative of a headless run too:

    python -m helpers.report OUTPUT_PATH [--notebook EXECUTED.ipynb]

prints the run's summary and where its report is (exit status 1 when ``report.html`` is
missing); with ``--notebook`` it also writes ``EXECUTED.html`` next to ``EXECUTED.ipynb``.
Local paths and ``s3://`` (through boto3, ``$FRUITS_S3_ENDPOINT`` for an S3-compatible server).
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from helpers import onednn, plots
from helpers.classify import CLASSIFICATION_JSON, CONFUSION_PLOT
from helpers.storage import MANIFEST, VARIANCE_PLOT

#: The report and the figures written next to it (``variance.png`` is the pipeline's own).
REPORT_HTML = "report.html"
SAMPLE_GRID_PLOT = "sample_grid.png"
SCATTER_PLOT = "scatter.png"
CLASS_COUNTS_PLOT = "class_counts.png"
TIMINGS_PLOT = "timings.png"
HISTORY_PLOT = "history.png"

#: The order the chain's stages run in; unknown stages follow, in their own order.
STAGE_ORDER = ("session", "list", "weights", "featurize", "pca_fit", "pca_write", "classify")

#: Failed images listed one by one in the report (all of them are in ``failed/``).
MAX_FAILURES_LISTED = 50

#: nbconvert's ``lab`` page with no script at all: nothing is fetched from a CDN, so the report
#: reads offline; plus a little CSS (after the template's own) for larger text and a centred page.
REPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
  :root { --jp-content-font-size1: 17px; --jp-ui-font-size1: 15px; --jp-code-font-size: 15px; }
  body.jp-Notebook { max-width: 1150px; margin: 0 auto; padding: 1em 2em 4em 2em; }
  .jp-RenderedHTMLCommon { line-height: 1.5; }
  .jp-OutputArea-output img { max-width: 100%; height: auto; }
  .jp-OutputArea-output.jp-RenderedHTMLCommon table { margin-left: 0; margin-right: auto; }
  table.text-left td, table.text-left th { text-align: left !important; }
</style>
{%- endblock html_head_css -%}
"""
_TEMPLATE_NAME = "fruits_report.html.j2"


# -- the closing summary -------------------------------------------------------------------
def summary_text(manifest: Dict[str, Any]) -> str:
    """Closing lines of a run: images, failures, k, explained variance, where outputs are."""
    parameters = manifest.get("parameters", {})
    target = parameters.get("variance_target")
    target_text = f" (target {100 * target:.0f}%)" if target and parameters.get("k") is None else ""
    kept = manifest.get("explained_variance_kept")
    variance = (f"{100 * kept:.1f}%{target_text}" if kept is not None
                else manifest.get("pca_skipped", "no PCA"))
    return "\n".join([
        f"images:             {manifest['images_total']}",
        f"featurized:         {manifest['images_featurized']}",
        f"failed:             {manifest['images_failed']}",
        f"k (PCA components): {manifest['k']}",
        f"explained variance: {variance}",
        f"outputs:            {parameters.get('output_path', '?')}",
    ])


def read_manifest(output_path: str, s3_endpoint: Optional[str] = None) -> Dict[str, Any]:
    """The manifest of the run in ``output_path`` (a local folder or ``s3://bucket/prefix``)."""
    location = output_path.rstrip("/") + "/" + MANIFEST
    if _is_s3(location):
        return json.loads(_read_file(location, s3_endpoint))
    if not os.path.exists(location):
        raise FileNotFoundError(f"no manifest.json in {output_path}: did the run finish?")
    return json.loads(_read_file(location))


# -- small-file IO without Spark (the command line) ---------------------------------------
def _is_s3(location: str) -> bool:
    return location.startswith(("s3://", "s3a://"))


def _s3(location: str, s3_endpoint: Optional[str]) -> Tuple[Any, str, str]:
    import boto3

    bucket, _, key = location.split("://", 1)[1].partition("/")
    endpoint = s3_endpoint or os.environ.get("FRUITS_S3_ENDPOINT") or None
    return boto3.client("s3", endpoint_url=endpoint), bucket, key


def _read_file(location: str, s3_endpoint: Optional[str] = None) -> bytes:
    if _is_s3(location):
        client, bucket, key = _s3(location, s3_endpoint)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with open(location, "rb") as handle:
        return handle.read()


def _write_file(location: str, data: bytes, s3_endpoint: Optional[str] = None) -> None:
    if _is_s3(location):
        client, bucket, key = _s3(location, s3_endpoint)
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return
    with open(location, "wb") as handle:
        handle.write(data)


def _file_exists(location: str, s3_endpoint: Optional[str] = None) -> bool:
    if _is_s3(location):
        client, bucket, key = _s3(location, s3_endpoint)
        try:
            client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError:
            return False
        return True
    return os.path.isfile(location)


# -- HTML export ---------------------------------------------------------------------------
def html_exporter() -> Any:
    """nbconvert's ``HTMLExporter`` for reports: no code, no prompts, no scripts, images inline."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({_TEMPLATE_NAME: REPORT_TEMPLATE})],
        template_file=_TEMPLATE_NAME,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        theme="light",
    )


def export_html(notebook: Any, title: str = "Fruits! report") -> str:
    """A notebook (``nbformat`` node) as one self-contained HTML page without its code."""
    body, _ = html_exporter().from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


def export_notebook(path: str, s3_endpoint: Optional[str] = None) -> str:
    """An executed notebook file (local or ``s3://``) as HTML without its code cells.

    Standard-error streams (Spark's and TensorFlow's warnings) are left out; the rest of every
    cell's output (the stage log lines, tables, figures) is kept.
    """
    import nbformat

    notebook = nbformat.reads(_read_file(path, s3_endpoint).decode("utf-8"), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs
                            if not (output.output_type == "stream" and output.name == "stderr")]
    title = os.path.splitext(os.path.basename(path))[0]
    return export_html(notebook, title=title)


# -- the report notebook -------------------------------------------------------------------
def _markdown(text: str) -> Any:
    import nbformat

    return nbformat.v4.new_markdown_cell(text)


def _outputs(*outputs: Any) -> Any:
    """A code cell with no code, carrying ``outputs`` (only outputs show in the report)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source="")
    cell.outputs = list(outputs)
    return cell


def figure_output(figure: Any, description: str = "figure") -> Any:
    """A display output holding ``figure`` (a matplotlib Figure or PNG bytes) as a PNG."""
    import nbformat

    png = figure if isinstance(figure, (bytes, bytearray)) else plots.figure_png(figure)
    return nbformat.v4.new_output(
        "display_data",
        data={"image/png": base64.b64encode(bytes(png)).decode("ascii"), "text/plain": description},
    )


def table_output(frame: pd.DataFrame, index: bool = True, text: bool = False) -> Any:
    """A display output holding ``frame`` as an HTML table (and plain text).

    Cells are right-aligned (numbers), or left-aligned with ``text=True`` (names, paths).
    """
    import nbformat

    classes = ["text-left"] if text else None
    return nbformat.v4.new_output(
        "display_data",
        data={"text/html": frame.to_html(index=index, border=0, classes=classes),
              "text/plain": frame.to_string()},
    )


def ordered_seconds(seconds: Dict[str, float]) -> Dict[str, float]:
    """Seconds per stage in the order the stages run (:data:`STAGE_ORDER`), others after."""
    known = [name for name in STAGE_ORDER if name in seconds]
    return {name: float(seconds[name]) for name in known + [n for n in seconds if n not in known]}


def counts_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Images per class (rows) and split (columns), with totals."""
    table = counts.pivot_table(index="label", columns="split", values="images", aggfunc="sum",
                               fill_value=0)
    ordered = [split for split in ("Training", "Test") if split in table.columns]
    table = table[ordered + [c for c in table.columns if c not in ordered]]
    table["all splits"] = table.sum(axis=1)
    table.loc["all classes"] = table.sum(axis=0)
    table.index.name = "class"
    table.columns.name = None
    return table.astype(int)


def _text_table(pairs: Sequence[Tuple[str, Any]], key: str, value: str) -> Any:
    """A two-column, left-aligned table output; ``None`` and ``""`` shown as Python writes them."""
    frame = pd.DataFrame([(k, repr(v) if v is None or v == "" else str(v)) for k, v in pairs],
                         columns=[key, value])
    return table_output(frame, index=False, text=True)


def _when(timestamp: Any) -> str:
    """An ISO timestamp of the manifest as ``YYYY-MM-DD HH:MM:SS UTC``."""
    try:
        moment = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def report_notebook(
    manifest: Dict[str, Any],
    counts: pd.DataFrame,
    failures: pd.DataFrame,
    figures: Dict[str, Any],
    classification: Any = None,
    seconds: Optional[Dict[str, float]] = None,
    more_outputs: Optional[Dict[str, str]] = None,
    history: Optional[List[Dict[str, Any]]] = None,
) -> Any:
    """The report as an in-memory notebook: markdown and output-only cells, nothing to run.

    Args:
        manifest: the run's manifest (counts, k, variance, parameters, versions, outputs).
        counts: images per ``split`` and ``label`` (``images`` column), as ``Run.class_counts``.
        failures: failed images (``path``, ``reason``), as ``Run.failed_images``.
        figures: PNG bytes or figures by file name (:data:`SAMPLE_GRID_PLOT`, ``variance.png``,
            :data:`SCATTER_PLOT`, :data:`CLASS_COUNTS_PLOT`, :data:`TIMINGS_PLOT` and
            :data:`~helpers.classify.CONFUSION_PLOT`); missing ones are left out.
        classification: a :class:`~helpers.classify.Classification`, or ``None``.
        seconds: seconds per stage (default: the manifest's).
        more_outputs: output locations by name written after the manifest (the report's own).
        history: the last runs of ``output_path`` (rows of :mod:`helpers.history`), shown as a
            table and the :data:`HISTORY_PLOT` figure; ``None`` leaves the section out.
    """
    import nbformat

    def figure(name: str, description: str) -> List[Any]:
        return [_outputs(figure_output(figures[name], description))] if name in figures else []

    parameters = manifest.get("parameters", {})
    seconds = ordered_seconds(seconds if seconds is not None else manifest.get("seconds", {}))
    classes = sorted(counts["label"].dropna().unique()) if len(counts) else []
    accuracy = getattr(classification, "accuracy", None)
    accuracy_text = (
        f"**{100 * accuracy:.1f}%** Test accuracy (chance {100 * classification.chance:.1f}%)"
        if accuracy is not None else "no classifier result"
    )
    cells = [
        _markdown(
            f"# Fruits! run report\n\n"
            f"Run `{manifest.get('run_id', '?')}`, from {_when(manifest.get('started_at', '?'))} "
            f"to {_when(manifest.get('finished_at', '?'))}.\n\n"
            f"**{manifest.get('images_total', '?')}** images in **{len(classes)}** classes, "
            f"**{manifest.get('images_featurized', '?')}** featurized, "
            f"**{manifest.get('images_failed', '?')}** failed; {_pca_text(manifest)}; "
            f"{accuracy_text}; {sum(seconds.values()):.0f} s in all.\n\n"
            f"Input `{parameters.get('input_path', '?')}`, outputs "
            f"`{parameters.get('output_path', '?')}`."
        ),
        _markdown(
            "## 1. The data\nImages per class and split, as Spark listed them (the class is the "
            "folder name, the split the folder above it)."
        ),
        _outputs(table_output(counts_table(counts) if len(counts) else counts)),
        *figure(CLASS_COUNTS_PLOT, "images per class and split"),
    ]
    if len(failures):
        reasons = failures.groupby("reason").size().rename("images").reset_index()
        listed = failures.head(MAX_FAILURES_LISTED)
        more = len(failures) - len(listed)
        cells += [
            _markdown(
                f"### Failed images: {len(failures)}\nUnreadable files are listed, not fatal; "
                f"they are in `failed/` with the reason."
                + (f" The first {len(listed)} are shown ({more} more in `failed/`)."
                   if more else "")
            ),
            _outputs(table_output(reasons.sort_values("images", ascending=False), index=False,
                                  text=True)),
            _outputs(table_output(listed[["path", "reason"]], index=False, text=True)),
        ]
    else:
        cells.append(_markdown("### Failed images: none\nEvery listed image was featurized."))
    cells += [
        _markdown("## 2. Sample images\n"
                  "A few images of each class, decoded as the chain decodes them."),
        *figure(SAMPLE_GRID_PLOT, "sample images per class"),
        _markdown(
            "## 3. PCA of the MobileNetV2 features\n"
            "Each image gives 1280 ImageNet features; PCA keeps the smallest number of components "
            "reaching the variance target (or a fixed k). Bars: variance per component; line: "
            "cumulative variance."
        ),
        *([_markdown(f"**{manifest['pca_skipped']}**: the run published its features only "
                     f"(no `pca/`, `pca_csv/`).")] if manifest.get("pca_skipped") else []),
        *figure(VARIANCE_PLOT, "explained variance"),
        _markdown(
            "The images on the first two principal components, one colour per class: classes "
            "that form separate clouds are told apart by the features."
        ),
        *figure(SCATTER_PLOT, "PC1/PC2 scatter"),
        _markdown(
            "## 4. Are the features useful?\n"
            "A logistic regression (`pyspark.ml`, multinomial) trained on the PCA scores of the "
            "Training split and scored on the Test split, which it never saw."
        ),
    ]
    if classification is None:
        cells.append(_markdown("No classifier was run."))
    else:
        cells.append(_markdown(_classification_markdown(classification)))
        cells += figure(CONFUSION_PLOT, "confusion matrix")
    timing_rows = pd.DataFrame(
        [(name, round(value, 1)) for name, value in seconds.items()]
        + [("total", round(sum(seconds.values()), 1))],
        columns=["stage", "seconds"],
    )
    cells += [
        _markdown("## 5. Time per stage\nWall-clock seconds, as the run measured them."),
        *figure(TIMINGS_PLOT, "seconds per stage"),
        _outputs(table_output(timing_rows, index=False)),
        _markdown("## 6. Parameters and versions\nFrom the run's `manifest.json`."),
        _outputs(_text_table(sorted(parameters.items()), "parameter", "value")),
        _outputs(_text_table(_run_facts(manifest), "fact", "value")),
        _outputs(_text_table(sorted(manifest.get("versions", {}).items()), "library", "version")),
        _markdown("## 7. Outputs"),
        _outputs(_text_table(
            sorted({**manifest.get("outputs", {}), **(more_outputs or {})}.items()),
            "output", "location")),
    ]
    if history is not None:
        from helpers.history import table as history_table

        cells += [
            _markdown(f"## 8. Run history\nThe last {len(history)} runs into this output_path "
                      f"(all of them in `history/runs.jsonl`): images in all and new ones "
                      f"(through the CNN), minutes, and the estimated cost where "
                      f"`cost_per_hour` was given."),
            *figure(HISTORY_PLOT, "images and minutes per run"),
            _outputs(table_output(history_table(history), index=False)),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["title"] = f"Fruits! run report {manifest.get('run_id', '')}".strip()
    return notebook


def _pca_text(manifest: Dict[str, Any]) -> str:
    """The header's PCA clause: k and the variance kept, or why PCA was skipped."""
    kept = manifest.get("explained_variance_kept")
    if kept is None:
        return html.escape(manifest.get("pca_skipped", "no PCA"))
    return (f"PCA keeps **k = {manifest.get('k', '?')}** components "
            f"(**{100 * float(kept):.1f}%** of the variance)")


def _classification_markdown(classification: Any) -> str:
    if classification.skipped:
        return f"Classifier skipped: {html.escape(classification.skipped)}."
    untrained = getattr(classification, "untrained", None)
    partial = (f" **{html.escape(classification.untrained_text())}.**" if untrained else "")
    correct = sum(classification.confusion[i][i] for i in range(len(classification.labels)))
    return (
        f"**Test accuracy {100 * classification.accuracy:.1f}%** ({correct} of "
        f"{classification.test_images} Test images right) against a chance level of "
        f"{100 * classification.chance:.1f}% (one of {len(classification.labels)} classes at "
        f"random); trained on {classification.train_images} Training images, on "
        f"{html.escape(classification.features)}. Rows of the matrix are the true classes, "
        f"columns the predicted ones: everything off the diagonal is a mistake.{partial}"
    )


def _run_facts(manifest: Dict[str, Any]) -> List[Tuple[str, Any]]:
    weights = manifest.get("weights", {})
    return [
        ("run id", manifest.get("run_id")),
        ("started", _when(manifest.get("started_at"))),
        ("finished", _when(manifest.get("finished_at"))),
        ("weights", f"{weights.get('source', '?')} ({weights.get('flavour', '?')})"),
        ("feature dimension", manifest.get("feature_dim")),
        ("images through the CNN", manifest.get("images_through_model")),
        ("PCA method", manifest.get("pca_method")),
        ("k (PCA components)", manifest.get("k")),
        ("explained variance kept",
         f"{100 * float(manifest['explained_variance_kept']):.2f}%"
         if manifest.get("explained_variance_kept") is not None
         else manifest.get("pca_skipped", "no PCA")),
        ("TensorFlow oneDNN", onednn.describe(manifest.get("tensorflow") or {})),
    ]


# -- the run's report ----------------------------------------------------------------------
def write_report(run: Any, classification: Any = None, per_class: int = 6) -> str:
    """Write ``report.html`` and its PNG figures next to the run's outputs; return where.

    Call it last, after ``run.write_manifest()`` (and :func:`helpers.classify.evaluate_run`).
    It first records the run in ``output_path``'s history (:func:`helpers.history.record_run`:
    every run that writes its report is recorded once) and shows the last runs
    (``history.png`` and a table).
    The figures are redrawn from the run (a few Spark reads: class counts, failures, a sample
    of images, PCA scores) and saved as ``sample_grid.png``, ``scatter.png``,
    ``class_counts.png`` and ``timings.png`` beside the report, through
    :mod:`helpers.storage` (local or ``s3://``). When the run keeps its outputs in a folder of
    its own inside ``output_path`` (``run.location``), the page (self-contained) is also
    written as ``output_path/report.html``, the report of the latest run, like the top-level
    ``manifest.json``; that is the location returned.

    Raises:
        ValueError: the run has no manifest yet.
    """
    from helpers import history, storage

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
        runs = history.read_rows(run.spark, run.config.output_path)[-history.SHOWN_IN_REPORT:]
        figures[HISTORY_PLOT] = plots.history_figure(runs)
        pngs = {name: plots.figure_png(figure) for name, figure in figures.items()}
        for name in (CLASS_COUNTS_PLOT, SAMPLE_GRID_PLOT, SCATTER_PLOT, TIMINGS_PLOT, HISTORY_PLOT):
            storage.write_bytes(run.spark, run.location(name), pngs[name])
        written = [REPORT_HTML, CLASS_COUNTS_PLOT, SAMPLE_GRID_PLOT, SCATTER_PLOT, TIMINGS_PLOT,
                   HISTORY_PLOT]
        if classification is not None:
            written.append(CLASSIFICATION_JSON)
            if not classification.skipped:
                pngs[CONFUSION_PLOT] = plots.figure_png(classification.confusion_figure())
                written.append(CONFUSION_PLOT)
        notebook = report_notebook(run.manifest, counts, run.failed_images(), pngs,
                                   classification, seconds,
                                   {name: run.location(name) for name in written}, runs)
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
    parser.add_argument("--notebook", help="an executed notebook (.ipynb, local or s3://): "
                                           "written as .html without code next to it")
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(summary_text(read_manifest(arguments.output_path)))
    if arguments.notebook:
        target = os.path.splitext(arguments.notebook)[0] + ".html"
        _write_file(target, export_notebook(arguments.notebook).encode("utf-8"))
        print(f"notebook:           {target}")
    report = arguments.output_path.rstrip("/") + "/" + REPORT_HTML
    if not _file_exists(report):
        print(f"no {REPORT_HTML} in {arguments.output_path}: did the notebook's last cell run?",
              file=sys.stderr)
        return 1
    print(f"report:             {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
