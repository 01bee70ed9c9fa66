"""Log output of the chain: entry points (notebooks, CLIs, benchmarks) choose where it goes.

Library modules only get their logger, under ``helpers`` (``logging.getLogger("helpers.x")``),
and never install a handler: whoever runs the chain calls :func:`configure` once, as the
notebooks' set-up cell and ``python -m helpers.scheduled`` do.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Optional

#: The chain's loggers are this one's children.
LOGGER = "helpers"
#: One line per record: ``HH:MM:SS message``.
LINE_FORMAT = "%(asctime)s %(message)s"
TIME_FORMAT = "%H:%M:%S"


class _OutputHandler(logging.StreamHandler):
    """The handler :func:`configure` installs (found again, and replaced, by its type)."""


def configure(
    logger: str = LOGGER, stream: Optional[IO[str]] = None, level: int = logging.INFO
) -> logging.Logger:
    """Show the records of ``logger`` and its children from ``level`` up on ``stream``.

    Defaults: the chain's loggers (stage lines, counts, lock take-overs) at INFO on
    ``sys.stdout`` as it is when called: in a notebook, the cell's output, which papermill's
    ``--log-output`` copies to its log. One ``HH:MM:SS message`` line per record.

    ``logger=""`` configures the root logger instead (a CLI that also shows other libraries'
    records, such as papermill's). A named logger no longer passes its records on to the root
    logger's handlers, so no line is printed twice. Calling it again replaces the handler it
    installed before. Returns the configured logger.
    """
    target = logging.getLogger(logger or None)
    for handler in [h for h in target.handlers if isinstance(h, _OutputHandler)]:
        target.removeHandler(handler)
    handler = _OutputHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(logging.Formatter(LINE_FORMAT, TIME_FORMAT))
    target.addHandler(handler)
    target.setLevel(level)
    if logger:
        target.propagate = False
    return target
