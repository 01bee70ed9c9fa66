"""Plots: every figure the chain shows or saves, in one slide-readable style.

Functions take plain data (lists, numpy arrays, pandas frames) and return a matplotlib
``Figure``; :func:`figure_png` turns one into PNG bytes for storage, :func:`make_current`
hands one to pyplot for ``%matplot plt`` (EMR's PySpark kernel; an IPython ``%matplot`` magic
is registered here for other kernels). Nothing here touches Spark, so the same figures can be
redrawn from the saved outputs.

Every figure carries a one-sentence description of what it shows, as its matplotlib label
(``Figure.get_label()``): :func:`describe` reads it, and it becomes the image's alternative text
in Jupyter (the ``text/plain`` of the figure's output and ``metadata["image/png"]["alt"]``), in
the exported notebook and in ``report.html``.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from helpers.images import KNOWN_SPLITS

#: One style for all figures: large fonts, readable in a slide.
STYLE: Dict[str, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 13,
    "axes.titlesize": 16,
    "axes.labelsize": 14,
    "legend.fontsize": 11,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _in_style(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the whole figure under :data:`STYLE` (text sizes are read at creation)."""

    @functools.wraps(function)
    def styled(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return styled


def _styled(rows: int = 1, columns: int = 1, figsize=(10, 6), squeeze: bool = True):
    """A new figure and its axes under :data:`STYLE`.

    Figures are made without pyplot, so Jupyter shows each one once (as the cell's value)
    and no global figure state builds up in long sessions or on executors.
    """
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=figsize)
        axes = figure.subplots(rows, columns, squeeze=squeeze)
    return figure, axes


#: zlib level of the PNGs written: below Pillow's default (6), which spends most of a photo
#: grid's saving time deflating, for slightly larger files.
PNG_COMPRESS_LEVEL = 3


def figure_png(figure: Figure) -> bytes:
    """PNG bytes of ``figure`` (tight bounding box)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(
            buffer,
            format="png",
            bbox_inches="tight",
            pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL},
        )
    return buffer.getvalue()


#: Above this many classes, figures and tables summarise instead of listing every class
#: (a 155-bar chart or a 155x155 matrix cannot be read); at or below it they show each class.
MANY_CLASSES = 20


def describe(figure: Figure) -> str:
    """What ``figure`` shows, in one sentence: its label, else its titles.

    Every figure of this module is labelled when drawn; other figures are described by their
    suptitle and axes titles (empty when they have none).
    """
    label = figure.get_label()
    if label:
        return label
    titles = [figure.get_suptitle()] + [axis.get_title() for axis in figure.axes]
    return "; ".join(" ".join(title.split()) for title in titles if title.strip())


def figure_mimebundle(figure: Figure) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """``figure`` as a Jupyter output: PNG (base64), its description as ``text/plain`` and as
    the PNG's ``alt`` metadata (what nbconvert's export puts in ``<img alt>``)."""
    description = describe(figure) or "figure"
    png = base64.b64encode(figure_png(figure)).decode("ascii")
    return ({"image/png": png, "text/plain": description}, {"image/png": {"alt": description}})


def _ipython_shell() -> Any:
    """The running IPython shell (a Jupyter kernel, IPython), or ``None`` outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def show_figures_in_ipython() -> bool:
    """Make Jupyter show a returned ``Figure`` as a described PNG (True under IPython).

    Figures here are made without pyplot, so no backend displays them on its own; this
    registers :func:`figure_mimebundle` as their representation, once, whatever the backend:
    the cell's output holds the PNG, its description as text and as ``alt`` metadata.
    """
    shell = _ipython_shell()
    if shell is None:
        return False
    shell.display_formatter.mimebundle_formatter.for_type(Figure, figure_mimebundle)
    return True


def make_current(figure: Figure) -> None:
    """Make ``figure`` pyplot's current figure, so that ``%matplot plt`` shows it.

    In EMR JupyterHub's PySpark kernel (sparkmagic -> Livy) a cell's code runs in Livy's
    Python REPL, whose ``%matplot plt`` line saves ``plt.gcf()`` as PNG (a plain
    ``savefig(format="png")``) and sends it back as ``image/png``. Figures here are made
    without pyplot, so this hands ``figure`` to pyplot: after it, ``plt.gcf()`` is
    ``figure``. Figures pyplot held before are closed (one figure at a time: a long session
    does not pile them up). ``figure`` gets the tight layout engine, so that plain
    ``savefig`` keeps its labels inside the picture. A figure cell reads::

        make_current(run.variance_figure())
        %matplot plt

    Under an IPython kernel (papermill, local Jupyter) the ``%matplot`` magic registered by
    this module shows the same figure.
    """
    import matplotlib.pyplot as plt

    plt.close("all")
    figure.set_layout_engine("tight")
    plt.figure(figure)  # an unmanaged Figure gets a manager of pyplot's backend: gcf() is it


