"""``make bench SCALE=sample``: the bundled sample's notebook, cold as ``make run`` runs it, and warm.

What it runs, one after the other:

1. ``--repeats`` times (2), ``make run``'s two commands on ``data/sample`` into a fresh folder
   (:func:`benchmarks.full.chain_run`): papermill's seconds for the whole notebook and for each
   cell, and the notebook / featurize cell ratio (issue 15's target for the sample: <= 2),
   with the part of the notebook no stage of the chain can shorten (:func:`featurize_ratio`);
2. the same notebook's cells twice in one Jupyter kernel (nbclient, no papermill): a cold pass,
   then a warm pass into another folder, with the same JVM and the same Python workers. The warm
   pass is what a run costs when nothing has to start: the floor of the ratio above for a chain
   kept running between runs (a local Spark service kernels attach to). Each pass's ratio is the
   sum of its cells' seconds over its featurize cell's.

Prints a table; writes the JSON to ``--output`` (default ``benchmarks/results/sample.json``).
Usage: ``python -m benchmarks.sample [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Dict, List

from benchmarks.data import REPO
from benchmarks.full import NOTEBOOK, chain_run
from benchmarks.run import RESULTS, machine, write_results

SAMPLE = os.path.join(REPO, "data", "sample")
FEATURIZE_CELL = "run.featurize()"
CLOSE_CELL = "run.close()"
#: The cell that imports the helpers and starts the session (its last line shows the config).
SESSION_CELL = "config"


def featurize_ratio(cells: List[Dict], total: float) -> Dict:
    """``total`` seconds against the featurize cell's, split three ways.

    ``start_stop_seconds``: what any notebook on a local Spark session pays whatever its stages
    do: ``total`` outside the cells (the kernel's start and each cell's round trip), the cell
    that imports the helpers and starts the JVM, and the cell that stops it.
    ``stages_seconds``: every other cell but featurize (the chain's other stages and figures).
    ``floor_over_featurize``: the ratio if those stages took no time at all;
    ``stages_budget_for_2x``: the seconds they may take together for the notebook to be 2x its
    featurize cell (negative: out of reach whatever they cost).
    """

    def of(name: str) -> float:
        return sum(cell["seconds"] for cell in cells if cell["cell"] == name)

    featurize = of(FEATURIZE_CELL)
    start_stop = total - sum(cell["seconds"] for cell in cells)
    start_stop += of(SESSION_CELL) + of(CLOSE_CELL)
    stages = total - featurize - start_stop
    return {
        "notebook_seconds": round(total, 3),
        "featurize_cell_seconds": featurize,
        "notebook_over_featurize": round(total / featurize, 3),
        "start_stop_seconds": round(start_stop, 3),
        "stages_seconds": round(stages, 3),
        "floor_over_featurize": round((featurize + start_stop) / featurize, 3),
        "stages_budget_for_2x": round(featurize - start_stop, 3),
    }


def cold_run(work: str, index: int) -> Dict:
    """``make run``'s commands on the sample into a fresh folder; papermill's own seconds."""
    output = os.path.join(work, f"cold-{index}")
    result = chain_run(SAMPLE, output, work, f"cold-{index}")
    with open(os.path.join(output, "local.ipynb")) as handle:
        papermill_seconds = json.load(handle)["metadata"]["papermill"]["duration"]
    return {
        **featurize_ratio(result["cell_seconds"], papermill_seconds),
        "whole_job_seconds": result["whole_job_seconds"],
        "cell_seconds": result["cell_seconds"],
        "onednn": result["onednn"],
    }


def one_kernel(work: str) -> Dict[str, Dict]:
    """The notebook's cells twice in one kernel, cold then warm; ``run.close()`` at the end."""
    import nbformat
    from nbclient import NotebookClient

    # the kernel inherits these, as it does from the Makefile under make run
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    body = [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and cell.source.strip() != CLOSE_CELL
    ]
    executed = nbformat.v4.new_notebook(metadata=notebook.metadata)
    client = NotebookClient(
        executed,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
    )

    def execute(source: str) -> float:
        """Run ``source`` as the executed notebook's next cell (progress bars update their own
        cell's output by index); its wall seconds."""
        executed.cells.append(nbformat.v4.new_code_cell(source))
        start = time.perf_counter()
        client.execute_cell(executed.cells[-1], len(executed.cells) - 1)
        return time.perf_counter() - start

    passes: Dict[str, Dict] = {}
    with client.setup_kernel():
        for name in ("cold", "warm"):
            output = os.path.join(work, f"kernel-{name}")
            parameters = f"input_path = {SAMPLE!r}\noutput_path = {output!r}"
            timed = [
                {
                    "cell": source.strip().splitlines()[-1][:70],
                    "seconds": round(execute(source), 3),
                }
                for source in [body[0].source, parameters] + [cell.source for cell in body[1:]]
            ]
            passes[name] = {
                **featurize_ratio(timed, sum(cell["seconds"] for cell in timed)),
                "cell_seconds": timed,
            }
            # the next pass's Run finds this session running and keeps it; its lock goes now
            execute(f"run_{name} = run\nrun.lock.release()\nrun.lock = None")
        # the cold pass's Run built the session: its close() stops the JVM and the workers
        execute("run_warm.close()\nrun_cold.close()")
    return passes


def table(results: Dict) -> str:
    rows = []
    for index, run in enumerate(results["cold_runs"], 1):
        rows.append(
            (
                f"make run's notebook, run {index}: notebook / featurize cell (s), ratio",
                f"{run['notebook_seconds']:.1f} / {run['featurize_cell_seconds']:.1f}, "
                f"{run['notebook_over_featurize']:.2f}",
            )
        )
        rows.append(
            (
                f"  run {index}: start and stop / other stages (s), floor ratio",
                f"{run['start_stop_seconds']:.1f} / {run['stages_seconds']:.1f}, "
                f"{run['floor_over_featurize']:.2f}",
            )
        )
        rows.append(
            (
                f"  run {index}: other stages now / their budget for 2x (s)",
                f"{run['stages_seconds']:.1f} / {run['stages_budget_for_2x']:.1f}",
            )
        )
    for name, run in results["one_kernel"].items():
        rows.append(
            (
                f"one kernel, {name} pass: cells / featurize cell (s), ratio",
                f"{run['notebook_seconds']:.1f} / {run['featurize_cell_seconds']:.1f}, "
                f"{run['notebook_over_featurize']:.2f}",
            )
        )
    width = max(len(label) for label, _ in rows) + 2
    head = f"Fruits! sample benchmark; {results['machine']['cpu']}, ISA {results['machine']['isa']}"
    return "\n".join([head] + [f"{label:<{width}}{value:>20}" for label, value in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(RESULTS, "sample.json"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fruits-sample-bench-")
    try:
        results = {"machine": machine(), "images": SAMPLE}
        results["cold_runs"] = [cold_run(work, index) for index in range(1, args.repeats + 1)]
        write_results(args.output, results, complete=False)
        results["one_kernel"] = one_kernel(work)
        write_results(args.output, results, complete=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    print(f"JSON: {os.path.relpath(args.output, REPO)}")


if __name__ == "__main__":
    main()
