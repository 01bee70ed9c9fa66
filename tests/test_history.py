"""Run history rows (helpers.history) and their place in the report, without Spark.

The rows written by real scheduled runs are checked in ``tests/test_scheduled.py``.
"""

import json
import re

import pandas as pd
import pytest

from helpers import history, plots, report_html, report_page

ROWS = [
    {
        "run_id": "night-1",
        "started_at": "2026-12-01T01:00:00+00:00",
        "minutes": 2.5,
        "images_total": 240,
        "images_new": 240,
        "images_reused": 0,
        "images_failed": 1,
        "k": 53,
        "explained_variance_kept": 0.951,
        "test_accuracy": 0.9,
        "estimated_cost_usd": 0.035,
        "spark_master": "local[2]",
    },
    {
        "run_id": "night-2",
        "started_at": "2026-12-02T01:00:00+00:00",
        "minutes": 1.0,
        "images_total": 260,
        "images_new": 20,
        "images_reused": 240,
        "images_failed": 1,
        "k": None,
        "explained_variance_kept": None,
        "test_accuracy": None,
        "estimated_cost_usd": None,
        "spark_master": "yarn",
    },
]


def test_rows_parse_and_a_broken_line_is_named():
    text = "".join(json.dumps(row) + "\n" for row in ROWS) + "\n"
    assert history.parse_rows(text) == ROWS
    with pytest.raises(ValueError, match="runs.jsonl line 2 is not JSON"):
        history.parse_rows('{"run_id": "a"}\n{not json\n')
    with pytest.raises(ValueError, match="line 1 is not a JSON object"):
        history.parse_rows("[1, 2]\n")


def test_locations_of_history_and_executed_notebooks():
    assert (
        history.location("s3://b/outputs/nightly", "runs.jsonl")
        == "s3://b/outputs/nightly/history/runs.jsonl"
    )
    assert (
        history.executed_notebook_location("/out", "r1", "notebooks/local.ipynb")
        == "/out/history/r1/local.executed.ipynb"
    )
    assert (
        history.executed_notebook_location("s3://b/o/", "r2", "s3://b/notebooks/cloud.ipynb")
        == "s3://b/o/history/r2/cloud.executed.ipynb"
    )


def test_report_section_shows_the_table_and_the_plot():
    table = history.table(ROWS)
    assert list(table["new"]) == [240, 20] and list(table["Test accuracy"]) == ["90.0%", "-"]
    assert list(table["cost (USD)"]) == ["0.04", "-"] and list(table["k"]) == [53, "-"]
    figure = plots.history_figure(ROWS)
    assert plots.figure_png(figure)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "images and minutes per run" in figure.axes[0].get_title()
    manifest = {
        "run_id": "night-2",
        "images_total": 260,
        "images_featurized": 259,
        "images_failed": 1,
        "k": None,
        "explained_variance_kept": None,
        "pca_skipped": "PCA skipped: needs at least 2 images, 1 featurized",
        "parameters": {},
        "seconds": {},
    }
    counts = pd.DataFrame({"split": ["Training"], "label": ["Kiwi"], "images": [260]})
    notebook = report_page.report_notebook(
        manifest,
        counts,
        pd.DataFrame(columns=["path", "reason"]),
        {report_page.HISTORY_PLOT: plots.figure_png(figure)},
        history=ROWS,
    )
    page = report_html.export_html(notebook)
    assert "8. Run history" in page and "The last 2 runs" in page
    assert "<td>night-1</td>" in page and "<td>yarn</td>" in page
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 1
    assert "PCA skipped: needs at least 2 images, 1 featurized" in page
