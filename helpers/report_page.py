"""Report page: the cells of a run's ``report.html``, in order, as an in-memory notebook.

Markdown cells and code cells carrying only outputs (nothing to run), built from the run's
manifest, tables and figures; :func:`helpers.report.write_report` gathers those and exports the
notebook with :mod:`helpers.report_html`.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from helpers import onednn, plots
from helpers.class_summary import class_summary, number, statistics_frame
from helpers.classify import CLASSIFICATION_JSON, CONFUSION_CSV, CONFUSION_PLOT
from helpers.report_html import (
    figure_output,
    html_output,
    markdown_cell,
    output_cell,
    table_output,
    text_table,
)
from helpers.storage import VARIANCE_PLOT

#: The figures (and table) written next to the report (``variance.png`` is the pipeline's own).
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


def ordered_seconds(seconds: Dict[str, float]) -> Dict[str, float]:
    """Seconds per stage in the order the stages run (:data:`STAGE_ORDER`), others after."""
    known = [name for name in STAGE_ORDER if name in seconds]
    return {name: float(seconds[name]) for name in known + [n for n in seconds if n not in known]}


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
    summarised (:class:`~helpers.class_summary.ClassSummary`) and the classifier's mistakes
    shown as the most confused pairs and the worst classes instead of the confusion matrix.

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

    generic = {
        SAMPLE_GRID_PLOT: "sample images per class",
        VARIANCE_PLOT: "explained variance",
        SCATTER_PLOT: "PC1/PC2 scatter",
        CLASS_COUNTS_PLOT: "images per class and split",
        TIMINGS_PLOT: "seconds per stage",
        CONFUSION_PLOT: "confusion matrix",
        HISTORY_PLOT: "images and minutes per run",
    }

    def figure(name: str) -> List[Any]:
        if name not in figures:
            return []
        described = (descriptions or {}).get(name)
        if described is None and isinstance(figures[name], (bytes, bytearray)):
            described = generic[name]
        return [output_cell(figure_output(figures[name], described))]

    parameters = manifest.get("parameters", {})
    seconds = ordered_seconds(seconds if seconds is not None else manifest.get("seconds", {}))
    summary = class_summary(counts)
    classes = sorted(counts["label"].dropna().unique()) if len(counts) else []
    accuracy = getattr(classification, "accuracy", None)
    accuracy_text = (
        f"**{100 * accuracy:.1f}%** Test accuracy (chance {100 * classification.chance:.1f}%)"
        if accuracy is not None
        else "no classifier result"
    )
    cells = [
        markdown_cell(
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
        markdown_cell(
            "## 1. PCA of the MobileNetV2 features\n"
            "Each image gives 1280 ImageNet features; PCA keeps the smallest number of components "
            "reaching the variance target (or a fixed k). Bars: variance per component; line: "
            "cumulative variance."
        ),
        *(
            [
                markdown_cell(
                    f"**{manifest['pca_skipped']}**: the run published its features only "
                    f"(no `pca/`, `pca_csv/`)."
                )
            ]
            if manifest.get("pca_skipped")
            else []
        ),
        *figure(VARIANCE_PLOT),
        markdown_cell(
            "The images on the first two principal components, one colour per class: classes "
            "that form separate clouds are told apart by the features."
        ),
        *figure(SCATTER_PLOT),
        markdown_cell(
            "## 2. Are the features useful?\n"
            "A logistic regression (`pyspark.ml`, multinomial) trained on the PCA scores of the "
            "Training split and scored on the Test split, which it never saw."
        ),
    ]
    if classification is None:
        cells.append(markdown_cell("No classifier was run."))
    else:
        cells.append(markdown_cell(_classification_markdown(classification)))
        if not classification.skipped and len(classification.labels) > plots.MANY_CLASSES:
            cells += _mistakes_cells(classification)
        else:
            cells += figure(CONFUSION_PLOT)
    cells.append(
        markdown_cell(
            "## 3. The data\nImages per class and split, as Spark listed them (the class is the "
            "folder name, the split the folder above it)."
            + (
                f" {summary.classes} classes are too many to list here: a summary, the smallest and "
                f"largest classes, and the whole table folded below (also in `{CLASS_COUNTS_CSV}`)."
                if summary.many
                else ""
            )
        )
    )
    if summary.many:
        low, middle, high = summary.spread()
        cells += [
            markdown_cell(
                f"**{summary.classes} classes**; images per class (all splits): "
                f"**min {low}, median {number(middle)}, max {high}**."
            ),
            output_cell(table_output(statistics_frame(summary.statistics))),
            markdown_cell(
                f"The {len(summary.smallest)} smallest and the {len(summary.largest)} "
                f"largest classes (images, all splits):"
            ),
            output_cell(table_output(summary.smallest)),
            output_cell(table_output(summary.largest)),
            output_cell(html_output(summary.full_table_html(), summary.table.to_string())),
        ]
    else:
        cells.append(output_cell(table_output(summary.table if summary.classes else counts)))
    cells += figure(CLASS_COUNTS_PLOT)
    if len(failures):
        reasons = failures.groupby("reason").size().rename("images").reset_index()
        listed = failures.head(MAX_FAILURES_LISTED)
        more = len(failures) - len(listed)
        cells += [
            markdown_cell(
                f"### Failed images: {len(failures)}\nUnreadable files are listed, not fatal; "
                f"they are in `failed/` with the reason."
                + (
                    f" The first {len(listed)} are shown ({more} more in `failed/`)."
                    if more
                    else ""
                )
            ),
            output_cell(
                table_output(reasons.sort_values("images", ascending=False), index=False, text=True)
            ),
            output_cell(table_output(listed[["path", "reason"]], index=False, text=True)),
        ]
    else:
        cells.append(markdown_cell("### Failed images: none\nEvery listed image was featurized."))
    timing_rows = pd.DataFrame(
        [(name, round(value, 1)) for name, value in seconds.items()]
        + [("total", round(sum(seconds.values()), 1))],
        columns=["stage", "seconds"],
    )
    cells += [
        markdown_cell(
            "## 4. Sample images\nA few images of each class, decoded as the chain decodes them."
        ),
        *figure(SAMPLE_GRID_PLOT),
        markdown_cell("## 5. Time per stage\nWall-clock seconds, as the run measured them."),
        *figure(TIMINGS_PLOT),
        output_cell(table_output(timing_rows, index=False)),
        markdown_cell("## 6. Parameters and versions\nFrom the run's `manifest.json`."),
        output_cell(text_table(sorted(parameters.items()), "parameter", "value")),
        output_cell(text_table(_run_facts(manifest), "fact", "value")),
        output_cell(text_table(sorted(manifest.get("versions", {}).items()), "library", "version")),
        markdown_cell("## 7. Outputs"),
        output_cell(
            text_table(
                sorted({**manifest.get("outputs", {}), **(more_outputs or {})}.items()),
                "output",
                "location",
            )
        ),
    ]
    if history is not None:
        from helpers.history import table as history_table

        cells += [
            markdown_cell(
                f"## 8. Run history\nThe last {len(history)} runs into this output_path "
                f"(all of them in `history/runs.jsonl`): images in all and new ones "
                f"(through the CNN), minutes, and the estimated cost where "
                f"`cost_per_hour` was given."
            ),
            *figure(HISTORY_PLOT),
            output_cell(table_output(history_table(history), index=False)),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["title"] = f"Fruits! run report {manifest.get('run_id', '')}".strip()
    return notebook


def _pca_text(manifest: Dict[str, Any]) -> str:
    """The header's PCA clause: k and the variance kept, or why PCA was skipped."""
    kept = manifest.get("explained_variance_kept")
    if kept is None:
        return html.escape(manifest.get("pca_skipped", "no PCA"))
    return (
        f"PCA keeps **k = {manifest.get('k', '?')}** components "
        f"(**{100 * float(kept):.1f}%** of the variance)"
    )


