"""Deferred imports: jsonschema's IRI checker (``rfc3987_syntax``) is loaded on first use.

``nbformat`` (papermill, nbconvert, the report) imports ``jsonschema``, whose format module
imports ``rfc3987_syntax`` when it is installed (JupyterLab's ``jupyter-events`` asks for it).
That module compiles 38 Lark grammars at import, in every process that imports ``nbformat``, for
a check (``"iri"`` formats) no notebook schema uses (jsonschema issue #1428).
:func:`defer_iri_checker` puts a stand-in in its place: the real module is imported, and its
grammars compiled, the first time an IRI is checked.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = "rfc3987_syntax"


def defer_iri_checker() -> None:
    """Make ``import rfc3987_syntax`` cheap in this process: a stand-in whose
    ``is_valid_syntax`` (the one name jsonschema imports) loads the real module on its first
    call. Does nothing when the module is already imported or not installed."""
    if DEFERRED in sys.modules or importlib.util.find_spec(DEFERRED) is None:
        return
    stand_in = types.ModuleType(DEFERRED, "Stand-in for rfc3987_syntax, loaded on first use.")

    def is_valid_syntax(term: str, value: str) -> bool:
        if sys.modules.get(DEFERRED) is stand_in:
            del sys.modules[DEFERRED]
        real = importlib.import_module(DEFERRED)
        stand_in.is_valid_syntax = real.is_valid_syntax
        return real.is_valid_syntax(term, value)

    stand_in.is_valid_syntax = is_valid_syntax
    sys.modules[DEFERRED] = stand_in
