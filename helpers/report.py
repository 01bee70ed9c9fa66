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
emptied, so the page fetches nothing (:data:`REPORT_TEMPLATE`). Every PNG output becomes an
``<img>`` whose ``alt`` says what it shows: the output's ``metadata["image/png"]["alt"]``, else
its ``text/plain`` (the description :func:`helpers.plots.describe` gives the figures of this
project, in the report and in executed notebooks alike); a bare ``<Figure ...>`` repr is no
description, and such an image is left without ``alt`` (nbconvert then warns).

What is shown scales with the number of classes: up to :data:`~helpers.plots.MANY_CLASSES`,
every class (table of images per class, bar chart, confusion matrix); with more, a summary
(:class:`ClassSummary`: classes, images per class min / median / max, the smallest and largest
classes, the whole table folded in a ``<details>`` element), a histogram instead of one bar per
class, and the most confused pairs and worst classes instead of the matrix; the whole data stay
in ``class_counts.csv``, ``confusion.csv`` and ``classification.json``. The variance plot is the
first figure of the page, after the headline. The same exporter turns an
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
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from helpers import log, onednn, plots
from helpers.classify import CLASSIFICATION_JSON, CONFUSION_CSV, CONFUSION_PLOT
from helpers.images import KNOWN_SPLITS
from helpers.storage import MANIFEST, VARIANCE_PLOT

if TYPE_CHECKING:  # annotations only: helpers.pipeline imports this module
    from helpers.classify import Classification
    from helpers.pipeline import Run

#: The report and the figures written next to it (``variance.png`` is the pipeline's own).
REPORT_HTML = "report.html"
SAMPLE_GRID_PLOT = "sample_grid.png"
SCATTER_PLOT = "scatter.png"
CLASS_COUNTS_PLOT = "class_counts.png"
CLASS_COUNTS_CSV = "class_counts.csv"
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
  details > summary { cursor: pointer; font-weight: bold; margin: 0.5em 0; }
