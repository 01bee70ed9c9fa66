"""Run configuration: every bad parameter is refused with an error naming it; defaults,
coercion, the S3 endpoint's resolution and the round trip through a notebook's parameters."""

from __future__ import annotations

import ast
import dataclasses
import os

import nbformat
import pytest

from helpers.config import S3_ENDPOINT_ENV, PipelineConfig

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
PATHS = {"input_path": "data/in", "output_path": "data/out"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("input_path", ""),
        ("output_path", ""),
        ("variance_target", 0.0),
        ("variance_target", 1.5),
        ("k", 0),
        ("image_size", 16),
        ("sample_limit", 0),
        ("batch_size", 0),
        ("pca_method", "svd"),
        ("run_id", "../escape"),
        ("run_id", ".."),
        ("run_id", "night 1"),
        ("cost_per_hour", -0.5),
        ("cost_per_hour", float("nan")),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(field, value):
    with pytest.raises(ValueError) as refused:
        PipelineConfig(**{**PATHS, field: value})
    assert str(refused.value).startswith(field), str(refused.value)
    if value != "":
        assert repr(value) in str(refused.value)  # and the value given


def test_the_local_notebooks_parameters_are_the_defaults():
    """Only the folders differ: a run from Python is the run the local notebook makes."""
    notebook = nbformat.read(os.path.join(REPO, "notebooks", "local.ipynb"), as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
    }
    from_notebook = PipelineConfig.from_parameters({**values, **PATHS})
    assert from_notebook == PipelineConfig(**PATHS)


def test_numbers_given_as_text_or_int_are_coerced():
    """papermill's -p passes what the command line gives; the config holds proper types."""
    config = PipelineConfig(
        **PATHS,
        variance_target=1,
        k="3",
        image_size="96",
        batch_size=8.0,
        sample_limit="10",
        cost_per_hour=2,
    )
    assert (
        config.variance_target,
        config.k,
        config.image_size,
        config.batch_size,
        config.sample_limit,
        config.cost_per_hour,
    ) == (1.0, 3, 96, 8, 10, 2.0)
    assert isinstance(config.variance_target, float) and isinstance(config.cost_per_hour, float)


def test_effective_s3_endpoint_prefers_the_parameter_then_the_environment(monkeypatch):
    monkeypatch.delenv(S3_ENDPOINT_ENV, raising=False)
    assert PipelineConfig(**PATHS).effective_s3_endpoint == ""  # AWS S3 through EMR's own
    monkeypatch.setenv(S3_ENDPOINT_ENV, "http://127.0.0.1:9000")
    assert PipelineConfig(**PATHS).effective_s3_endpoint == "http://127.0.0.1:9000"
    given = PipelineConfig(**PATHS, s3_endpoint="http://127.0.0.1:8333")
    assert given.effective_s3_endpoint == "http://127.0.0.1:8333"
    assert given.as_dict()["s3_endpoint"] == "http://127.0.0.1:8333"  # the manifest: as given


def test_parameters_round_trip_and_unrelated_names_are_ignored():
    config = PipelineConfig(
        **PATHS,
        k=5,
        weights="s3://b/w.weights.h5",
        incremental=True,
        run_id="night-1",
        cost_per_hour=0.5,
        progress=False,
    )
    parameters = config.as_dict()
    assert set(parameters) == {field.name for field in dataclasses.fields(PipelineConfig)}
    # A notebook's globals hold more than its parameters (modules, In/Out, helpers...).
    namespace = {**parameters, "In": [""], "np": object(), "config": None}
    assert PipelineConfig.from_parameters(namespace) == config


def test_missing_paths_are_a_type_error_naming_them():
    with pytest.raises(TypeError, match="output_path"):
        PipelineConfig.from_parameters({"input_path": "data/in"})