def matplot(line: str) -> None:
    """IPython line magic ``%matplot plt``: show ``plt.gcf()`` once, as ``image/png``.

    Sparkmagic's ``%matplot`` is handled by Livy; an IPython kernel has no such magic, so
    this module registers this one, which does what Livy does (take ``<name>.gcf()`` from the
    notebook's variables) and displays it. The figure is then closed in pyplot, so the inline
    backend does not show it a second time when the cell ends.

    Raises:
        NameError: the notebook has no variable named ``line`` (``import
            matplotlib.pyplot as plt`` first).
    """
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    name = line.strip() or "plt"
    if name not in shell.user_ns:
        raise NameError(
            f"%matplot {name}: the notebook has no variable '{name}' "
            f"(import matplotlib.pyplot as {name})"
        )
    module = shell.user_ns[name]
    figure = module.gcf()
    show_figures_in_ipython()  # PNG of the figure as figure_png draws it (pyplot may re-register)
    display(figure)
    module.close(figure)


def _register_matplot_magic() -> bool:
    """Register :func:`matplot` as the ``%matplot`` line magic (True when under IPython)."""
    shell = _ipython_shell()
    if shell is None:
        return False
    shell.register_magic_function(matplot, "line", "matplot")
    return True


show_figures_in_ipython()
_register_matplot_magic()


@_in_style
def variance_figure(
    explained_variance: Sequence[float], k: int, variance_target: Optional[float]
) -> Figure:
    """Scree (bars, per component) and cumulative explained variance with the target and k."""
    ratios = np.asarray(explained_variance, dtype=float) * 100.0
    shown = min(len(ratios), max(2 * k, 30))
    components = np.arange(1, shown + 1)
    cumulative = np.cumsum(ratios)[:shown]
    figure, axis = _styled(figsize=(11, 6))
    axis.bar(components, ratios[:shown], color="#8fb8de", label="per component")
    axis.set_xlabel("principal component (number)")
    axis.set_ylabel("explained variance (% of total)")
    twin = axis.twinx()
    twin.plot(components, cumulative, color="#1f4e79", marker="o", markersize=3, label="cumulative")
    twin.set_ylabel("cumulative explained variance (%)")
    twin.set_ylim(0, 101)
    if variance_target is not None:
        twin.axhline(
            variance_target * 100.0,
            color="#c0392b",
            linestyle="--",
            label=f"target {variance_target:.0%}",
        )
    twin.axvline(k, color="#27ae60", linestyle=":", label=f"chosen k = {k}")
    kept = float(np.sum(ratios[:k]))
    axis.set_title(f"PCA explained variance: k = {k} keeps {kept:.1f}%")
    figure.set_label(
        f"Explained variance of the PCA: k = {k} components keep {kept:.1f}% of the variance"
        + (f" (target {variance_target:.0%})" if variance_target is not None else "")
        + f"; bars per component and the cumulative line, for the first {shown} components"
    )
    handles = axis.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    twin.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], loc="center right")
    return figure


@_in_style
def scatter_figure(points: pd.DataFrame, x: str = "pc_1", y: str = "pc_2") -> Figure:
    """PC1/PC2 scatter coloured by ``label``, one marker shape per ``split``."""
    figure, axis = _styled(figsize=(10, 7))
    labels = sorted(points["label"].dropna().unique())
    colours = matplotlib.colormaps["tab20" if len(labels) > 10 else "tab10"]
    markers = {"Training": "o", "Test": "^"}
    index = {label: position for position, label in enumerate(labels)}
    points = points[points["label"].notna()]
    # One collection per marker shape, coloured point by point: a class per call would be
    # hundreds of collections to draw with 155 classes.
    for split, group in points.groupby(points["split"].fillna("all"), sort=False):
        axis.scatter(
            group[x],
            group[y],
            s=28,
            alpha=0.8,
            color=[colours(index[label] % colours.N) for label in group["label"]],
            marker=markers.get(split, "o"),
        )
    axis.set_xlabel("PC 1 (score, feature units)")
    axis.set_ylabel("PC 2 (score, feature units)")
    title = "Images on the first two principal components (o Training, ^ Test)"
    if len(labels) > colours.N:  # colours repeat: a legend would name two classes per colour
        title += f"\n{len(labels)} classes: colours repeat, no legend"
    else:
        handles = [
            Line2D([], [], linestyle="", marker="o", markersize=7, alpha=0.8, color=colours(i))
            for i in range(len(labels))
        ]
        axis.legend(handles, labels, loc="best", ncol=2 if len(labels) > 8 else 1)
    axis.set_title(title)
    figure.set_label(
        f"Scatter of {len(points)} images on the first two principal components, "
        f"one colour per class ({len(labels)} classes), circles Training, triangles Test"
    )
    return figure