def _mistakes_cells(classification: Any) -> List[Any]:
    """For many classes: the most confused pairs and the worst classes, as tables."""
    pairs = classification.confused_pairs()
    worst = classification.worst_classes()
    cells = [
        markdown_cell(
            f"### The most confused pairs\nWith {len(classification.labels)} classes the confusion "
            f"matrix cannot be read; here are its largest off-diagonal cells (true -> predicted, Test "
            f"images, share of the true class's Test images). The whole matrix is in "
            f"`{CONFUSION_CSV}` and `{CLASSIFICATION_JSON}`."
        )
    ]
    if len(pairs):
        shown = pairs.assign(
            **{"share of true class": [f"{100 * v:.0f}%" for v in pairs["share of true class"]]}
        )
        cells.append(output_cell(table_output(shown, index=False, text=True)))
    else:
        cells.append(markdown_cell("No Test image was mistaken for another class."))
    cells.append(markdown_cell("### The worst classes\nThe classes with the lowest Test accuracy."))
    if len(worst):
        shown = worst.assign(accuracy=[f"{100 * v:.0f}%" for v in worst["accuracy"]])
        cells.append(output_cell(table_output(shown, index=False, text=True)))
    else:
        cells.append(markdown_cell("Every class's Test images are all predicted right."))
    return cells


def _classification_markdown(classification: Any) -> str:
    if classification.skipped:
        return f"Classifier skipped: {html.escape(classification.skipped)}."
    untrained = getattr(classification, "untrained", None)
    partial = f" **{html.escape(classification.untrained_text())}.**" if untrained else ""
    correct = sum(classification.confusion[i][i] for i in range(len(classification.labels)))
    return (
        f"**Test accuracy {100 * classification.accuracy:.1f}%** ({correct} of "
        f"{classification.test_images} Test images right) against a chance level of "
        f"{100 * classification.chance:.1f}% (one of {len(classification.labels)} classes at "
        f"random); trained on {html.escape(classification.training_text())}, on "
        f"{html.escape(classification.features)}."
        + (
            " Rows of the matrix are the true classes, columns the predicted ones: everything "
            "off the diagonal is a mistake."
            if len(classification.labels) <= plots.MANY_CLASSES
            else ""
        )
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
        (
            "explained variance kept",
            f"{100 * float(manifest['explained_variance_kept']):.2f}%"
            if manifest.get("explained_variance_kept") is not None
            else manifest.get("pca_skipped", "no PCA"),
        ),
        ("TensorFlow oneDNN", onednn.describe(manifest.get("tensorflow") or {})),
    ]
