"""Progress of long Spark work: a bar in Jupyter and plain log lines, read from Spark's side.

:class:`SparkProgress` watches the Spark jobs started inside a ``with`` block through Spark's
status tracker (``sc.statusTracker()``: the tasks of the jobs in the block's job group) and,
when given one, an accumulator of items processed, which Spark updates as tasks end. Nothing is
counted on the driver. Spark only reports a task when it ends, so progress moves in steps of
whole tasks: a scan needs a few tasks per core for the bar to move (see
:func:`helpers.session.balanced_file_scans`, ``min_waves``).
"""

from __future__ import annotations

import html
import sys
import threading
import time
import uuid
from typing import Any, List, Optional, Set, TextIO, Tuple

#: Work that ends within this many seconds shows nothing (no bar for a 1-second stage).
MIN_SECONDS = 2.0
#: How often Spark's status tracker is read.
POLL_SECONDS = 0.25
#: Plain lines: at the start, when another quarter is done, at least this often, at the end.
LINE_SECONDS = 30.0
#: Tasks per core a file scan is cut into when progress is shown (see ``min_waves``).
TASKS_PER_CORE = 4


def _ipython_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    # A kernel (Jupyter, papermill) renders HTML; a terminal IPython gets the plain lines only.
    return shell if shell is not None and hasattr(shell, "kernel") else None