#: Pixels of white between the images of :func:`sample_grid_figure`.
SAMPLE_GRID_GAP = 8


@_in_style
def sample_grid_figure(
    samples: pd.DataFrame,
    images: List[np.ndarray],
    per_row: int,
    classes_in_total: Optional[int] = None,
) -> Figure:
    """A grid of sample images: one row per class (``samples.label``), decoded ``images``.

    ``classes_in_total``: when the grid shows only some of the classes, how many there are; the
    title then says "(shown of total classes)".
    """
    labels = list(dict.fromkeys(samples["label"]))
    rows = max(1, len(labels))
    figure, axis = _styled(figsize=(1.6 * per_row + 1.5, 1.6 * rows + 0.6))
    axis.axis("off")
    # One image of all the cells (white between them), drawn once, not an axes per image.
    cell = max([image.shape[0] for image in images] + [1])
    pitch = cell + SAMPLE_GRID_GAP
    shape = (rows * pitch - SAMPLE_GRID_GAP, per_row * pitch - SAMPLE_GRID_GAP, 3)
    mosaic = np.full(shape, 255, dtype=np.uint8)
    for row, label in enumerate(labels):
        positions = [i for i, value in enumerate(samples["label"]) if value == label]
        for column, position in enumerate(positions[:per_row]):
            image = images[position]
            top, left = row * pitch, column * pitch
            mosaic[top : top + image.shape[0], left : left + image.shape[1]] = image[..., :3]
        axis.text(-0.1 * cell, row * pitch + cell / 2, label, ha="right", va="center", fontsize=12)
    axis.imshow(mosaic, interpolation="antialiased")
    title = "Sample images per class"
    if classes_in_total is not None:
        title += f" ({len(labels)} of {classes_in_total} classes)"
    figure.suptitle(title, fontsize=16)
    named = ", ".join(labels[:MANY_CLASSES]) + (", ..." if len(labels) > MANY_CLASSES else "")
    figure.set_label(
        f"Sample images of {len(labels)}"
        + (f" of {classes_in_total}" if classes_in_total is not None else "")
        + f" classes, up to {per_row} per class: {named}"
    )
    return figure


@_in_style
def class_counts_figure(counts: pd.DataFrame) -> Figure:
    """Images per class (``counts``: ``split``, ``label``, ``images``).

    Up to :data:`MANY_CLASSES` classes: horizontal bars, one per class, stacked by split. With
    more: a histogram of how many classes have how many images (all splits together), so the
    figure keeps one size whatever the number of classes.
    """
    table = counts.pivot_table(
        index="label", columns="split", values="images", aggfunc="sum", fill_value=0
    )
    ordered = [split for split in KNOWN_SPLITS if split in table.columns]
    table = table[ordered + [split for split in table.columns if split not in ordered]]
    if len(table) > MANY_CLASSES:
        return _class_histogram(table.sum(axis=1))
    table = table.iloc[::-1]  # first class at the top
    figure, axis = _styled(figsize=(10, 0.45 * len(table) + 1.8))
    colours = ["#1f4e79", "#8fb8de", "#aaaaaa", "#dddddd"]
    table.plot.barh(stacked=True, ax=axis, color=colours[: table.shape[1]], width=0.7)
    axis.grid(axis="y", visible=False)
    axis.set_xlabel("images (count)")
    axis.set_ylabel("class")
    axis.set_title("Images per class and split")
    axis.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.set_label(
        f"Bar chart of the images of each of {len(table)} classes, stacked by split ("
        + ", ".join(f"{split} {int(table[split].sum())}" for split in table.columns)
        + ")"
    )
    return figure


def _class_histogram(per_class: pd.Series) -> Figure:
    """Histogram: classes (count) by images per class (all splits)."""
    values = per_class.to_numpy(dtype=int)
    low, high = int(values.min()), int(values.max())
    middle = f"{float(np.median(values)):.1f}".removesuffix(".0")
    figure, axis = _styled(figsize=(10, 5))
    bins = np.arange(low, high + 2) - 0.5 if high - low < 40 else 30
    axis.hist(values, bins=bins, color="#1f4e79", edgecolor="white")
    axis.set_xlabel("images per class, all splits (count)")
    axis.set_ylabel("classes (count)")
    axis.set_title(
        f"{len(values)} classes: images per class min {low}, median {middle}, max {high}"
    )
    figure.set_label(
        f"Histogram of the number of images per class over {len(values)} classes: "
        f"min {low}, median {middle}, max {high} images per class"
    )
    return figure


