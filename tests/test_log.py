"""Log output: the library installs no handler; an entry point's configure() shows the chain's
lines as ``HH:MM:SS message``, once each."""

from __future__ import annotations

import io
import logging
import re

import pytest

from helpers import log
from helpers.config import PipelineConfig
from helpers.pipeline import Run


@pytest.fixture
def clean_loggers():
    """The chain's and the root logger's handlers, level and propagation, put back after."""
    names = ("helpers", "helpers.pipeline", "")
    saved = {
        name: (
            logging.getLogger(name or None).handlers[:],
            logging.getLogger(name or None).level,
            logging.getLogger(name or None).propagate,
        )
        for name in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name or None)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _chain_handlers():
    return [
        (name, handler)
        for name, logger in logging.root.manager.loggerDict.items()
        if name.split(".")[0] == "helpers" and isinstance(logger, logging.Logger)
        for handler in logger.handlers
    ]


def test_a_run_installs_no_handler(spark, tmp_path, clean_loggers, caplog):
    logging.getLogger("helpers").handlers.clear()
    logging.getLogger("helpers").propagate = True
    run = Run(PipelineConfig(str(tmp_path / "in"), str(tmp_path / "out")), spark)
    with caplog.at_level(logging.INFO, logger="helpers"), run.stage("probe"):
        pass
    run.close()
    assert _chain_handlers() == []
    # Its records reach whoever configured logging (here pytest's handler on the root logger).
    assert "stage probe: started" in caplog.text and "stage probe: done in" in caplog.text


def test_configure_prints_the_chain_lines_once_with_the_time(clean_loggers):
    stream, root_stream = io.StringIO(), io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(root_stream))
    log.configure(stream=stream)
    log.configure(stream=stream)  # again: still one handler
    logging.getLogger("helpers.pipeline").info("stage list: done in %.1f s", 1.25)
    logging.getLogger("helpers.pipeline.lock").warning("taking over the lock")
    logging.getLogger("helpers.pipeline").debug("not shown at INFO")
    logging.getLogger("py4j").warning("another library's line")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d stage list: done in 1\.2 s", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d taking over the lock", lines[1])
    # Not printed a second time by a root handler; other libraries' records are not shown.
    assert root_stream.getvalue().splitlines() == ["another library's line"]


def test_configure_of_the_root_logger_shows_other_libraries_lines(clean_loggers):
    stream = io.StringIO()
    logging.getLogger().handlers.clear()
    log.configure("", stream)
    logging.getLogger("papermill").info("Executing notebook with kernel: fruits")
    logging.getLogger("helpers.history").info("history row written")
    assert [line[9:] for line in stream.getvalue().splitlines()] == [
        "Executing notebook with kernel: fruits",
        "history row written",
    ]