</style>
{%- endblock html_head_css -%}
{%- block data_png scoped -%}
{%- set alt = output | get_metadata('alt', 'image/png') or output.data.get('text/plain', '') -%}
{%- if alt is not string -%}{%- set alt = alt | join('') -%}{%- endif -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
{%- if 'image/png' in output.metadata.get('filenames', {}) %}
<img src="{{ output.metadata.filenames['image/png'] | posix_path | escape_html }}"
{%- else %}
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
{%- endif %}
{%- if alt and not alt.startswith('<') %}
alt="{{ alt | trim | escape_html }}"
{%- endif %}
>
</div>
{%- endblock data_png -%}
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


def figure_output(figure: Any, description: Optional[str] = None) -> Any:
    """A display output holding ``figure`` (a matplotlib Figure or PNG bytes) as a PNG, with
    ``description`` (default: the figure's own, :func:`helpers.plots.describe`) as its text and
    its ``alt`` metadata, which the exported page's ``<img alt>`` shows."""
    import nbformat

    if isinstance(figure, (bytes, bytearray)):
        png = bytes(figure)
    else:
        png = plots.figure_png(figure)
        description = description or plots.describe(figure)
    description = description or "figure"
    return nbformat.v4.new_output(
        "display_data",
        data={"image/png": base64.b64encode(png).decode("ascii"), "text/plain": description},
        metadata={"image/png": {"alt": description}},
    )


def html_output(markup: str, text: str) -> Any:
    """A display output holding ``markup`` (HTML) and its plain-text equivalent."""
    import nbformat

    return nbformat.v4.new_output("display_data", data={"text/html": markup, "text/plain": text})


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
    ordered = [split for split in KNOWN_SPLITS if split in table.columns]
    table = table[ordered + [c for c in table.columns if c not in ordered]]
    table["all splits"] = table.sum(axis=1)
    table.loc["all classes"] = table.sum(axis=0)
    table.index.name = "class"
    table.columns.name = None
    return table.astype(int)


class ClassSummary:
    """Images per class, whole for a few classes and summarised for many.

    Up to ``many`` classes (:data:`~helpers.plots.MANY_CLASSES`) Jupyter shows :attr:`table`,
    one row per class. With more, it shows :attr:`statistics` (classes, images, images per
    class min / median / max, per split and over all splits), the :attr:`smallest` and
    :attr:`largest` classes, and the whole table folded in a ``<details>`` element.

    Attributes:
        counts: the long table it was made from (``split``, ``label``, ``images``).
        table: images per class (rows) and split (columns) with totals (:func:`counts_table`).
        classes: number of classes.
        many: whether there are more than ``many`` classes (then summarised).
        statistics: the summary (rows: what, columns: splits and ``all splits``).
        smallest, largest: the ``top`` classes with the fewest / most images (all splits).
    """

    def __init__(self, counts: pd.DataFrame, many: int = plots.MANY_CLASSES, top: int = 5) -> None:
        self.counts = counts
        labelled = counts[counts["label"].notna()] if len(counts) else counts
        self.table = counts_table(labelled) if len(labelled) else pd.DataFrame()
        per_class = self.table.drop(index="all classes") if len(self.table) else self.table
        self.classes = len(per_class)
        self.many = self.classes > many
        self.statistics = pd.DataFrame(
            {column: [len(per_class[per_class[column] > 0]), int(per_class[column].sum()),
                      int(per_class[column].min()), float(per_class[column].median()),
                      int(per_class[column].max())]
             for column in per_class.columns},
            index=["classes", "images", "images per class: min", "images per class: median",
                   "images per class: max"],
            dtype=object,
        ) if self.classes else pd.DataFrame()
        ranked = per_class.sort_values("all splits", kind="stable") if self.classes else per_class
        self.smallest = ranked.head(top)
        self.largest = ranked.iloc[::-1].head(top) if self.classes else ranked

    def _spread(self) -> Tuple[int, float, int]:
        column = self.statistics["all splits"]
        return (int(column["images per class: min"]), float(column["images per class: median"]),
                int(column["images per class: max"]))

    def text(self) -> str:
        """One line: classes, images, images per class min / median / max, extremes."""
        if not self.classes:
            return "no class: no image lies in a class folder"
        low, middle, high = self._spread()

        def named(frame: pd.DataFrame) -> str:
            return ", ".join(f"{label} ({int(row['all splits'])})" for label, row in frame.iterrows())

        return (f"{self.classes} classes, {int(self.statistics['all splits']['images'])} images; "
                f"images per class (all splits): min {low}, median {_number(middle)}, max {high}; "
                f"smallest: {named(self.smallest)}; largest: {named(self.largest)}")

    def __repr__(self) -> str:
        return self.text() if self.many or not self.classes else self.table.to_string()

    def full_table_html(self) -> str:
        """The whole table, folded in a ``<details>`` element (open it to read)."""
        return (f"<details><summary>All {self.classes} classes: images per class and split "
                f"(click to open)</summary>\n{self.table.to_html(border=0)}\n</details>")

    def _repr_html_(self) -> str:
        if not self.many:
            return self.table.to_html(border=0)
        low, middle, high = self._spread()
        return (
            f"<p><strong>{self.classes} classes</strong>, images per class (all splits): "
            f"min {low}, median {_number(middle)}, max {high}.</p>\n"
            f"{_statistics_frame(self.statistics).to_html(border=0)}\n"
            f"<p>The {len(self.smallest)} smallest classes:</p>\n"
            f"{self.smallest.to_html(border=0)}\n"
            f"<p>The {len(self.largest)} largest classes:</p>\n"
            f"{self.largest.to_html(border=0)}\n{self.full_table_html()}"
        )


def _statistics_frame(statistics: pd.DataFrame) -> pd.DataFrame:
    """Statistics with whole numbers written without a decimal point (medians may be .5)."""
    return statistics.map(_number)


def _number(value: Any) -> Any:
    """A count as an integer, a median of an even number of classes with its .5."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 1)
    return value


def class_summary(counts: pd.DataFrame, many: int = plots.MANY_CLASSES) -> ClassSummary:
    """Images per class (``counts`` as ``Run.class_counts``), whole or summarised: see
    :class:`ClassSummary`."""
    return ClassSummary(counts, many=many)


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
    descriptions: Optional[Dict[str, str]] = None,
) -> Any:
    """The report as an in-memory notebook: markdown and output-only cells, nothing to run.

    Order: the headline, the PCA (variance plot first, then the scatter), the classifier, the
    data (images per class, failures), sample images, time per stage, parameters and versions,
    outputs. With more than :data:`~helpers.plots.MANY_CLASSES` classes the data are
    summarised (:class:`ClassSummary`) and the classifier's mistakes shown as the most confused
    pairs and the worst classes instead of the confusion matrix.

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
        descriptions: what each figure shows, by file name (its ``alt`` text); default: the
            figure's own description, or a generic one for PNG bytes.
    """
    import nbformat

    generic = {SAMPLE_GRID_PLOT: "sample images per class", VARIANCE_PLOT: "explained variance",
               SCATTER_PLOT: "PC1/PC2 scatter", CLASS_COUNTS_PLOT: "images per class and split",
               TIMINGS_PLOT: "seconds per stage", CONFUSION_PLOT: "confusion matrix",
               HISTORY_PLOT: "images and minutes per run"}

    def figure(name: str) -> List[Any]:
        if name not in figures:
            return []
        described = (descriptions or {}).get(name)
        if described is None and isinstance(figures[name], (bytes, bytearray)):
            described = generic[name]
        return [_outputs(figure_output(figures[name], described))]

    parameters = manifest.get("parameters", {})
    seconds = ordered_seconds(seconds if seconds is not None else manifest.get("seconds", {}))
    summary = class_summary(counts)
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
            "## 1. PCA of the MobileNetV2 features\n"
            "Each image gives 1280 ImageNet features; PCA keeps the smallest number of components "
            "reaching the variance target (or a fixed k). Bars: variance per component; line: "
            "cumulative variance."
        ),
        *([_markdown(f"**{manifest['pca_skipped']}**: the run published its features only "
                     f"(no `pca/`, `pca_csv/`).")] if manifest.get("pca_skipped") else []),
        *figure(VARIANCE_PLOT),
        _markdown(
            "The images on the first two principal components, one colour per class: classes "
            "that form separate clouds are told apart by the features."
        ),
        *figure(SCATTER_PLOT),
        _markdown(
            "## 2. Are the features useful?\n"
            "A logistic regression (`pyspark.ml`, multinomial) trained on the PCA scores of the "
            "Training split and scored on the Test split, which it never saw."
        ),
    ]
    if classification is None:
        cells.append(_markdown("No classifier was run."))
    else:
        cells.append(_markdown(_classification_markdown(classification)))
        if not classification.skipped and len(classification.labels) > plots.MANY_CLASSES:
            cells += _mistakes_cells(classification)
        else:
            cells += figure(CONFUSION_PLOT)
    cells.append(_markdown(
        "## 3. The data\nImages per class and split, as Spark listed them (the class is the "
        "folder name, the split the folder above it)."
        + (f" {summary.classes} classes are too many to list here: a summary, the smallest and "
           f"largest classes, and the whole table folded below (also in `{CLASS_COUNTS_CSV}`)."
           if summary.many else "")
    ))
    if summary.many:
        low, middle, high = summary._spread()  # noqa: SLF001 - the same module
        cells += [
            _markdown(f"**{summary.classes} classes**; images per class (all splits): "
                      f"**min {low}, median {_number(middle)}, max {high}**."),
            _outputs(table_output(_statistics_frame(summary.statistics))),
            _markdown(f"The {len(summary.smallest)} smallest and the {len(summary.largest)} "
                      f"largest classes (images, all splits):"),
            _outputs(table_output(summary.smallest)),
            _outputs(table_output(summary.largest)),
            _outputs(html_output(summary.full_table_html(), summary.table.to_string())),
        ]
    else:
        cells.append(_outputs(table_output(summary.table if summary.classes else counts)))
    cells += figure(CLASS_COUNTS_PLOT)
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
    timing_rows = pd.DataFrame(
        [(name, round(value, 1)) for name, value in seconds.items()]
        + [("total", round(sum(seconds.values()), 1))],
        columns=["stage", "seconds"],
    )
    cells += [
        _markdown("## 4. Sample images\n"
                  "A few images of each class, decoded as the chain decodes them."),
        *figure(SAMPLE_GRID_PLOT),
        _markdown("## 5. Time per stage\nWall-clock seconds, as the run measured them."),
        *figure(TIMINGS_PLOT),
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
            *figure(HISTORY_PLOT),
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


def _mistakes_cells(classification: Any) -> List[Any]:
    """For many classes: the most confused pairs and the worst classes, as tables."""
    pairs = classification.confused_pairs()
    worst = classification.worst_classes()
    cells = [_markdown(
        f"### The most confused pairs\nWith {len(classification.labels)} classes the confusion "
        f"matrix cannot be read; here are its largest off-diagonal cells (true -> predicted, Test "
        f"images, share of the true class's Test images). The whole matrix is in "
        f"`{CONFUSION_CSV}` and `{CLASSIFICATION_JSON}`."
    )]
    if len(pairs):
        shown = pairs.assign(**{"share of true class": [f"{100 * v:.0f}%"
                                                        for v in pairs["share of true class"]]})
        cells.append(_outputs(table_output(shown, index=False, text=True)))
    else:
        cells.append(_markdown("No Test image was mistaken for another class."))
    cells.append(_markdown("### The worst classes\nThe classes with the lowest Test accuracy."))
    if len(worst):
        shown = worst.assign(accuracy=[f"{100 * v:.0f}%" for v in worst["accuracy"]])
        cells.append(_outputs(table_output(shown, index=False, text=True)))
    else:
        cells.append(_markdown("Every class's Test images are all predicted right."))
    return cells


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
        f"random); trained on {html.escape(classification.training_text())}, on "
        f"{html.escape(classification.features)}."
        + (" Rows of the matrix are the true classes, columns the predicted ones: everything "
           "off the diagonal is a mistake." if len(classification.labels) <= plots.MANY_CLASSES
           else "")
        + partial
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
def write_report(run: Run, classification: Optional[Classification] = None,
                 per_class: int = 6) -> str:
    """Write ``report.html`` and its PNG figures next to the run's outputs; return where.

    Call it last, after ``run.write_manifest()`` (and :func:`helpers.classify.evaluate_run`).
    It first records the run in ``output_path``'s history (:func:`helpers.history.record_run`:
    every run that writes its report is recorded once) and shows the last runs
    (``history.png`` and a table).
    The figures are redrawn from the run (a few Spark reads: class counts, failures, a sample
    of images, PCA scores) and saved as ``sample_grid.png``, ``scatter.png``,
    ``class_counts.png`` and ``timings.png`` beside the report, with the images per class and
    split as ``class_counts.csv`` (the whole table the page summarises for many classes), through
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
        if classification is not None and not classification.skipped:
            figures[CONFUSION_PLOT] = classification.confusion_figure()
        descriptions = {name: plots.describe(figure) for name, figure in figures.items()}
        pngs = {name: plots.figure_png(figure) for name, figure in figures.items()}
        for name in (CLASS_COUNTS_PLOT, SAMPLE_GRID_PLOT, SCATTER_PLOT, TIMINGS_PLOT, HISTORY_PLOT):
            storage.write_bytes(run.spark, run.location(name), pngs[name])
        summary = class_summary(counts)
        if summary.classes:
            storage.write_bytes(run.spark, run.location(CLASS_COUNTS_CSV),
                                summary.table.to_csv().encode("utf-8"))
        written = [REPORT_HTML, CLASS_COUNTS_PLOT, SAMPLE_GRID_PLOT, SCATTER_PLOT, TIMINGS_PLOT,
                   HISTORY_PLOT]
        if summary.classes:
            written.append(CLASS_COUNTS_CSV)
        if classification is not None:
            written.append(CLASSIFICATION_JSON)
            if not classification.skipped:
                written += [CONFUSION_PLOT, CONFUSION_CSV]
        notebook = report_notebook(run.manifest, counts, run.failed_images(), pngs,
                                   classification, seconds,
                                   {name: run.location(name) for name in written},
                                   history=runs, descriptions=descriptions)
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
    log.configure()
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
