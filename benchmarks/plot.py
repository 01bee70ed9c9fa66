"""Figure for docs/benchmarks.md from benchmarks/results/latest.json: throughput against the
number of images, for the one-process ceiling, the chain (featurization steady state, whole job
cold and warm) and the P8-notebook baseline (whole job).

Usage: ``python -m benchmarks.plot [RESULTS_JSON] [OUTPUT_PNG]``
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.data import REPO
from helpers import plots

SERIES = (  # (label, images/s of one curve point, colour, line style)
    ("one-process model ceiling", lambda p: p["ceiling_images_per_s"], "#27ae60", "--"),
    (
        "chain featurization, steady state",
        lambda p: p["pipeline_steady_images_per_s"],
        "#1f4e79",
        "-",
    ),
    (
        "chain whole job, warm session",
        lambda p: p["images"] / p["pipeline_warm_job_seconds"],
        "#5b8fc7",
        "-",
    ),
    ("chain whole job, cold", lambda p: p["images"] / p["pipeline_job_seconds"], "#8fb8de", "-"),
    (
        "P8-notebook baseline, whole job",
        lambda p: p["images"] / p["p8_job_seconds"],
        "#c0392b",
        ":",
    ),
)


def main() -> None:
    source = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.path.join(REPO, "benchmarks", "results", "latest.json")
    )
    target = (
        sys.argv[2]
        if len(sys.argv) > 2
        else os.path.join(REPO, "docs", "benchmarks-throughput.png")
    )
    with open(source) as handle:
        curve = json.load(handle)["curve"]
    counts = [point["images"] for point in curve]
    figure, axis = plots._styled(figsize=(11, 6))  # noqa: SLF001 (the one style of the project)
    ends = []  # the last point of each curve, labelled with its value
    for label, rate, colour, style in SERIES:
        points = [
            (p["images"], rate(p))
            for p in curve
            if "p8" not in label.lower() or "p8_job_seconds" in p
        ]
        if not points:
            continue
        axis.plot(*zip(*points), style, marker="o", color=colour, label=label, linewidth=2)
        ends.append(points[-1])
    ends.sort(key=lambda point: point[1])
    for index, (count, value) in enumerate(ends):
        # Labels of neighbouring ends within 12 % of each other are pushed apart vertically.
        below = index > 0 and value / ends[index - 1][1] < 1.12
        above = index + 1 < len(ends) and ends[index + 1][1] / value < 1.12
        shift = 6 if below and not above else -6 if above and not below else 0
        axis.annotate(
            f"{value:.1f}",
            (count, value),
            textcoords="offset points",
            xytext=(6, shift),
            va="center",
            fontsize=10,
        )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(counts)
    axis.set_xticklabels([f"{count:,}" for count in counts])
    axis.set_xlabel("number of images (synthetic 100x100 JPEGs, featurized at 224x224)")
    axis.set_ylabel("images per second (2 cores)")
    axis.set_title("Throughput against the number of images")
    axis.legend(loc="lower right")
    with open(target, "wb") as handle:
        handle.write(plots.figure_png(figure))
    print(target)


if __name__ == "__main__":
    main()
