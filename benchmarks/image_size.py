"""Input size study: throughput and usefulness of the features at several image sizes.

For each size: the one-process ceiling's images/s (as :mod:`benchmarks.ceiling`) and the Test
accuracy of simple classifiers on the PCA features (95% variance) of the bundled sample,
trained on its Training split: 1-nearest-neighbour and nearest centroid, in numpy.
Prints one JSON line per size.

Usage: ``python -m benchmarks.image_size [--sizes 224,160,128,100] [--sample data/sample]``
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks.ceiling import run as ceiling
from benchmarks.data import SAMPLE, image_files


def accuracy(size: int, sample: str) -> dict:
    from helpers.features import extract_features

    paths = image_files(sample)
    labels = np.array([os.path.basename(os.path.dirname(path)) for path in paths])
    train = np.array([f"{os.sep}Training{os.sep}" in path for path in paths])
    features = extract_features([open(path, "rb").read() for path in paths], image_size=size)
    mean = features[train].mean(axis=0)
    _, singular, vt = np.linalg.svd(features[train] - mean, full_matrices=False)
    ratios = singular**2 / np.sum(singular**2)
    k = int(np.searchsorted(np.cumsum(ratios), 0.95) + 1)
    scores = (features - mean) @ vt[:k].T
    distances = np.linalg.norm(scores[~train][:, None, :] - scores[train][None, :, :], axis=2)
    nearest = labels[train][distances.argmin(axis=1)]
    classes = sorted(set(labels))
    centroids = np.stack([scores[train & (labels == c)].mean(axis=0) for c in classes])
    by_centroid = np.array(classes)[
        np.linalg.norm(scores[~train][:, None, :] - centroids[None], axis=2).argmin(axis=1)
    ]
    return {
        "k": k,
        "accuracy_1nn": float(np.mean(nearest == labels[~train])),
        "accuracy_centroid": float(np.mean(by_centroid == labels[~train])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,160,128,100")
    parser.add_argument("--sample", default=SAMPLE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = image_files(args.sample)
    for size in (int(value) for value in args.sizes.split(",")):
        speed = ceiling(paths, size, "fp32", args.repeats, 64)
        print(
            json.dumps(
                {
                    "measure": "image_size",
                    "image_size": size,
                    "images_per_s": speed["median_images_per_s"],
                    **accuracy(size, args.sample),
                }
            )
        )


if __name__ == "__main__":
    main()
