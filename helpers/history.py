"""History: one row per published run, kept in ``<output_path>/history/``.

- ``history/runs.jsonl``: one JSON object per line, one line per run, oldest first;
- ``history/latest.json``: the last row alone (what a scheduler's notification reads);
- ``history/<run_id>/<notebook>.executed.ipynb``: the executed notebook of a scheduled run
  (written by the scheduler, :mod:`helpers.scheduled`, or the EMR step).

:func:`record_run` appends the row of a finished run; :func:`helpers.report.write_report` calls
it, so every run that writes its report (interactive, papermill, EMR step) is recorded once (a
second call for the same run replaces its row). The append is a read-modify-write through
:mod:`helpers.storage` (local or ``s3://``), safe because the run holds the ``output_path``'s
lock (:mod:`helpers.lock`). Row fields: :data:`ROW_FIELDS`.

    python -m helpers.history OUTPUT_PATH     # prints the history of a local output_path
"""

from __future__ import annotations

import json
import socket
import sys
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from helpers import storage

HISTORY_DIR = "history"
RUNS_JSONL = "runs.jsonl"
LATEST_JSON = "latest.json"
#: Runs shown in the report's history table and plot (all are in ``runs.jsonl``).
SHOWN_IN_REPORT = 10

#: A row: the run, when, how long, images (total / new: through the CNN / reused / failed),
#: PCA, Test accuracy (``None`` when the classifier was skipped), estimated cost (``None``
#: without ``cost_per_hour``), and where it ran.
ROW_FIELDS = (
    "run_id",
    "started_at",
    "finished_at",
    "minutes",
    "images_total",
    "images_new",
    "images_reused",
    "images_failed",
    "k",
    "explained_variance_kept",
    "test_accuracy",
    "classifier_skipped",
    "estimated_cost_usd",
    "cost_per_hour",
    "spark_master",
    "host",
    "input_path",
)


def location(output_path: str, *names: str) -> str:
    """``<output_path>/history/<names...>``."""
    return storage.output_location(output_path, "/".join((HISTORY_DIR,) + names))


def executed_notebook_location(output_path: str, run_id: str, notebook: str) -> str:
    """Where a scheduled run keeps its executed notebook:
    ``<output_path>/history/<run_id>/<notebook>.executed.ipynb`` (``notebook``: a name or
    path such as ``local.ipynb``)."""
    name = notebook.rstrip("/").rsplit("/", 1)[-1]
    name = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    return location(output_path, run_id, f"{name}.executed.ipynb")


def run_row(
    run: Any, classification: Any = None, finished_at: Optional[datetime] = None
) -> Dict[str, Any]:
    """The history row of a run whose manifest is written (and classifier result known)."""
    manifest = run.manifest
    finished = finished_at or datetime.now(timezone.utc)
    minutes = round((finished - run.started_at).total_seconds() / 60.0, 3)
    cost_per_hour = run.config.cost_per_hour
    return {
        "run_id": run.run_id,
        "started_at": run.started_at.isoformat(),
        "finished_at": finished.isoformat(),
        "minutes": minutes,
        "images_total": manifest.get("images_total"),
        "images_new": manifest.get("images_through_model"),
        "images_reused": manifest.get("images_reused"),
        "images_failed": manifest.get("images_failed"),
        "k": manifest.get("k"),
        "explained_variance_kept": manifest.get("explained_variance_kept"),
        "test_accuracy": getattr(classification, "accuracy", None),
        "classifier_skipped": (
            getattr(classification, "skipped", None)
            if classification is not None
            else "no classifier run"
        ),
        "estimated_cost_usd": (
            round(minutes / 60.0 * cost_per_hour, 4) if cost_per_hour is not None else None
        ),
        "cost_per_hour": cost_per_hour,
        "spark_master": run.spark.sparkContext.master,
        "host": socket.gethostname(),
        "input_path": run.config.input_path,
    }


def parse_rows(text: str, where: str = RUNS_JSONL) -> List[Dict[str, Any]]:
    """The rows of a ``runs.jsonl`` text (blank lines skipped).

    Raises:
        ValueError: a line is not a JSON object (named by its number and ``where``).
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise ValueError(
                f"{where} line {number} is not JSON ({error}): fix or remove it"
            ) from None
        if not isinstance(row, dict):
            raise ValueError(f"{where} line {number} is not a JSON object: fix or remove it")
        rows.append(row)
    return rows


def read_rows(spark: Any, output_path: str) -> List[Dict[str, Any]]:
    """Every recorded run of ``output_path``, oldest first (empty when none). A local
    ``output_path`` needs no Spark session (``spark`` may be ``None``)."""
    where = location(output_path, RUNS_JSONL)
    data = storage.read_bytes_if_exists(spark, where)
    return parse_rows(data.decode("utf-8"), where) if data is not None else []


def record_run(run: Any, classification: Any = None) -> Dict[str, Any]:
    """Append the run's row to ``history/runs.jsonl`` (replacing a row of the same run) and
    write it as ``history/latest.json``; return the row."""
    row = run_row(run, classification)
    rows = [
        old
        for old in read_rows(run.spark, run.config.output_path)
        if old.get("run_id") != row["run_id"]
    ] + [row]
    text = "".join(json.dumps(item, sort_keys=True, default=str) + "\n" for item in rows)
    storage.write_bytes_atomic(
        run.spark, location(run.config.output_path, RUNS_JSONL), text.encode("utf-8")
    )
    storage.write_json_atomic(run.spark, location(run.config.output_path, LATEST_JSON), row)
    return row


def table_text(rows: List[Dict[str, Any]]) -> str:
    """The rows as a plain-text table (run, start, minutes, images, k, accuracy, cost)."""
    return table(rows).to_string(index=False) if rows else "no run recorded yet"


def table(rows: List[Dict[str, Any]]) -> Any:
    """The rows as a small pandas table, for the report and the command line."""
    import pandas as pd

    def percent(value: Any) -> str:
        return "-" if value is None else f"{100 * float(value):.1f}%"

    return pd.DataFrame(
        [
            {
                "run": row.get("run_id"),
                "started (UTC)": str(row.get("started_at", ""))[:19].replace("T", " "),
                "minutes": round(float(row.get("minutes") or 0.0), 1),
                "images": row.get("images_total"),
                "new": row.get("images_new"),
                "reused": row.get("images_reused"),
                "failed": row.get("images_failed"),
                "k": "-" if row.get("k") is None else row.get("k"),
                "variance kept": percent(row.get("explained_variance_kept")),
                "Test accuracy": percent(row.get("test_accuracy")),
                "cost (USD)": (
                    "-"
                    if row.get("estimated_cost_usd") is None
                    else f"{float(row['estimated_cost_usd']):.2f}"
                ),
                "ran on": row.get("spark_master"),
            }
            for row in rows
        ]
    )


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m helpers.history OUTPUT_PATH``: print the run history of a local folder."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1 or arguments[0].startswith("-"):
        print(
            "usage: python -m helpers.history OUTPUT_PATH (a local folder; for s3:// read "
            "OUTPUT_PATH/history/runs.jsonl with aws s3 cp)",
            file=sys.stderr,
        )
        return 2
    if storage.local_file(arguments[0]) is None:
        print(
            f"{arguments[0]} is not a local folder: aws s3 cp "
            f"{location(arguments[0], RUNS_JSONL)} -",
            file=sys.stderr,
        )
        return 2
    print(table_text(read_rows(None, arguments[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