class SparkProgress:
    """Progress of the Spark jobs started inside ``with SparkProgress(...):`` by this thread.

    The block's jobs are those of a job group: a new one set for the block (and set back
    after), or, when the thread already has one (Livy runs each statement in its own group,
    from which sparkmagic draws its progress bar and cancels a cell), that group, counting
    only the jobs that started after the block began.

    Shown once the block has run ``min_seconds``: under a Jupyter kernel, an HTML bar updated
    in place; everywhere, plain lines on ``out`` (a start line, one each time another quarter
    is done or ``line_seconds`` passed, an end line), which a papermill log shows. With
    ``count`` (an accumulator) and ``total``: items done / total, items per second and the time
    left; without: finished tasks / tasks of the jobs started so far.
    """

    def __init__(
        self,
        spark: Any,
        label: str,
        total: Optional[int] = None,
        count: Any = None,
        unit: str = "images",
        enabled: bool = True,
        min_seconds: float = MIN_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        line_seconds: float = LINE_SECONDS,
        out: Optional[TextIO] = None,
    ) -> None:
        self.context = spark.sparkContext
        self.label = label
        self.total = total if count is not None else None
        self.count = count
        self.unit = unit
        self.enabled = enabled
        self.min_seconds = min_seconds
        self.poll_seconds = poll_seconds
        self.line_seconds = line_seconds
        self.out = out
        self.group: Optional[str] = None
        self.own_group = False
        self.saved_properties: List[Tuple[str, Optional[str]]] = []
        self.jobs_before: Set[int] = set()
        self.count_before = 0
        self.started = 0.0
        self.shown = False
        self.last_line = 0.0
        self.quarters_reported = 0
        self.handle: Any = None
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.lines: List[str] = []

    # -- the block ----------------------------------------------------------------------------
    def __enter__(self) -> "SparkProgress":
        if not self.enabled:
            return self
        self.started = time.monotonic()
        self.count_before = int(self.count.value) if self.count is not None else 0
        current = self.context.getLocalProperty("spark.jobGroup.id")
        if current:
            self.group = current
            self.jobs_before = set(self.context.statusTracker().getJobIdsForGroup(current))
        else:
            self.group = f"fruits-{self.label}-{uuid.uuid4().hex[:8]}"
            self.own_group = True
            for key in (
                "spark.jobGroup.id",
                "spark.job.description",
                "spark.job.interruptOnCancel",
            ):
                self.saved_properties.append((key, self.context.getLocalProperty(key)))
            self.context.setJobGroup(self.group, f"Fruits! {self.label}")
        self.thread = threading.Thread(
            target=self._watch, name=f"progress-{self.label}", daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if not self.enabled:
            return
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.own_group:
            for key, value in self.saved_properties:
                self.context.setLocalProperty(key, value)
        if self.shown:
            try:
                state = self._state()
            except Exception:  # noqa: BLE001 - Spark going away: the block's own error says why
                return
            self._report(state, final=True, failed=exc_type is not None)

    # -- reading Spark ------------------------------------------------------------------------
    def _state(self) -> dict:
        """Tasks done / total of the block's jobs, items done (from the accumulator), seconds."""
        tracker = self.context.statusTracker()
        done = tasks = 0
        for job_id in tracker.getJobIdsForGroup(self.group):
            if job_id in self.jobs_before:
                continue
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            succeeded = str(job.status) == "SUCCEEDED"
            for stage_id in job.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                tasks += stage.numTasks
                # A finished job's skipped stages (reused shuffle output) never run their tasks.
                done += stage.numTasks if succeeded else stage.numCompletedTasks
        items = int(self.count.value) - self.count_before if self.count is not None else None
        return {
            "done": done,
            "tasks": tasks,
            "items": items,
            "seconds": time.monotonic() - self.started,
        }

    def _fraction(self, state: dict) -> Optional[float]:
        if self.total:
            return min(1.0, state["items"] / self.total)
        if state["tasks"]:
            return state["done"] / state["tasks"]
        return None

    # -- showing it ---------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self.stop.wait(self.poll_seconds):
            try:
                state = self._state()
            except Exception:  # noqa: BLE001 - Spark going away: the block's own error says why
                return
            if not self.shown and state["seconds"] < self.min_seconds:
                continue
            self._report(state)

    def text(self, state: dict, final: bool = False, failed: bool = False) -> str:
        """One line: what is done, rate and time left (or, at the end, how long it took)."""
        seconds = state["seconds"]
        fraction = self._fraction(state)
        parts = []
        if self.total:
            parts.append(f"{state['items']:,}/{self.total:,} {self.unit}")
        parts.append(f"tasks {state['done']}/{state['tasks']}")
        if fraction is not None:
            parts.insert(0, f"{100 * fraction:3.0f}%")
        if final:
            rate = ""
            if self.total and seconds > 0:
                rate = f" ({state['items'] / seconds:,.1f} {self.unit}/s)"
            return (
                f"{self.label}: {'stopped' if failed else 'done'}, "
                + ", ".join(parts)
                + f" in {seconds:,.1f} s{rate}"
            )
        if self.total and state["items"] > 0:
            rate = state["items"] / seconds
            left = (self.total - state["items"]) / rate
            parts.append(f"{rate:,.1f} {self.unit}/s, about {left:,.0f} s left")
        elif fraction:
            parts.append(f"about {seconds * (1 - fraction) / fraction:,.0f} s left")
        else:
            parts.append(f"{seconds:,.0f} s so far")
        return f"{self.label}: " + ", ".join(parts)

    def _report(self, state: dict, final: bool = False, failed: bool = False) -> None:
        line = self.text(state, final, failed)
        fraction = self._fraction(state) or 0.0
        quarters = int(fraction * 4 + 1e-9)
        now = time.monotonic()
        if not self.shown:
            self.shown = True
            self._print(
                f"{self.label}: started {state['seconds']:.0f} s ago; {line.split(': ', 1)[1]}"
            )
        elif (
            final
            or (quarters > self.quarters_reported and quarters < 4)
            or (fraction < 1.0 and now - self.last_line >= self.line_seconds)
        ):
            self._print(line)  # all done is said by the end line
        self.quarters_reported = max(self.quarters_reported, quarters)
        self._show_bar(line, 1.0 if final and not failed else fraction)

    def _print(self, line: str) -> None:
        self.last_line = time.monotonic()
        self.lines.append(line)
        out = self.out or sys.stdout
        print(line, file=out, flush=True)

    def _show_bar(self, line: str, fraction: float) -> None:
        shell = _ipython_shell()
        if shell is None:
            return
        from IPython.display import HTML, display

        bar = HTML(
            f'<div style="font-family:monospace">'
            f'<progress value="{fraction:.4f}" max="1" style="width:24em"></progress> '
            f"{html.escape(line)}</div>"
        )
        if self.handle is None:
            self.handle = display(bar, display_id=True)
        else:
            self.handle.update(bar)
