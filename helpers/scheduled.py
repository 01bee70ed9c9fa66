"""Scheduled run: the chain's notebook run headless by papermill, incrementally, into one fixed
``output_path``, with the executed notebook kept per run (what ``make nightly`` runs).

    python -m helpers.scheduled [--input PATH] [--output PATH] [--notebook NOTEBOOK]
                                [--run-id ID] [--cost-per-hour USD] [--kernel NAME]
                                [-p NAME VALUE ...]

Each call: a run id (``--run-id``, or one made from the start time), then
``notebooks/local.ipynb`` (or ``--notebook``) executed with ``incremental=True`` into
``--output`` (default ``outputs/nightly``); only new or changed images go through the CNN. The
executed notebook goes to ``<output>/history/<run_id>/<notebook>.executed.ipynb`` and the run
appends its row to ``<output>/history/runs.jsonl`` (:mod:`helpers.history`).

Exit status: 0 when the run published; 1 when it failed (the message names the failing cell and
where the executed notebook with the error is); 75 (``EX_TEMPFAIL``) when another run holds the
``output_path`` (:mod:`helpers.lock`; the message names it); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from helpers import history, lock, log, storage
from helpers.config import PipelineConfig

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
DEFAULT_INPUT = os.path.join(REPO, "data", "sample")
DEFAULT_OUTPUT = os.path.join("outputs", "nightly")
DEFAULT_NOTEBOOK = os.path.join(REPO, "notebooks", "local.ipynb")

#: Kernels that only run inside JupyterHub (sparkmagic's, which send cells to Livy); a headless
#: run of a notebook that names one uses the Python kernel of its environment instead.
JUPYTERHUB_ONLY_KERNELS = {"pysparkkernel": "python3", "sparkkernel": "python3"}

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # sysexits.h EX_TEMPFAIL: try again later


def _value(text: str) -> Any:
    """A ``-p`` value: a Python literal (``3``, ``0.9``, ``None``, ``True``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.scheduled",
        description="Run the chain's notebook headless with papermill, incrementally, into one "
        "output_path; keep the executed notebook under history/<run_id>/.",
    )
    parser.add_argument(
        "--input",
        default=DEFAULT_INPUT,
        help="input_path: folder or s3:// prefix of <Split>/<Class>/*.jpg "
        "(default: the bundled sample)",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="output_path, the same every night (default: outputs/nightly)",
    )
    parser.add_argument(
        "--notebook",
        default=DEFAULT_NOTEBOOK,
        help="the notebook to run (default: notebooks/local.ipynb)",
    )
    parser.add_argument("--run-id", default=None, help="the run's id (default: from the time)")
    parser.add_argument(
        "--cost-per-hour",
        type=float,
        default=None,
        help="USD per hour of the machines, for the history's cost estimate",
    )
    parser.add_argument(
        "--kernel",
        default=None,
        help="the Jupyter kernel papermill runs it with (default: the one the "
        "notebook names; python3 for JupyterHub's PySpark kernel)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="another notebook parameter (e.g. -p spark_master 'local[2]')",
    )
    return parser.parse_args(argv)


def papermill_kernel(notebook: str) -> str:
    """The kernel a headless run of ``notebook`` uses: the one its metadata names, unless that
    one only runs in JupyterHub (:data:`JUPYTERHUB_ONLY_KERNELS`)."""
    from papermill.iorw import load_notebook_node

    named = load_notebook_node(notebook).metadata.get("kernelspec", {}).get("name", "python3")
    return JUPYTERHUB_ONLY_KERNELS.get(named, named)


def main(argv: Optional[List[str]] = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    log.configure("", sys.stderr)  # the root logger: papermill's records too
    from helpers.pipeline import new_run_id

    output = storage.to_local_or_uri(arguments.output)
    parameters: Dict[str, Any] = {name: _value(value) for name, value in arguments.parameter}
    parameters.update(
        {
            "input_path": storage.to_local_or_uri(arguments.input),
            "output_path": output,
            "incremental": True,
            "run_id": arguments.run_id or new_run_id(datetime.now(timezone.utc)),
        }
    )
    if arguments.cost_per_hour is not None:
        parameters["cost_per_hour"] = arguments.cost_per_hour
    try:
        config = PipelineConfig.from_parameters(parameters)  # bad parameters: stop before a kernel
    except (TypeError, ValueError) as error:
        print(f"scheduled run not started: {error}", file=sys.stderr)
        return EXIT_USAGE
    run_id = config.run_id

    # A fast look at the lock (local output_path: no Spark needed); the run itself takes it.
    if storage.local_file(output) is not None:
        holder = lock.read_holder(None, output)
        if holder is not None and lock.stale_reason(holder) is None:
            print(
                f"scheduled run {run_id} not started: output_path {output} is in use by "
                f"{lock.describe(holder)}",
                file=sys.stderr,
            )
            return EXIT_LOCKED

    executed = history.executed_notebook_location(output, run_id, arguments.notebook)
    local_executed = storage.local_file(executed)
    if local_executed is not None:
        os.makedirs(os.path.dirname(local_executed), exist_ok=True)
    print(
        f"scheduled run {run_id}: {arguments.notebook} -> {output} (executed notebook: {executed})",
        flush=True,
    )
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            arguments.notebook,
            executed,
            parameters=parameters,
            kernel_name=arguments.kernel or papermill_kernel(arguments.notebook),
            cwd=os.path.dirname(os.path.abspath(arguments.notebook))
            if "://" not in arguments.notebook
            else os.path.join(REPO, "notebooks"),
            log_output=True,
            progress_bar=False,
        )
    except PapermillExecutionError as error:
        if error.ename == lock.RunLockedError.__name__:
            print(f"scheduled run {run_id} not started: {error.evalue}", file=sys.stderr)
            return EXIT_LOCKED
        print(
            f"scheduled run {run_id} FAILED in cell {error.exec_count}: {error.ename}: "
            f"{error.evalue}\nthe executed notebook with the error: {executed}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 (kernel died, notebook unreadable...)
        print(
            f"scheduled run {run_id} FAILED: {type(error).__name__}: {error}\n"
            f"the executed notebook (as far as it got): {executed}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    rows = history.read_rows(None, output) if local_executed is not None else []
    latest = rows[-1] if rows else {}
    if latest.get("run_id") == run_id:
        print(
            f"scheduled run {run_id} published: {latest.get('images_total')} images, "
            f"{latest.get('images_new')} new through the CNN, {latest.get('minutes')} min"
        )
    print(f"history: {history.location(output, history.RUNS_JSONL)}")
    print(f"executed notebook: {executed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
