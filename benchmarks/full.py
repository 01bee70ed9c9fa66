"""``make bench SCALE=full``: the whole local chain on a Fruits-360-sized input, as a user runs it.

What it runs, each in its own processes, one after the other:

1. ``make run``'s two commands on a tree of ``--small`` images (2,000): ``notebooks/local.ipynb``
   through papermill, then ``python -m helpers.report OUT --notebook OUT/local.ipynb``; the peak
   RSS of each command's whole process tree (papermill, kernel, JVM, Python workers) sampled
   every 0.2 s (:func:`benchmarks.run.peak_tree_rss`);
2. the one-process model ceiling (:mod:`benchmarks.ceiling`) on the first ``--ceiling-images``
   (1,000) of those images;
3. the same two commands on ``--n`` images (default 102,639 in 155 classes, Fruits-360's size):
   seconds per stage (the manifest's), each notebook cell's seconds (papermill's metadata), the
   report command's seconds, featurization images/s, the chain's steady-state rate from the
   workers' per-batch timings (as :mod:`benchmarks.pipeline_bench`), the peak RSS and the size of
   every output;
4. ``--new`` images (1,000) added to that tree, and the same commands with ``incremental=True``
   into the same output path: its wall time against the full run's.

The trees are :func:`benchmarks.data.cached_fruits360` trees (made once, then reused); the
``--n`` tree is used through a hard-linked copy, so that adding images leaves the cache as it
was. oneDNN is whatever :mod:`helpers.onednn` decides in each process (on for x86 unless
``TF_ENABLE_ONEDNN_OPTS`` says otherwise); the JSON says what the ceiling and the chain used.

Ratios (targets of issue 15, part 3 and 4): whole job / featurize stage (<= 1.25), listing /
whole job (<= 0.05), peak RSS at ``--n`` / at ``--small`` (<= 1.25), chain steady state /
ceiling (>= 0.9), incremental / full wall time (<= 0.10). The whole job is both commands' wall
time, as ``make run`` spends it.

Prints a table; writes the JSON to ``--output`` (default ``benchmarks/results/full.json``).
Usage: ``python -m benchmarks.full [--n 102639] [--small 2000] [--new 1000] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional

from benchmarks.data import (
    FRUITS360_IMAGES,
    REPO,
    cache_root,
    cached_fruits360,
    image_files,
    make_fruits360,
)
from benchmarks.pipeline_bench import batch_events, steady_rate
from benchmarks.run import RESULTS, machine, peak_tree_rss, python_module, write_results

NOTEBOOK = os.path.join(REPO, "notebooks", "local.ipynb")
#: (name, target, True when the ratio must stay at or below the target)
TARGETS = (
    ("whole_job_over_featurize", 1.25, True),
    ("listing_over_whole_job", 0.05, True),
    ("peak_rss_full_over_small", 1.25, True),
    ("steady_over_ceiling", 0.90, False),
    ("incremental_over_full", 0.10, True),
)


def linked_copy(source: str, target: str) -> str:
    """A copy of the tree ``source`` at ``target`` made of hard links (a plain copy where links
    cannot be made); files added to it later leave ``source`` as it was."""
    shutil.rmtree(target, ignore_errors=True)
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return target


def output_sizes(output: str) -> Dict[str, int]:
    """Bytes of every output: each entry of the published run's folder and each top-level file."""
    sizes: Dict[str, int] = {}
    manifest = json.load(open(os.path.join(output, "manifest.json")))
    run_path = manifest["run_path"].replace("file://", "")
    for base, prefix in ((output, ""), (run_path, "run/")):
        for name in sorted(os.listdir(base)):
            if name.startswith("."):  # Hadoop's .crc checksums
                continue
            path = os.path.join(base, name)
            if os.path.isfile(path):
                sizes[prefix + name] = os.path.getsize(path)
            elif prefix:
                sizes[prefix + name] = sum(
                    os.path.getsize(os.path.join(folder, file))
                    for folder, _, files in os.walk(path)
                    for file in files
                    if not file.startswith(".")
                )
    return sizes


def onednn_everywhere(tensorflow: Dict) -> bool:
    """Whether the manifest's ``tensorflow`` entry says oneDNN was on in the driver and in every
    executor's workers."""
    entries = [tensorflow.get("driver") or {}] + list(tensorflow.get("executors") or [])
    return all(entry.get("onednn") for entry in entries) and bool(tensorflow.get("executors"))


def cell_seconds(notebook: str) -> List[Dict]:
    """Each code cell of an executed notebook: its first line and papermill's duration."""
    cells = json.load(open(notebook))["cells"]
    return [
        {
            "cell": "".join(cell["source"]).strip().splitlines()[-1][:70] if cell["source"] else "",
            "seconds": round(cell["metadata"].get("papermill", {}).get("duration") or 0.0, 3),
        }
        for cell in cells
        if cell["cell_type"] == "code"
    ]


