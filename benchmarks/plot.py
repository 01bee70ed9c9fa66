"""Figure for docs/benchmarks.md from benchmarks/results/latest.json.

Usage: ``python -m benchmarks.plot [RESULTS_JSON] [OUTPUT_PNG]``
"""
from __future__ import annotations

import json
import os
import sys

from benchmarks.data import REPO
from helpers import plots


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "benchmarks", "results", "latest.json")
    target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "docs", "benchmarks-throughput.png")
    results = json.load(open(source))
    n = results["n"]
    rates = {
        "P8-notebook baseline\n(whole job)": n / results["p8_job_seconds"],
        "chain, whole job\n(cold session)": n / results["pipeline_job_seconds"],
        "chain, whole job\n(warm session)": n / results["pipeline_warm_job_seconds"],
        "chain featurization\n(steady state)": results["pipeline_steady_images_per_s"],
        "one-process model\nceiling": results["ceiling_images_per_s"],
    }
    figure, axis = plots._styled(figsize=(11, 5.5))  # noqa: SLF001 (the one style of the project)
    bars = axis.barh(list(rates), list(rates.values()), color=["#aaaaaa", "#8fb8de", "#5b8fc7", "#1f4e79", "#27ae60"])
    for bar, value in zip(bars, rates.values()):
        axis.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, f"{value:.1f}", va="center")
    axis.set_xlabel("images per second (224x224, 2 cores)")
    axis.set_title(f"Throughput on {n} synthetic 100x100 images")
    with open(target, "wb") as handle:
        handle.write(plots.figure_png(figure))
    print(target)


if __name__ == "__main__":
    main()