@_in_style
def confusion_matrix_figure(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], accuracy: Optional[float] = None
) -> Figure:
    """Confusion matrix: Test images (counts) per true class (rows) and predicted class (columns).

    Counts are written in the cells while they stay readable (up to 25 classes); class names
    label both axes (their font shrinks for many classes).
    """
    matrix = np.asarray(confusion, dtype=int).reshape(len(labels), len(labels))
    classes = len(labels)
    side = min(max(6.0, 0.5 * classes + 3.0), 30.0)
    figure, axis = _styled(figsize=(side + 1.5, side))
    axis.grid(False)
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, int(matrix.max())))
    colourbar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    colourbar.set_label("Test images (count)")
    tick_size = 12 if classes <= 12 else max(5, int(12 - (classes - 12) / 10))
    axis.set_xticks(range(classes))
    axis.set_yticks(range(classes))
    tilted = classes > 3
    axis.set_xticklabels(
        labels, rotation=45 if tilted else 0, ha="right" if tilted else "center", fontsize=tick_size
    )
    axis.set_yticklabels(labels, fontsize=tick_size)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if classes <= 25:
        threshold = matrix.max() / 2.0
        for row in range(classes):
            for column in range(classes):
                count = matrix[row, column]
                colour = "white" if count > threshold else ("#333333" if count else "#bbbbbb")
                axis.text(
                    column,
                    row,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=14 if classes <= 12 else 9,
                    color=colour,
                )
    title = "Confusion matrix on the Test split"
    if accuracy is not None:
        title += f": accuracy {100 * accuracy:.1f}%"
    axis.set_title(title)
    figure.set_label(
        f"Confusion matrix of {classes} classes on the Test split"
        + (f" (accuracy {100 * accuracy:.1f}%)" if accuracy is not None else "")
        + f": {int(np.trace(matrix))} of {int(matrix.sum())} Test images on the diagonal"
    )
    return figure


@_in_style
def confused_pairs_figure(
    pairs: pd.DataFrame, worst: pd.DataFrame, accuracy: Optional[float] = None
) -> Figure:
    """For many classes, what a confusion matrix cannot show readably: two bar charts.

    Top: the most confused pairs (``pairs``: ``true class``, ``predicted class``, ``images``,
    ``share of true class``), longest bar first. Bottom: the classes with the lowest Test
    accuracy (``worst``: ``class``, ``Test images``, ``right``, ``accuracy``). Either may be
    empty (no mistakes): the panel says so.
    """
    rows = max(len(pairs), 1) + max(len(worst), 1)
    figure, (top, bottom) = _styled(2, 1, figsize=(11, 0.32 * rows + 3.2))
    labels = [
        f"{t} -> {p}" for t, p in zip(pairs.get("true class", []), pairs.get("predicted class", []))
    ]
    top.barh(np.arange(len(pairs)), pairs.get("images", []), color="#c0392b")
    top.set_yticks(np.arange(len(pairs)))
    top.set_yticklabels(labels, fontsize=10)
    top.invert_yaxis()
    for position, (count, share) in enumerate(
        zip(pairs.get("images", []), pairs.get("share of true class", []))
    ):
        top.text(count, position, f" {int(count)} ({100 * share:.0f}%)", va="center", fontsize=10)
    top.set_xlabel("Test images of the true class predicted as the other (count)")
    top.set_title(
        f"{len(pairs)} most confused pairs (true -> predicted)"
        if len(pairs)
        else "No Test image was mistaken for another class"
    )
    bottom.barh(
        np.arange(len(worst)),
        100 * np.asarray(worst.get("accuracy", []), dtype=float),
        color="#1f4e79",
    )
    bottom.set_yticks(np.arange(len(worst)))
    bottom.set_yticklabels(list(worst.get("class", [])), fontsize=10)
    bottom.invert_yaxis()
    bottom.set_xlim(0, 100)
    bottom.set_xlabel("Test accuracy of the class (%)")
    bottom.set_title(
        f"{len(worst)} classes with the lowest Test accuracy"
        if len(worst)
        else "Every class is predicted right"
    )
    for axis in (top, bottom):
        axis.grid(axis="y", visible=False)
    if accuracy is not None:
        figure.suptitle(
            f"Mistakes on the Test split (overall accuracy {100 * accuracy:.1f}%)", fontsize=16
        )
    first = (
        f"; the most confused: {labels[0]}, {int(pairs['images'].iloc[0])} images"
        if len(pairs)
        else "; no mistakes"
    )
    figure.set_label(
        f"Bar charts of the {len(pairs)} most confused class pairs and the {len(worst)} classes "
        f"with the lowest Test accuracy"
        + (f" (overall accuracy {100 * accuracy:.1f}%)" if accuracy is not None else "")
        + first
    )
    return figure


