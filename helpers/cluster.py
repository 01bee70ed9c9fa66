"""The executors' Python workers: what they import and run (helpers, TensorFlow, oneDNN, ISA).

One small Spark job, one task per task slot (:func:`probe_executors`), asks each Python worker
to import helpers, TensorFlow and the feature code and to say which kernels TensorFlow uses
there. The same records serve two purposes:

- :func:`check_cluster`, the first cell of the notebooks: a table per host, or one sentence
  naming the host, the import and the error when a node cannot run the chain (the bootstrap
  action did not run there);
- the run's manifest (:func:`tensorflow_record`): oneDNN on or off and the ISA on the driver
  and on every executor host, so a slow run explains itself.

The probe's task function is a closure (cloudpickle sends it by value): it needs neither
helpers nor TensorFlow to be deserialised, so a worker without them answers with the error
instead of failing the job. A worker that cannot start at all fails the job; its host and
error are then read from Spark's message. With dynamic allocation, only executors that are up
when the probe runs are probed.

:class:`WorkerStart` starts the executors' worker daemons early, in the background: a
:class:`~helpers.pipeline.Run` starts one as it begins, so the daemons import TensorFlow while
the driver lists and samples the images, and the probe and the CNN find them ready.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Dict, List, Optional

import pandas as pd
from pyspark import InheritableThread
from pyspark.sql import SparkSession

from helpers import onednn

LOG = logging.getLogger("helpers.cluster")

#: What each worker imports, in order; the first that fails is the one reported.
PROBED_IMPORTS = ("helpers", "tensorflow", "helpers.features")

#: Columns of :func:`check_cluster`'s table.
TABLE_COLUMNS = ["host", "workers", "python", "helpers", "tensorflow", "onednn", "isa"]

HINT = "did the bootstrap action run there?"


def probe_executors(spark: SparkSession, tasks: Optional[int] = None) -> List[Dict[str, Any]]:
    """One record per probe task (``tasks``, default one per task slot of the session).

    Each record holds ``host``, ``pid``, ``python`` and either ``error`` (``"cannot import
    tensorflow (ModuleNotFoundError: ...)"``) or ``helpers`` (version), ``tensorflow``
    (version), ``onednn`` (TensorFlow's own runtime switch), ``isa`` and ``env``.

    Raises:
        RuntimeError: the probe job itself failed (a worker could not start); the message
            names the host and the error.
    """
    context = spark.sparkContext
    if tasks is None:
        cpus = int(context.getConf().get("spark.task.cpus", "1"))
        tasks = max(1, context.defaultParallelism // cpus)

    def probe(index, rows):  # noqa: ARG001 - runs in a Python worker; self-contained
        import os
        import socket
        import sys

        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": sys.executable,
            "error": None,
        }
        imported = None
        try:
            import helpers

            record["helpers"] = helpers.__version__
            from helpers import onednn as worker_onednn

            imported = "tensorflow"
            record.update(worker_onednn.tensorflow_state())
            imported = "helpers.features"
            import helpers.features  # noqa: F401
        except BaseException as error:  # noqa: BLE001 - reported, not raised
            record["error"] = (
                f"cannot import {imported or 'helpers'} ({type(error).__name__}: {error})"
            )
        yield record

    context.setJobDescription("fruits: probe the executors' Python workers")
    try:
        return context.parallelize(range(tasks), tasks).mapPartitionsWithIndex(probe).collect()
    except Exception as error:  # noqa: BLE001 - py4j/Spark errors of many kinds
        raise RuntimeError(job_failure_sentence(str(error))) from error
    finally:
        context.setJobDescription(None)


def job_failure_sentence(message: str) -> str:
    """One sentence from a failed probe job's Spark message: the host and the worker's error
    (the last Python exception line for a Python error, else the cause Spark gives first)."""
    lost = re.search(r"\(TID \d+\) \(([^ )]+) executor [^)]*\): ([^\n]+)", message)
    python_lines = [
        line
        for line in re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception): .+)$", message, re.MULTILINE)
        if not line.startswith(("org.", "java.", "py4j.", "scala."))
    ]
    cause = lost.group(2) if lost else ""
    if python_lines and (not cause or "PythonException" in cause):
        error = python_lines[-1]
    elif cause:
        error = re.sub(r"^(?:[a-z_]+\.)+[A-Za-z]+(?:Exception|Error): ", "", cause)
    else:
        error = message.strip().splitlines()[0] if message.strip() else "unknown error"
    where = f"node {lost.group(1)}" if lost else "a node"
    return f"{where}: the Python worker failed to start ({error.strip()[:300]}): {HINT}"


def executor_table(records: List[Dict[str, Any]]) -> pd.DataFrame:
    """The probe's records grouped per host (and worker Python): ``workers`` counts distinct
    worker processes. Columns: :data:`TABLE_COLUMNS` (plus ``error`` when any)."""
    groups: Dict[tuple, Dict[str, Any]] = {}
    for record in records:
        key = (
            record["host"],
            record.get("python"),
            record.get("error"),
            record.get("onednn"),
            record.get("isa"),
        )
        group = groups.setdefault(
            key,
            {
                **{column: record.get(column) for column in TABLE_COLUMNS},
                "error": record.get("error"),
                "pids": set(),
            },
        )
        group["pids"].add(record.get("pid"))
    rows = []
    for group in groups.values():
        group["workers"] = len(group.pop("pids"))
        rows.append(group)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["error"]).sort_values("host")
    if table["error"].isna().all():
        table = table.drop(columns="error")
    return table.reset_index(drop=True)


def failure_sentence(records: List[Dict[str, Any]]) -> Optional[str]:
    """``"node HOST: cannot import X (Error: ...): did the bootstrap action run there?"`` for
    the first failing host (and how many others failed), or ``None`` when all workers are fine."""
    failed = [record for record in records if record.get("error")]
    if not failed:
        return None
    hosts = sorted({record["host"] for record in failed})
    first = next(record for record in failed if record["host"] == hosts[0])
    others = (
        f" (and on {len(hosts) - 1} more node(s): {', '.join(hosts[1:])})" if len(hosts) > 1 else ""
    )
    return f"node {hosts[0]}: {first['error']}{others}: {HINT}"


def check_cluster(spark: SparkSession) -> pd.DataFrame:
    """Check that every executor's Python workers import helpers and TensorFlow.

    Returns:
        one row per executor host: :data:`TABLE_COLUMNS` (``onednn`` is TensorFlow's own
        runtime switch, ``isa`` the CPU's best vector ISA, ``workers`` the worker processes
        that answered).

    Raises:
        RuntimeError: one sentence naming the node, the import and its error, e.g. ``node
            ip-10-0-0-12: cannot import tensorflow (ModuleNotFoundError: No module named
            'tensorflow'): did the bootstrap action run there?``
    """
    records = probe_executors(spark)
    sentence = failure_sentence(records)
    if sentence:
        raise RuntimeError(sentence)
    return executor_table(records)


def tensorflow_record(spark: SparkSession) -> Dict[str, Any]:
    """The manifest's ``tensorflow`` entry: ``driver`` (this process, see
    :func:`helpers.onednn.process_state`: TensorFlow is not imported for it), ``executors`` (per host: ``host``, ``onednn``,
    ``isa``, ``workers``, and ``error`` where a worker failed) and ``probe_seconds``. A failed
    probe is recorded, never raised: the run has already featurized by then."""
    start = time.perf_counter()
    driver = onednn.process_state()
    record: Dict[str, Any] = {
        "driver": {
            key: driver[key] for key in ("host", "onednn", "isa", "env", "tensorflow", "imported")
        }
    }
    try:
        records = probe_executors(spark)
        table = executor_table(records)
        keep = [
            column
            for column in ("host", "onednn", "isa", "workers", "error")
            if column in table.columns
        ]
        record["executors"] = [
            {key: (value.item() if hasattr(value, "item") else value) for key, value in row.items()}
            for row in table[keep].to_dict("records")
        ]
    except RuntimeError as error:
        record["executors"] = []
        record["probe_error"] = str(error)
    record["probe_seconds"] = round(time.perf_counter() - start, 3)
    record["summary"] = onednn.describe(record)
    return record


class WorkerStart:
    """Start the executors' Python worker daemons now, in a background thread, and go on.

    Spark starts an executor's worker daemon (:mod:`helpers.worker_daemon`, which imports
    TensorFlow before it forks workers) for the first Python task that executor runs, and that
    task waits for it. This runs one small job, one task per executor that is up (one in local
    mode, so the other task slots stay free for the driver's own jobs), whose tasks do nothing
    but start that daemon. Jobs submitted meanwhile run beside it; a Python task that needs the
    daemon before it is up waits for it, as it would have anyway.

    Its errors are logged, never raised: :func:`check_cluster` and the CNN meet a node that
    cannot start its workers and say what is wrong. :meth:`cancel` (before the session stops)
    cancels the job and waits for the thread.
    """

    def __init__(self, spark: SparkSession) -> None:
        self.context = spark.sparkContext
        self.group = f"fruits-start-workers-{uuid.uuid4().hex[:8]}"  # what cancel() cancels
        executors = self.context._jsc.sc().getExecutorIds()  # noqa: SLF001 - no Python API
        self.tasks = max(1, executors.size())
        self.error: Optional[str] = None  # why the job failed; "cancelled" after cancel()
        self.cancelled = False
        self.seconds: Optional[float] = None
        # pyspark's thread for jobs from Python threads (pinned-thread mode: its own JVM thread).
        self.thread = InheritableThread(target=self._run, name="fruits-start-workers", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.perf_counter()
        # Local properties are per thread in pyspark's pinned-thread mode: this group is this
        # thread's only, and is cleared when it ends.
        self.context.setJobGroup(self.group, "fruits: start the executors' Python workers")
        try:
            self.context.parallelize(range(self.tasks), self.tasks).mapPartitions(
                lambda rows: [sum(1 for _ in rows)]
            ).collect()
        except Exception as error:  # noqa: BLE001 - logged; the check and the CNN report it
            self.error = "cancelled" if self.cancelled else job_failure_sentence(str(error))
            LOG.debug("starting the executors' Python workers failed: %s", self.error)
        finally:
            for key in (
                "spark.jobGroup.id",
                "spark.job.description",
                "spark.job.interruptOnCancel",
            ):
                try:
                    self.context.setLocalProperty(key, None)
                except Exception:  # noqa: BLE001 - the context is stopping: nothing to clear
                    break
            self.seconds = round(time.perf_counter() - start, 3)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the job (at most ``timeout`` seconds); whether it has ended."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def cancel(self, timeout: float = 30.0) -> None:
        """Cancel the job if it still runs, and wait (at most ``timeout`` s) for the thread.

        The job may not be submitted yet when this is called: its group is cancelled again
        every quarter of a second until the thread ends. A task already waiting for the daemon
        ends when the session stops.
        """
        deadline = time.monotonic() + timeout
        self.cancelled = True
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                self.context.cancelJobGroup(self.group)
            except Exception:  # noqa: BLE001 - the context is already stopping
                break
            self.thread.join(0.25)
        self.wait(max(0.0, deadline - time.monotonic()))
