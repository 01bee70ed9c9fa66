"""``make bench``: every benchmark of the chain in one invocation, a table, and a JSON file.

1. the one-process model ceiling (:mod:`benchmarks.ceiling`) and the chain's steady-state
   featurization (:mod:`benchmarks.pipeline_bench`), same images, size and cores, at every
   image count; target 1 is judged on the largest (a steady state needs a long enough run);
2. the whole job against the P8-notebook baseline (:mod:`benchmarks.p8_baseline`): target 2;
   ceiling, chain and baseline again at the ``--curve`` sizes (throughput vs number of images);
3. PCA at scale against numpy (:mod:`benchmarks.pca_scale`): target 3;
4. peak memory (RSS of the driver and every worker process) at two sizes: target 4;
5. XLA and bfloat16 against fp32 (:mod:`benchmarks.ceiling` variants);
6. input size: throughput and accuracy at 224/160/128/100 (:mod:`benchmarks.image_size`);
7. TensorFlow's oneDNN kernels on and off (``TF_ENABLE_ONEDNN_OPTS=1`` / ``0``): the ceiling
   and the chain once each, on the first size; the table and the JSON name the CPU's ISA
   (:func:`helpers.onednn.cpu_isa`: AVX2, AVX-512, VNNI, BF16, AMX).

Each measurement runs in its own process (fresh Spark, fresh TensorFlow). Images are synthetic
100x100 JPEGs in the Fruits-360 layout, made on the fly (:mod:`benchmarks.data`).

Usage: ``python -m benchmarks.run [--n 300] [--repeats 3] [--curve 100,1000,5000]
[--skip p8,pca,memory,precision,sizes,onednn] [--output results.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median
from typing import Dict, List, Optional, Set

import psutil

from benchmarks.data import REPO, image_files, make_dataset
from helpers import onednn
from helpers.session import WORKER_DAEMON_MODULE

RESULTS = os.path.join(REPO, "benchmarks", "results")


def write_results(path: str, results: Dict, complete: bool) -> None:
    """Write ``results`` as JSON to ``path`` (replaced whole), with ``"complete": complete``.

    Called after each part of a benchmark with ``complete=False``, so a run stopped half-way
    keeps what it measured, and once at the end with ``complete=True``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w") as handle:
        json.dump({**results, "complete": complete}, handle, indent=2, default=str)
    os.replace(partial, path)


def python_module(module: str, *args: str, timeout: int = 1800, onednn_opts: str = "") -> Dict:
    """Run ``python -m module args`` and return the last JSON line it printed; ``onednn_opts``
    (``"1"`` / ``"0"``), when given, is the ``TF_ENABLE_ONEDNN_OPTS`` it starts with."""
    environment = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2")
    if onednn_opts:
        environment[onednn.ONEDNN_ENV] = onednn_opts
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed ({completed.returncode}): {completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def python_modules(module: str, *args: str) -> List[Dict]:
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{module} failed: {completed.stderr[-3000:]}")
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]


def process_kind(process: psutil.Process) -> str:
    """What a process of a chain run is: ``jvm``, ``spark workers`` (pyspark's daemon and the
    Python workers it forks), ``driver`` (the notebook's kernel or a driver script, such as
    target 4's ``python -c "...run_pipeline(...)"``) or
    ``other`` (papermill, the report command)."""
    try:
        argv = process.cmdline()
    except psutil.Error:
        return "other"
    return kind_of(argv)


def kind_of(argv: List[str]) -> str:
    """:func:`process_kind` of a process whose command line is ``argv``."""
    line = " ".join(argv)
    if argv and os.path.basename(argv[0]) == "java":
        return "jvm"
    if any(module in line for module in ("pyspark.daemon", "pyspark.worker", WORKER_DAEMON_MODULE)):
        return "spark workers"
    if any(driver in line for driver in ("ipykernel_launcher", "cluster_driver", "run_pipeline(")):
        return "driver"
    return "other"


