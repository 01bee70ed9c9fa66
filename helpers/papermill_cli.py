"""papermill's own command line, started after helpers' process settings (``make run``).

``python -m helpers.papermill_cli ARGS`` is ``python -m papermill ARGS``: same arguments, same
behaviour, same exit status. Importing helpers first applies its settings for the whole
process (:mod:`helpers.deferred_imports`: papermill's start would otherwise compile
jsonschema's IRI grammars, seconds of every run). The executed kernel imports helpers itself.
"""

from __future__ import annotations

import os

import helpers  # noqa: F401 - its import is the point: settings before papermill's imports
from helpers import onednn

# This process runs no TensorFlow: the kernel it starts gets the user's environment, as from
# papermill itself, and applies helpers' oneDNN rule on its own (helpers.onednn.user_value).
if onednn.user_value() is None:
    os.environ.pop(onednn.ONEDNN_ENV, None)


def main() -> None:
    """papermill's click command on this process's arguments (exits with its status)."""
    from papermill.cli import papermill

    papermill(prog_name="papermill")


if __name__ == "__main__":
    main()
