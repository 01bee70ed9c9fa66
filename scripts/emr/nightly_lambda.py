"""Nightly run helper (AWS Lambda, inlined in nightly.yaml): anything new? and the run's summary."""

import json
import os
from datetime import datetime

import boto3

IMAGES = (".jpg", ".jpeg", ".png")
# S3_ENDPOINT is unset on AWS; the tests point it at a local S3 server.
s3 = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT") or None)


def split(uri):
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key.strip("/")


def read_json(uri):
    """The JSON object at uri, None when there is none (listed first: without a list right,
    S3 answers AccessDenied, not NoSuchKey, for a missing key)."""
    bucket, key = split(uri)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not listed or listed[0]["Key"] != key:
        return None
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def check(event):
    """new: true when an image under input_path is newer than the last published run's start."""
    manifest = read_json(event["output_path"].rstrip("/") + "/manifest.json")
    if manifest is None:
        return {"new": True, "reason": "no published run in output_path yet (first run)"}
    since = datetime.fromisoformat(manifest["started_at"])
    bucket, prefix = split(event["input_path"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        for item in page.get("Contents", []):
            if item["Key"].lower().endswith(IMAGES) and item["LastModified"] > since:
                return {
                    "new": True,
                    "since": since.isoformat(),
                    "reason": f"s3://{bucket}/{item['Key']} is newer than the last run",
                }
    return {
        "new": False,
        "since": since.isoformat(),
        "reason": f"no image under {event['input_path']} is newer than the run "
        f"published in {event['output_path']} (started {since.isoformat()})",
    }


def summary(event):
    """The notification of a successful run, from output_path/history/latest.json."""
    out = event["output_path"].rstrip("/")
    row = read_json(out + "/history/latest.json") or {}
    lines = [
        f"Fruits! nightly run {event['run_id']} succeeded; cluster {event['cluster_id']} terminated."
    ]
    fields = [
        ("new images", "images_new"),
        ("total images", "images_total"),
        ("failed images", "images_failed"),
        ("k (PCA components)", "k"),
        ("explained variance", "explained_variance_kept"),
        ("Test accuracy", "test_accuracy"),
        ("minutes", "minutes"),
        ("estimated cost (USD)", "estimated_cost_usd"),
    ]
    for label, key in fields:
        value = row.get(key)
        if isinstance(value, float) and key in ("explained_variance_kept", "test_accuracy"):
            value = f"{100 * value:.1f}%"
        elif isinstance(value, float):
            value = f"{value:.2f}"
        if value is None and key == "test_accuracy" and row.get("classifier_skipped"):
            value = f"n/a ({row['classifier_skipped']})"
        lines.append(f"{label}: {'n/a' if value is None else value}")
    if not row:
        lines.append(f"(no {out}/history/latest.json: the history row is missing)")
    lines += [
        f"outputs: {out}/",
        f"report: {out}/report.html",
        f"executed notebook: {out}/history/{event['run_id']}/cloud.executed.ipynb",
    ]
    return {"subject": f"Fruits! nightly {event['run_id']}: succeeded", "message": "\n".join(lines)}


def handler(event, context=None):
    return {"check": check, "summary": summary}[event["action"]](event)