def tree_rss_by_kind(root: psutil.Process) -> Dict[str, int]:
    """The RSS (bytes) of ``root`` and all its descendants, summed by :func:`process_kind`.

    A JVM's child that is still a JVM, or has no command line yet (in the middle of its exec),
    has not exec'd yet: the JVM starts every command it runs (Hadoop's local file system runs
    ``chmod`` for each file it writes) through a child sharing its memory until the exec, so
    that child is not counted (it would count the JVM twice).
    Raises ``psutil.Error`` when ``root`` is gone."""
    kinds: Dict[int, str] = {}
    sizes: Dict[int, int] = {}
    parents: Dict[int, int] = {}
    starting: Set[int] = set()
    for member in [root] + root.children(recursive=True):
        try:
            sizes[member.pid] = member.memory_info().rss
            parents[member.pid] = member.ppid()
            argv = member.cmdline()  # each time: a new process may not have exec'd
        except psutil.Error:
            continue
        kinds[member.pid] = kind_of(argv)
        if not argv:
            starting.add(member.pid)
    by_kind: Dict[str, int] = {}
    for pid, kind in kinds.items():
        if kinds.get(parents[pid]) == "jvm" and (kind == "jvm" or pid in starting):
            continue
        by_kind[kind] = by_kind.get(kind, 0) + sizes[pid]
    return by_kind


def peak_tree_rss(
    command: List[str], env: Optional[Dict[str, str]] = None, log: Optional[str] = None
) -> Dict:
    """Run ``command`` (environment ``env`` added; output to the file ``log`` or nowhere);
    sample the summed RSS of it and all its descendants every 0.2 s. Returns the peak, the
    peak of each :func:`process_kind` alone, the split of the peak by kind (MB) and the wall
    seconds."""
    output = open(log, "ab") if log else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )
    root = psutil.Process(process.pid)
    peak, at_peak, kind_peaks = 0, {}, {}
    while process.poll() is None:
        try:
            by_kind = tree_rss_by_kind(root)
        except psutil.Error:
            break
        total = sum(by_kind.values())
        if total > peak:
            peak, at_peak = total, by_kind
        for kind, rss in by_kind.items():
            kind_peaks[kind] = max(kind_peaks.get(kind, 0), rss)
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if log:
        output.close()
    if process.returncode != 0:
        raise RuntimeError(
            f"{command} failed with {process.returncode}" + (f" (output in {log})" if log else "")
        )
    megabytes = lambda values: {k: round(v / 2**20, 1) for k, v in sorted(values.items())}  # noqa: E731
    return {
        "peak_rss_mb": peak / 2**20,
        "peak_rss_mb_by_kind": megabytes(at_peak),
        "peak_rss_mb_of_each_kind": megabytes(kind_peaks),
        "seconds": round(seconds, 3),
    }


def machine() -> Dict:
    cpu = "unknown"
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    import keras
    import pyspark
    import tensorflow as tf

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "isa": onednn.cpu_isa(flags),
        "isa_label": onednn.ISA_LABELS.get(onednn.cpu_isa(flags)),
        "onednn_env": os.environ.get(onednn.ONEDNN_ENV),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def pipeline_and_baseline(images: str, work: str, name: str, repeats: int, p8: bool) -> Dict:
    """Ceiling, chain and (when ``p8``) the P8 baseline on the images in ``images``."""
    count = len(image_files(images))
    ceilings = [
        python_module("benchmarks.ceiling", images, "--repeats", "3") for _ in range(repeats)
    ]
    runs = [
        python_module("benchmarks.pipeline_bench", images, os.path.join(work, f"{name}-out{i}"))
        for i in range(repeats)
    ]
    point = {
        "images": count,
        "ceiling_runs": ceilings,
        "ceiling_images_per_s": median(c["median_images_per_s"] for c in ceilings),
        "pipeline_runs": runs,
        "pipeline_steady_images_per_s": median(r["steady_images_per_s"] for r in runs),
        "pipeline_job_seconds": median(r["job_seconds"] for r in runs),
        "pipeline_warm_job_seconds": median(r["warm_job_seconds"] for r in runs),
    }
    point["target1_ratio"] = point["pipeline_steady_images_per_s"] / point["ceiling_images_per_s"]
    if p8:
        baseline = python_module(
            "benchmarks.p8_baseline", images, os.path.join(work, f"{name}-p8"), timeout=3600
        )
        point["p8"] = baseline
        point["p8_job_seconds"] = baseline["seconds"]["total_after_session"]
        point["target2_speedup_cold"] = point["p8_job_seconds"] / point["pipeline_job_seconds"]
        point["target2_speedup_warm"] = point["p8_job_seconds"] / point["pipeline_warm_job_seconds"]
    return point


