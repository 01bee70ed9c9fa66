"""The real notebooks, executed by papermill: locally, and against a real S3 server."""

import ast
import base64
import dataclasses
import io
import json
import logging
import os
import re

import nbformat
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import REPO, notebook_errors
from helpers import report_html
from helpers.config import PipelineConfig

NOTEBOOKS = {name: os.path.join(REPO, "notebooks", f"{name}.ipynb") for name in ("local", "cloud")}
CONFIG_FIELDS = {field.name for field in dataclasses.fields(PipelineConfig)}


def parameters_cell(notebook):
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_notebook_is_clean_and_parameterized(name):
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                "commit notebooks without outputs"
            )
    names = {
        target.id
        for node in ast.parse(parameters_cell(notebook).source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
    }
    assert names <= CONFIG_FIELDS, f"parameters unknown to PipelineConfig: {names - CONFIG_FIELDS}"
    assert {
        "input_path",
        "output_path",
        "variance_target",
        "k",
        "image_size",
        "weights",
        "sample_limit",
        "spark_master",
    } <= names
    if name == "cloud":
        assert "s3_endpoint" in names


def test_cloud_notebook_opens_with_pyspark_and_its_figures_suit_livy():
    """What sparkmagic and Livy do with the cells (sparkmagic's UserCodeParser, Livy's
    fake_shell.py): a cell that starts with '%' runs locally, anything else goes to Livy, which
    runs lines starting with '%' as its magics and the rest as Python, the cell's result being
    the last part's."""
    notebook = nbformat.read(NOTEBOOKS["cloud"], as_version=4)
    assert notebook.metadata.kernelspec == {
        "name": "pysparkkernel",
        "display_name": "PySpark",
        "language": "python",
    }
    # papermill picks its parameter translator from language_info.name ('pyspark' has none).
    assert notebook.metadata.language_info.name == "python"
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert any("import matplotlib.pyplot as plt" in source for source in sources)
    figures = [source for source in sources if "\n%matplot" in source]
    assert len(figures) == 5
    for source in figures:
        lines = source.rstrip().split("\n")
        assert not source.startswith("%"), "sparkmagic would run the cell locally"
        assert lines[-1] == "%matplot plt", "Livy returns the last part's result: the image"
        assert not any(line.startswith("%") for line in lines[:-1])
        *_, last = ast.parse("\n".join(lines[:-1])).body
        # A call whose value is None: Livy's REPL prints no `<Figure ...>` text before the image.
        assert isinstance(last, ast.Expr) and last.value.func.id == "make_current", source


def assert_cluster_checked(notebook):
    """The cell before the CNN checked the executors and shows one row per host."""
    import socket

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    featurize = next(index for index, cell in enumerate(code) if "run.featurize()" in cell.source)
    cell = code[featurize - 1]
    assert cell.source.strip() == "run.check_cluster()"
    (table,) = [
        output["data"]["text/html"]
        for output in cell.outputs
        if "text/html" in output.get("data", {})
    ]
    for column in ("host", "workers", "python", "helpers", "tensorflow", "onednn", "isa"):
        assert f"<th>{column}</th>" in table, column
    assert f"<td>{socket.gethostname()}</td>" in table


def test_local_notebook_runs_headless_with_papermill(local_notebook_run, caplog):
    notebook = nbformat.read(local_notebook_run["notebook"], as_version=4)
    assert not notebook_errors(notebook)
    assert_cluster_checked(notebook)
    images_on_disk = local_notebook_run["images"]
    manifest = json.loads((local_notebook_run["output"] / "manifest.json").read_text())
    assert manifest["images_total"] == manifest["images_featurized"] == images_on_disk
    assert (
        sum(pq.read_table(part).num_rows for part in manifest["outputs"]["features"])
        == images_on_disk
    )
    pngs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(pngs) >= 3, "sample grid, variance plot and scatter are shown as images"
    # every figure carries what it shows: as text, as alt metadata, as <img alt> once exported
    for png in pngs:
        assert png.metadata["image/png"]["alt"] == png.data["text/plain"], png.data["text/plain"]
        assert not png.data["text/plain"].startswith("<Figure"), png.data["text/plain"]
    assert any(png.data["text/plain"].startswith("Explained variance of the PCA") for png in pngs)
    with caplog.at_level(logging.WARNING):
        exported = report_html.export_notebook(local_notebook_run["notebook"])
    assert not [r for r in caplog.records if "Alternative text" in r.getMessage()], caplog.text
    alts = re.findall(r'<img\b[^>]*?\balt="([^"]*)"', exported)
    assert len(alts) == exported.count("<img ") == len(pngs)
    assert all(alt and not alt.startswith("No description") for alt in alts), alts


#: What ipykernel logs when papermill's kernel shutdown reaches it while it still finishes the
#: last request: jupyter_client always interrupts a kernel (SIGINT) before asking it to stop.
SHUTDOWN_INTERRUPT = "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."


def test_local_run_log_has_no_error_or_traceback(local_notebook_run):
    """`make run`'s output (papermill's --log-output: cell outputs, kernel and Spark logs) holds
    no ERROR and no Traceback line when the run succeeds. After the last cell has ended, the
    one line allowed is ipykernel's note that the shutdown's interrupt found it busy (seen on a
    loaded 2-core machine): the notebook's work is done by then."""
    log = local_notebook_run["log"]
    assert "Executing notebook with kernel: fruits" in log
    last_cell = log.rindex("Ending Cell ")
    during, after = log[:last_cell], log[last_cell:]
    bad = [line for line in during.splitlines() if "ERROR" in line or "Traceback" in line]
    bad += [
        line
        for line in after.replace(SHUTDOWN_INTERRUPT, "").splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
    assert not bad, "\n".join(bad)


def assert_progress_lines(text, images):
    """Featurization progress lines: a start, at least one step strictly between, the end."""
    lines = [line for line in text.splitlines() if line.startswith("featurize: ")]
    assert lines and lines[0].startswith("featurize: started"), text
    assert lines[-1].startswith(f"featurize: done, 100%, {images}/{images} images"), text
    percents = [
        int(match.group(1))
        for line in lines[1:-1]
        for match in [re.search(r"(\d+)%, (\d+)/\d+ images", line)]
        if match
    ]
    assert any(0 < percent < 100 for percent in percents), f"no step between start and end: {lines}"


def s3_keys(client, bucket, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def s3_parquet(client, bucket, prefix):
    keys = [key for key in s3_keys(client, bucket, prefix) if key.endswith(".parquet")]
    frames = [
        pq.read_table(
            io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        ).to_pandas()
        for key in keys
    ]
    return pd.concat(frames, ignore_index=True)


def test_cloud_notebook_on_s3_with_papermill(cloud_s3_run, s3_client):
    """The cloud notebook run as the EMR nightly step runs it (``cloud_s3_run``: papermill
    reads it from S3 and writes the executed one there)."""
    assert cloud_s3_run["status"] == 0, cloud_s3_run["log"][-5000:]
    bucket, uploaded = cloud_s3_run["bucket"], cloud_s3_run["uploaded"]
    prefix = cloud_s3_run["output"].split(f"s3://{bucket}/", 1)[1] + "/"
    executed = cloud_s3_run["executed"].split(f"s3://{bucket}/", 1)[1]
    keys = set(s3_keys(s3_client, bucket, prefix))
    assert executed in keys and f"{prefix}manifest.json" in keys
    report = s3_client.get_object(Bucket=bucket, Key=f"{prefix}report.html")["Body"].read()
    assert b"Fruits! run report" in report and b"data:image/png;base64," in report
    notebook = nbformat.reads(
        s3_client.get_object(Bucket=bucket, Key=executed)["Body"].read().decode(),
        as_version=4,
    )
    assert not notebook_errors(notebook)
    assert_cluster_checked(notebook)
    # Every figure cell ends with sparkmagic's `%matplot plt`; under python3 the magic helpers
    # register shows the figure once, as a PNG.
    figure_cells = [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and "\n%matplot plt" in cell.source
    ]
    assert len(figure_cells) == 5  # sample grid, variance, scatter, confusion matrix, timings
    for cell in figure_cells:
        pngs = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert len(pngs) == 1, f"one image for: {cell.source!r}"
        assert base64.b64decode(pngs[0]["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    # A cell that shows a figure any other way would show text in the PySpark kernel.
    assert not [
        cell.source
        for cell in notebook.cells
        if cell.cell_type == "code"
        and cell not in figure_cells
        and any("image/png" in out.get("data", {}) for out in cell.outputs)
    ]
    manifest = json.loads(
        s3_client.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read()
    )
    assert manifest["images_total"] == manifest["images_featurized"] == uploaded
    # Progress of the featurization, from Spark's status tracker and accumulator: plain lines
    # (start, a step between, end) in the cell's output, in papermill's --stdout-file and in its
    # --log-output (the step's log), and one HTML bar in the cell, updated in place.
    (featurize,) = [cell for cell in notebook.cells if cell.source.strip() == "run.featurize()"]
    streamed = "".join(
        out.get("text", "") for out in featurize.outputs if out.output_type == "stream"
    )
    assert_progress_lines(streamed, uploaded)
    assert_progress_lines(cloud_s3_run["stdout_file"], uploaded)
    assert_progress_lines(cloud_s3_run["log"], uploaded)
    bars = [
        out for out in featurize.outputs if "<progress" in out.get("data", {}).get("text/html", "")
    ]
    assert len(bars) == 1 and 'value="1.0000"' in bars[0]["data"]["text/html"]

    def key(name):  # outputs live in the published run's folder, named by the manifest
        location = manifest["outputs"][name]
        if isinstance(location, list):  # features: a first run has one folder
            (location,) = location
        assert location.startswith(f"s3://{bucket}/{prefix}runs/{manifest['run_id']}/")
        return location.split(f"s3://{bucket}/", 1)[1]

    png = s3_client.get_object(Bucket=bucket, Key=key("variance.png"))["Body"].read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    features = s3_parquet(s3_client, bucket, key("features") + "/")
    assert len(features) == uploaded and features.path.is_unique
    assert all(path.startswith(f"s3://{bucket}/fruits-360/") for path in features.path)
    scores = s3_parquet(s3_client, bucket, key("pca") + "/")
    assert len(scores) == uploaded and len(scores.pca.iloc[0]) == manifest["k"]
    csv_keys = [
        name for name in keys if name.startswith(key("pca_csv") + "/") and name.endswith(".csv")
    ]
    table = pd.concat(
        pd.read_csv(io.BytesIO(s3_client.get_object(Bucket=bucket, Key=name)["Body"].read()))
        for name in csv_keys
    )
    assert len(table) == uploaded
    assert list(table.columns[:3]) == ["path", "label", "split"]
    assert table.shape[1] == 3 + manifest["k"]
