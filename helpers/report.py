"""Report: what a run tells the people who read its results.

Owns the closing summary of a run (from its ``manifest.json``). ``python -m helpers.report
OUTPUT_PATH`` prints it for a finished run, local or ``s3://`` (through boto3).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional

from helpers.storage import MANIFEST


def summary_text(manifest: Dict[str, Any]) -> str:
    """Closing lines of a run: images, failures, k, explained variance, where outputs are."""
    parameters = manifest.get("parameters", {})
    target = parameters.get("variance_target")
    target_text = f" (target {100 * target:.0f}%)" if target and parameters.get("k") is None else ""
    return "\n".join([
        f"images:             {manifest['images_total']}",
        f"featurized:         {manifest['images_featurized']}",
        f"failed:             {manifest['images_failed']}",
        f"k (PCA components): {manifest['k']}",
        f"explained variance: {100 * manifest['explained_variance_kept']:.1f}%{target_text}",
        f"outputs:            {parameters.get('output_path', '?')}",
    ])


def read_manifest(output_path: str, s3_endpoint: Optional[str] = None) -> Dict[str, Any]:
    """The manifest of the run in ``output_path`` (a local folder or ``s3://bucket/prefix``)."""
    location = output_path.rstrip("/") + "/" + MANIFEST
    if location.startswith(("s3://", "s3a://")):
        import boto3

        bucket, _, key = location.split("://", 1)[1].partition("/")
        endpoint = s3_endpoint or os.environ.get("FRUITS_S3_ENDPOINT") or None
        body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket=bucket, Key=key)["Body"]
        return json.loads(body.read())
    if not os.path.exists(location):
        raise FileNotFoundError(f"no manifest.json in {output_path}: did the run finish?")
    with open(location, encoding="utf-8") as handle:
        return json.load(handle)


def main(argv: Optional[list] = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m helpers.report OUTPUT_PATH", file=sys.stderr)
        return 2
    print(summary_text(read_manifest(arguments[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