def chain_run(images: str, output: str, work: str, name: str, incremental: bool = False) -> Dict:
    """``make run``'s two commands on ``images`` into ``output``: times, memory, outputs."""
    executed = os.path.join(output, "local.ipynb")
    os.makedirs(output, exist_ok=True)
    timings = os.path.join(work, f"{name}-timings")
    os.makedirs(timings, exist_ok=True)
    log = os.path.join(work, f"{name}.log")
    env = {
        "FRUITS_FEATURE_TIMINGS": timings,  # helpers.features.TIMINGS_ENV; workers inherit it
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    notebook_command = [
        sys.executable,
        "-m",
        "helpers.papermill_cli",  # what make run runs
        NOTEBOOK,
        executed,
        "--cwd",
        os.path.dirname(NOTEBOOK),
        "--log-output",
        "-p",
        "input_path",
        images,
        "-p",
        "output_path",
        output,
    ]
    if incremental:
        notebook_command += ["-p", "incremental", "True"]
    wall_start = time.time()
    notebook = peak_tree_rss(notebook_command, env=env, log=log)
    wall_end = time.time()
    report = peak_tree_rss(
        [sys.executable, "-m", "helpers.report", output, "--notebook", executed], env=env, log=log
    )
    manifest = json.load(open(os.path.join(output, "manifest.json")))
    seconds = manifest["seconds"]
    cells = cell_seconds(executed)
    events = batch_events(timings, wall_start, wall_end)
    through_model = manifest.get("images_through_model") or 0
    result = {
        "images": manifest.get("images_total"),
        "images_through_model": through_model,
        "images_reused": manifest.get("images_reused"),
        "incremental": incremental,
        "notebook_seconds": notebook["seconds"],
        "report_command_seconds": report["seconds"],
        "whole_job_seconds": round(notebook["seconds"] + report["seconds"], 3),
        "stage_seconds": seconds,
        "cell_seconds": cells,
        # the report's own time: the notebook's write_report cell (its "report" stage)
        "report_cell_seconds": sum(
            cell["seconds"] for cell in cells if cell["cell"].startswith("write_report(")
        ),
        "featurize_images_per_s": (
            through_model / seconds["featurize"]
            if seconds.get("featurize") and through_model
            else None
        ),
        "steady": steady_rate(events) if events else None,
        "peak_rss_mb": max(notebook["peak_rss_mb"], report["peak_rss_mb"]),
        "peak_rss_mb_notebook": notebook["peak_rss_mb"],
        "peak_rss_mb_by_kind": notebook["peak_rss_mb_by_kind"],
        "peak_rss_mb_of_each_kind": notebook["peak_rss_mb_of_each_kind"],
        "peak_rss_mb_report_command": report["peak_rss_mb"],
        "output_bytes": output_sizes(output),
        "onednn": manifest.get("tensorflow", {}).get("summary"),
        "onednn_everywhere": onednn_everywhere(manifest.get("tensorflow") or {}),
        "k": manifest.get("k"),
        "log": log,
    }
    classification = os.path.join(
        manifest["run_path"].replace("file://", ""), "classification.json"
    )
    if os.path.exists(classification):
        with open(classification) as handle:
            scored = json.load(handle)
        result["classifier"] = {
            key: scored.get(key)
            for key in ("accuracy", "chance", "train_images", "test_images", "skipped")
        }
    return result


def ratios(results: Dict) -> Dict[str, Optional[float]]:
    full, small = results["full"], results["small"]
    featurize = full["stage_seconds"].get("featurize")
    steady = (full["steady"] or {}).get("images_per_s")
    incremental = results.get("incremental")
    return {
        "whole_job_over_featurize": full["whole_job_seconds"] / featurize if featurize else None,
        "notebook_over_featurize": full["notebook_seconds"] / featurize if featurize else None,
        "listing_over_whole_job": full["stage_seconds"].get("list", 0) / full["whole_job_seconds"],
        "peak_rss_full_over_small": full["peak_rss_mb"] / small["peak_rss_mb"],
        "steady_over_ceiling": (
            steady / results["ceiling"]["median_images_per_s"] if steady else None
        ),
        "incremental_over_full": (
            incremental["whole_job_seconds"] / full["whole_job_seconds"] if incremental else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=FRUITS360_IMAGES)
    parser.add_argument("--small", type=int, default=2000, help="images of the memory baseline run")
    parser.add_argument(
        "--new", type=int, default=1000, help="images added for the incremental run"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ceiling-repeats", type=int, default=3)
    parser.add_argument(
        "--ceiling-images",
        type=int,
        default=1000,
        help="the ceiling runs on the first N images of the --small tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs, logs)")
    parser.add_argument("--output", default=os.path.join(RESULTS, "full.json"))
    args = parser.parse_args()
    if args.n <= args.small:
        raise SystemExit(f"--n ({args.n}) must be larger than --small ({args.small})")

    results: Dict = {
        "machine": machine(),
        "n": args.n,
        "small": args.small,
        "new": args.new,
        "seed": args.seed,
    }
    started = time.perf_counter()
    small_tree = cached_fruits360(args.small, args.seed)
    full_cache = cached_fruits360(args.n, args.seed)
    results["data_seconds"] = round(time.perf_counter() - started, 3)
    os.makedirs(cache_root(), exist_ok=True)
    work = tempfile.mkdtemp(prefix="work-", dir=cache_root())  # same file system: hard links
    print(f"work folder: {work}", flush=True)
    try:
        results["small"] = chain_run(small_tree, os.path.join(work, "out-small"), work, "small")
        print(f"small run: {results['small']['whole_job_seconds']:.0f} s", flush=True)
        write_results(args.output, results, complete=False)
        results["ceiling"] = python_module(
            "benchmarks.ceiling",
            small_tree,
            "--repeats",
            str(args.ceiling_repeats),
            "--limit",
            str(args.ceiling_images),
            timeout=7200,
        )
        print(f"ceiling: {results['ceiling']['median_images_per_s']:.1f} images/s", flush=True)
        write_results(args.output, results, complete=False)
        tree = linked_copy(full_cache, os.path.join(work, "images"))
        output = os.path.join(work, "out")
        results["full"] = chain_run(tree, output, work, "full")
        print(f"full run: {results['full']['whole_job_seconds']:.0f} s", flush=True)
        write_results(args.output, results, complete=False)
        if args.new:
            results["added"] = make_fruits360(tree, args.new, args.seed, first=args.n)
            results["incremental"] = chain_run(tree, output, work, "incremental", incremental=True)
        results["input_files"] = len(image_files(tree))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["ratios"] = ratios(results)
    results["onednn_both_sides"] = (
        bool(results["ceiling"].get("onednn")) and results["full"]["onednn_everywhere"]
    )
    write_results(args.output, results, complete=True)
    print_table(results)
    print(f"JSON: {args.output}")


def print_table(results: Dict) -> None:
    def line(name: str, value: str, target: str = "") -> None:
        print(f"{name:<56} {value:>14}  {target}")

    full, small = results["full"], results["small"]
    isa = results["machine"].get("isa_label") or results["machine"].get("isa", "?")
    print(
        f"\nFruits! full-size benchmark: {full['images']} images "
        f"(memory baseline {small['images']}); {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, ISA {isa}"
    )
    for stage, seconds in full["stage_seconds"].items():
        line(f"stage {stage} (s)", f"{seconds:.1f}")
    line("notebook under papermill (s)", f"{full['notebook_seconds']:.1f}")
    line("report: the write_report cell (s)", f"{full['report_cell_seconds']:.1f}")
    line("python -m helpers.report --notebook (s)", f"{full['report_command_seconds']:.1f}")
    line("whole job (s)", f"{full['whole_job_seconds']:.1f}")
    for cell in full["cell_seconds"]:
        if cell["seconds"] >= 1:
            line(f"  cell: {cell['cell'][:48]}", f"{cell['seconds']:.1f}")
    if full["featurize_images_per_s"]:
        line("featurize stage (images/s)", f"{full['featurize_images_per_s']:.1f}")
    if full["steady"]:
        line("chain steady state (images/s)", f"{full['steady']['images_per_s']:.1f}")
    line("one-process ceiling (images/s)", f"{results['ceiling']['median_images_per_s']:.1f}")
    line("peak RSS full / small (MB)", f"{full['peak_rss_mb']:.0f} / {small['peak_rss_mb']:.0f}")
    for kind, megabytes in full["peak_rss_mb_by_kind"].items():
        small_share = small["peak_rss_mb_by_kind"].get(kind, 0)
        line(f"  at the peak, {kind} (MB)", f"{megabytes:.0f} / {small_share:.0f}")
    for name, size in full["output_bytes"].items():
        line(f"  output {name} (MB)", f"{size / 2**20:.1f}")
    if "classifier" in full and full["classifier"].get("accuracy") is not None:
        line(
            "classifier Test accuracy (chance)",
            f"{full['classifier']['accuracy']:.3f} ({full['classifier']['chance']:.3f})",
        )
    if "incremental" in results:
        incremental = results["incremental"]
        line(
            f"incremental, {results['new']} new images: whole job (s)",
            f"{incremental['whole_job_seconds']:.1f}",
        )
        for stage, seconds in incremental["stage_seconds"].items():
            line(f"  incremental stage {stage} (s)", f"{seconds:.1f}")
    for name, target, at_most in TARGETS:
        value = results["ratios"].get(name)
        shown = "n/a" if value is None else f"{value:.3f}"
        met = (
            ""
            if value is None
            else ("met" if (value <= target if at_most else value >= target) else "NOT met")
        )
        line(f"  {name}", shown, f"{'<=' if at_most else '>='} {target} {met}")
    line("  oneDNN on in the ceiling and in the chain", str(results["onednn_both_sides"]))


if __name__ == "__main__":
    main()
