"""Class summary: images per class and split, whole for a few classes, summarised for many."""

from __future__ import annotations

from typing import Any, Tuple

import pandas as pd

from helpers import plots
from helpers.images import KNOWN_SPLITS


def counts_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Images per class (rows) and split (columns), with totals."""
    table = counts.pivot_table(
        index="label", columns="split", values="images", aggfunc="sum", fill_value=0
    )
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
        self.statistics = (
            pd.DataFrame(
                {
                    column: [
                        len(per_class[per_class[column] > 0]),
                        int(per_class[column].sum()),
                        int(per_class[column].min()),
                        float(per_class[column].median()),
                        int(per_class[column].max()),
                    ]
                    for column in per_class.columns
                },
                index=[
                    "classes",
                    "images",
                    "images per class: min",
                    "images per class: median",
                    "images per class: max",
                ],
                dtype=object,
            )
            if self.classes
            else pd.DataFrame()
        )
        ranked = per_class.sort_values("all splits", kind="stable") if self.classes else per_class
        self.smallest = ranked.head(top)
        self.largest = ranked.iloc[::-1].head(top) if self.classes else ranked

    def spread(self) -> Tuple[int, float, int]:
        """Images per class over all splits: ``(min, median, max)``."""
        column = self.statistics["all splits"]
        return (
            int(column["images per class: min"]),
            float(column["images per class: median"]),
            int(column["images per class: max"]),
        )

    def text(self) -> str:
        """One line: classes, images, images per class min / median / max, extremes."""
        if not self.classes:
            return "no class: no image lies in a class folder"
        low, middle, high = self.spread()

        def named(frame: pd.DataFrame) -> str:
            return ", ".join(
                f"{label} ({int(row['all splits'])})" for label, row in frame.iterrows()
            )

        return (
            f"{self.classes} classes, {int(self.statistics['all splits']['images'])} images; "
            f"images per class (all splits): min {low}, median {number(middle)}, max {high}; "
            f"smallest: {named(self.smallest)}; largest: {named(self.largest)}"
        )

    def __repr__(self) -> str:
        return self.text() if self.many or not self.classes else self.table.to_string()

    def full_table_html(self) -> str:
        """The whole table, folded in a ``<details>`` element (open it to read)."""
        return (
            f"<details><summary>All {self.classes} classes: images per class and split "
            f"(click to open)</summary>\n{self.table.to_html(border=0)}\n</details>"
        )

    def _repr_html_(self) -> str:
        if not self.many:
            return self.table.to_html(border=0)
        low, middle, high = self.spread()
        return (
            f"<p><strong>{self.classes} classes</strong>, images per class (all splits): "
            f"min {low}, median {number(middle)}, max {high}.</p>\n"
            f"{statistics_frame(self.statistics).to_html(border=0)}\n"
            f"<p>The {len(self.smallest)} smallest classes:</p>\n"
            f"{self.smallest.to_html(border=0)}\n"
            f"<p>The {len(self.largest)} largest classes:</p>\n"
            f"{self.largest.to_html(border=0)}\n{self.full_table_html()}"
        )


def statistics_frame(statistics: pd.DataFrame) -> pd.DataFrame:
    """Statistics with whole numbers written without a decimal point (medians may be .5)."""
    return statistics.map(number)


def number(value: Any) -> Any:
    """A count as an integer, a median of an even number of classes with its .5."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 1)
    return value


def class_summary(counts: pd.DataFrame, many: int = plots.MANY_CLASSES) -> ClassSummary:
    """Images per class (``counts`` as ``Run.class_counts``), whole or summarised: see
    :class:`ClassSummary`."""
    return ClassSummary(counts, many=many)
