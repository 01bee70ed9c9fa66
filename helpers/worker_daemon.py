"""Spark's Python worker daemon, with TensorFlow and the feature code imported before it forks.

Spark starts one daemon per executor (``spark.python.daemon.module``, by default
``pyspark.daemon``); it forks one Python worker per concurrent task. The stock daemon has numpy,
pandas and pyarrow imported already; TensorFlow, each worker would import on its own: 2 to 3 s
of CPU per worker, all of them at once on a cold executor. This daemon imports it, and
:mod:`helpers.features`, once; the workers it forks start with them.

Importing TensorFlow starts none of its runtime (no thread pool, no device, no session), so a
forked worker still sets its own threads (:func:`helpers.features.configure_tensorflow_threads`)
and GPUs as before. If the import fails, the daemon starts anyway and the workers import (and
report the error) themselves. :func:`helpers.session.get_spark` selects this module for the
sessions it builds. ``helpers`` is imported first (``python -m`` imports the package before
this module), so TensorFlow starts with oneDNN as :mod:`helpers.onednn` decides.

Usage (by Spark): ``python -m helpers.worker_daemon``
"""

from __future__ import annotations

import os
import sys
import traceback


def preload() -> None:
    """Import TensorFlow and the feature code, with anything they print sent to stderr.

    The daemon's stdout is its channel to Spark (it writes its port there first), so the
    imports run with file descriptor 1 pointed at stderr.
    """
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        import tensorflow  # noqa: F401

        import helpers  # noqa: F401 - first: oneDNN on before TensorFlow (helpers.onednn)
        import helpers.features  # noqa: F401
    except Exception:  # noqa: BLE001 - the workers import again and report it
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)


if __name__ == "__main__":
    preload()
    from pyspark.daemon import manager

    manager()