def onednn_both_ways(images: str, work: str) -> Dict:
    """The ceiling and the chain once with oneDNN on and once off (``TF_ENABLE_ONEDNN_OPTS``
    set explicitly in the process that runs them), on ``images``."""
    ways: Dict = {}
    for way, value in (("on", "1"), ("off", "0")):
        ceiling = python_module("benchmarks.ceiling", images, "--repeats", "3", onednn_opts=value)
        chain = python_module(
            "benchmarks.pipeline_bench",
            images,
            os.path.join(work, f"onednn-{way}-out"),
            onednn_opts=value,
        )
        ways[way] = {
            "env": value,
            "ceiling_onednn": ceiling["onednn"],
            "ceiling_images_per_s": ceiling["median_images_per_s"],
            "ceiling_run": ceiling,
            "pipeline_onednn": chain["onednn"],
            "pipeline_steady_images_per_s": chain["steady_images_per_s"],
            "pipeline_job_seconds": chain["job_seconds"],
            "pipeline_warm_job_seconds": chain["warm_job_seconds"],
            "probe_seconds": chain["tensorflow"].get("probe_seconds"),
        }
    ways["images"] = len(image_files(images))
    ways["ceiling_speedup"] = (
        ways["on"]["ceiling_images_per_s"] / ways["off"]["ceiling_images_per_s"]
    )
    ways["pipeline_speedup"] = (
        ways["on"]["pipeline_steady_images_per_s"] / ways["off"]["pipeline_steady_images_per_s"]
    )
    return ways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--curve",
        default="100,1000,5000",
        help="more image counts, one run each, for throughput vs number of images",
    )
    parser.add_argument("--pca-rows", type=int, default=100_000)
    parser.add_argument("--skip", default="")
    parser.add_argument(
        "--output",
        default=os.path.join(RESULTS, "latest.json"),
        help="where the JSON goes (default benchmarks/results/latest.json)",
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: Dict = {"machine": machine(), "n": args.n, "repeats": args.repeats}
    work = tempfile.mkdtemp(prefix="fruits-bench-")
    try:
        images = os.path.join(work, "images")
        make_dataset(images, args.n, seed=1)
        headline = pipeline_and_baseline(images, work, "main", args.repeats, "p8" not in skip)
        results.update(headline)
        write_results(args.output, results, complete=False)
        curve = [headline]
        counts = sorted({int(c) for c in args.curve.split(",") if c} - {args.n})
        for count in counts:
            folder = os.path.join(work, f"images{count}")
            make_dataset(folder, count, seed=1)
            repeats = args.repeats if count == counts[-1] and count > args.n else 1  # target 1's
            curve.append(
                pipeline_and_baseline(folder, work, f"n{count}", repeats, "p8" not in skip)
            )
            write_results(args.output, {**results, "curve": curve}, complete=False)
        results["curve"] = sorted(curve, key=lambda point: point["images"])
        # Target 1 is a steady state: judged on the run with the most images (at 300, each of
        # the 2 workers runs 3 batches and the first one re-warms after the idle between runs).
        longest = results["curve"][-1]
        results["target1_images"] = longest["images"]
        results["target1_ratio"] = longest["target1_ratio"]

        if "pca" not in skip:
            results["pca_scale"] = python_module(
                "benchmarks.pca_scale", work, "--rows", str(args.pca_rows)
            )
            results["target3_ratio"] = results["pca_scale"]["gram_vs_numpy"]
            write_results(args.output, results, complete=False)
        if "memory" not in skip:
            memory, by_kind = {}, {}
            for count in (200, 2000):
                folder = os.path.join(work, f"memory{count}")
                make_dataset(folder, count, seed=2)
                driver = (
                    "from helpers import log; log.configure(); "
                    "from helpers.config import PipelineConfig; from helpers.pipeline import run_pipeline; "
                    f"run_pipeline(PipelineConfig({folder!r}, {folder + '_out'!r}, spark_master='local[*]'))"
                )
                peak = peak_tree_rss([sys.executable, "-c", driver])
                memory[count], by_kind[count] = (
                    peak["peak_rss_mb"],
                    peak["peak_rss_mb_of_each_kind"],
                )
            results["memory_peak_mb"] = memory
            results["memory_peak_mb_of_each_kind"] = by_kind
            results["target4_ratio"] = memory[2000] / memory[200]
            write_results(args.output, results, complete=False)
        if "precision" not in skip:
            results["precision"] = [
                python_module("benchmarks.ceiling", images, "--variant", variant)
                for variant in ("fp32", "xla", "bf16")
            ]
            write_results(args.output, results, complete=False)
        if "sizes" not in skip:
            results["image_sizes"] = python_modules("benchmarks.image_size")
            write_results(args.output, results, complete=False)
        if "onednn" not in skip:
            results["onednn"] = onednn_both_ways(images, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    write_results(args.output, results, complete=True)
    print_table(results)


def print_table(results: Dict) -> None:
    def line(name: str, value: str, target: str = "") -> None:
        print(f"{name:<52} {value:>16}  {target}")

    isa = results["machine"].get("isa_label") or results["machine"].get("isa", "?")
    print(
        f"\nFruits! benchmarks, {results['n']} images, medians of {results['repeats']} runs; "
        f"{results['machine']['cpu']}, {results['machine']['cores']} cores, ISA {isa}"
    )
    line("one-process model ceiling (images/s, 224x224)", f"{results['ceiling_images_per_s']:.1f}")
    line(
        "pipeline featurization, steady state (images/s)",
        f"{results['pipeline_steady_images_per_s']:.1f}",
    )
    for point in results["curve"]:
        line(
            f"{point['images']} images: ceiling / steady (images/s), ratio",
            f"{point['ceiling_images_per_s']:.0f} / {point['pipeline_steady_images_per_s']:.0f}, "
            f"{point['target1_ratio']:.2f}",
        )
    line(
        f"  target 1: pipeline / ceiling, {results['target1_images']} images",
        f"{results['target1_ratio']:.2f}",
        ">= 0.90",
    )
    line("pipeline whole job, cold (s)", f"{results['pipeline_job_seconds']:.1f}")
    line("pipeline whole job, warm session (s)", f"{results['pipeline_warm_job_seconds']:.1f}")
    if "p8" in results:
        line("P8-notebook baseline whole job (s)", f"{results['p8_job_seconds']:.1f}")
        line("  target 2: P8 / pipeline, cold", f"{results['target2_speedup_cold']:.1f}x", ">= 10x")
        line("  target 2: P8 / pipeline, warm", f"{results['target2_speedup_warm']:.1f}x", ">= 10x")
    for point in results.get("curve", []):
        p8 = f", P8 {point['p8_job_seconds']:.0f} s" if "p8_job_seconds" in point else ""
        line(
            f"{point['images']} images: job cold / warm (s){p8}",
            f"{point['pipeline_job_seconds']:.1f} / {point['pipeline_warm_job_seconds']:.1f}",
        )
        if "p8_job_seconds" in point:
            line(
                "  target 2: P8 / pipeline, cold / warm",
                f"{point['target2_speedup_cold']:.1f}x / {point['target2_speedup_warm']:.1f}x",
                ">= 10x",
            )
    if "pca_scale" in results:
        pca = results["pca_scale"]
        line(f"PCA {pca['rows']}x{pca['dim']}: numpy (s)", f"{pca['numpy_seconds']:.1f}")
        line("PCA: chain, gram method, warm session (s)", f"{pca['gram_seconds']:.1f}")
        line("  target 3: gram / numpy", f"{results['target3_ratio']:.2f}", "<= 2.0")
    if "memory_peak_mb" in results:
        memory = results["memory_peak_mb"]
        line("peak RSS, driver + workers, 200 images (MB)", f"{memory[200]:.0f}")
        line("peak RSS, driver + workers, 2000 images (MB)", f"{memory[2000]:.0f}")
        for kind in results.get("memory_peak_mb_of_each_kind", {}).get(2000, {}):
            peaks = [
                results["memory_peak_mb_of_each_kind"][count].get(kind, 0) for count in (200, 2000)
            ]
            line(f"  {kind} alone, 200 / 2000 images (MB)", f"{peaks[0]:.0f} / {peaks[1]:.0f}")
        line("  target 4: 2000 / 200", f"{results['target4_ratio']:.2f}", "<= 1.25")
    for variant in results.get("precision", []):
        extra = f", cosine min {variant['cosine_min']:.4f}" if "cosine_min" in variant else ""
        line(
            f"ceiling {variant['variant']} (images/s{extra})",
            f"{variant['median_images_per_s']:.1f}",
        )
    if "onednn" in results:
        ways = results["onednn"]
        for way in ("on", "off"):
            line(
                f"oneDNN {way} ({isa}, {ways['images']} images): ceiling / chain (images/s)",
                f"{ways[way]['ceiling_images_per_s']:.1f} / "
                f"{ways[way]['pipeline_steady_images_per_s']:.1f}",
            )
        line(
            "  oneDNN on / off: ceiling, chain",
            f"{ways['ceiling_speedup']:.2f}x, {ways['pipeline_speedup']:.2f}x",
        )
    for size in results.get("image_sizes", []):
        line(
            f"image size {size['image_size']}: images/s, 1-NN / centroid accuracy",
            f"{size['images_per_s']:.1f} {size['accuracy_1nn']:.2f} {size['accuracy_centroid']:.2f}",
        )


if __name__ == "__main__":
    main()