@_in_style
def history_figure(rows: Sequence[Dict[str, object]]) -> Figure:
    """Images and minutes per run, oldest run on the left: bars of images (all, and new ones
    through the CNN), a line of minutes on the right axis."""
    labels = [
        str(row.get("started_at", ""))[:16].replace("T", "\n") or str(row.get("run_id"))
        for row in rows
    ]
    total = [int(row.get("images_total") or 0) for row in rows]
    new = [int(row.get("images_new") or 0) for row in rows]
    minutes = [float(row.get("minutes") or 0.0) for row in rows]
    positions = np.arange(len(rows))
    figure, axis = _styled(figsize=(max(8.0, 0.9 * len(rows) + 4.0), 5.5))
    axis.bar(positions - 0.2, total, width=0.4, color="#8fb8de", label="images (all)")
    axis.bar(positions + 0.2, new, width=0.4, color="#1f4e79", label="new (through the CNN)")
    axis.set_xticks(positions)
    axis.set_xticklabels(labels, fontsize=10)
    axis.set_xlabel("run (start, UTC)")
    axis.set_ylabel("images (count)")
    axis.grid(axis="x", visible=False)
    twin = axis.twinx()
    twin.plot(positions, minutes, color="#c0392b", marker="o", label="minutes")
    twin.set_ylabel("run time (minutes)")
    twin.set_ylim(0, max(minutes + [0.1]) * 1.25)
    twin.grid(False)
    handles, names = axis.get_legend_handles_labels()
    twin_handles, twin_names = twin.get_legend_handles_labels()
    axis.legend(handles + twin_handles, names + twin_names, loc="upper left", fontsize=10)
    axis.set_title(f"Run history: images and minutes per run (last {len(rows)})")
    figure.set_label(  # the figure's one-sentence description (alternative text)
        f"Run history of the last {len(rows)} runs: images in all "
        f"({', '.join(map(str, total))}), new ones through the CNN ({', '.join(map(str, new))}) "
        f"and minutes ({', '.join(f'{m:.1f}' for m in minutes)}) per run, oldest first."
    )
    return figure


@_in_style
def message_figure(title: str, message: str) -> Figure:
    """A small figure that says why there is no plot (e.g. a skipped classifier or PCA)."""
    import textwrap

    figure, axis = _styled(figsize=(8, 2.2))
    axis.axis("off")
    axis.set_title(title)
    axis.text(
        0.5,
        0.45,
        textwrap.fill(message, 70),
        ha="center",
        va="center",
        fontsize=13,
        transform=axis.transAxes,
        color="#444444",
    )
    figure.set_label(f"{title}: {message}")  # the figure's description (alternative text)
    return figure


@_in_style
def timings_figure(seconds: Dict[str, float]) -> Figure:
    """Horizontal bars: seconds per stage, in the order the stages ran, with the total."""
    names = list(seconds)
    values = [float(seconds[name]) for name in names]
    figure, axis = _styled(figsize=(10, 0.55 * len(names) + 2.0))
    positions = np.arange(len(names))
    axis.barh(positions, values, color="#1f4e79")
    axis.set_yticks(positions)
    axis.set_yticklabels(names)
    axis.invert_yaxis()
    axis.grid(axis="y", visible=False)
    top = max(values) if values else 1.0
    for position, value in zip(positions, values):
        axis.text(value + 0.01 * top, position, f"{value:.1f} s", va="center", fontsize=12)
    axis.set_xlim(0, 1.15 * top if top > 0 else 1.0)
    axis.set_xlabel("wall-clock time (seconds)")
    axis.set_ylabel("stage")
    axis.set_title(f"Time per stage (total {sum(values):.1f} s)")
    longest = max(seconds, key=lambda name: seconds[name]) if seconds else None
    figure.set_label(
        f"Bar chart of the wall-clock seconds of {len(names)} stages, total {sum(values):.1f} s"
        + (f"; the longest: {longest}, {float(seconds[longest]):.1f} s" if longest else "")
    )
    return figure
