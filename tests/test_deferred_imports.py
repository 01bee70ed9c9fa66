"""The IRI checker jsonschema imports is loaded on first use, and still checks IRIs then."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("rfc3987_syntax")  # JupyterLab's dependencies install it (requirements.txt)

SCRIPT = """
import json, sys
import helpers, nbformat, jsonschema
loaded_at_import = "lark" in sys.modules
checker = jsonschema.FormatChecker()
checks = [checker.conforms(value, "iri") for value in ("http://例え.jp/パス", "http://a b/<>")]
print(json.dumps([loaded_at_import, checks, "lark" in sys.modules]))
"""


def test_nbformat_imports_without_compiling_the_iri_grammars_which_still_check_iris():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    loaded_at_import, checks, loaded_after = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded_at_import is False, "rfc3987_syntax (Lark) was imported with nbformat"
    assert checks == [True, False], "IRIs are no longer checked"
    assert loaded_after is True


def test_without_helpers_the_grammars_load_with_jsonschema():
    """The measure is needed: jsonschema alone imports rfc3987_syntax (and Lark) at once."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys, jsonschema; print('lark' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "True"


def test_make_runs_papermill_command_line_starts_without_the_grammars_and_leaves_the_env():
    """``python -m helpers.papermill_cli`` (``make run``) is papermill's command line, in a
    process where the IRI grammars are deferred and TF_ENABLE_ONEDNN_OPTS is left as given."""
    script = (
        "import json, os, runpy, sys\n"
        "sys.argv = ['papermill', '--help']\n"
        "try:\n"
        "    runpy.run_module('helpers.papermill_cli', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print(json.dumps([code, 'lark' in sys.modules, os.environ.get('TF_ENABLE_ONEDNN_OPTS')]))"
    )
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=environment,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Usage: papermill [OPTIONS] NOTEBOOK_PATH")
    assert json.loads(lines[-1]) == [0, False, None]
