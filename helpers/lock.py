"""Lock: one run at a time per ``output_path``, enforced, on the local disk and in S3.

A run holds ``<output_path>/run.lock.json`` (:data:`LOCK_FILE`) from its start
(:class:`~helpers.pipeline.Run`'s construction) to its end (``Run.close()``, or the interpreter's
exit). The file names the holder: run id, host, pid, start time, and ``heartbeat_at``, which a
background thread of the holder refreshes every :data:`HEARTBEAT_SECONDS`.

Taking it, through :mod:`helpers.storage`:

- local disk: create the file if absent, atomically (a hard link: one racer wins);
- S3 (and other Hadoop file systems): create it if absent, wait :data:`SETTLE_SECONDS`, read it
  back: S3 is strongly read-after-write consistent, so of racers that all saw it absent, the
  last writer's token is what everyone reads, and only that one goes on.

A second run finds the file and stops at once with :class:`RunLockedError`, naming the holder.
A lock whose holder is gone is taken over (the file is overwritten, then read back after the
same pause), with a log line naming the dead run:

- its pid no longer exists on this same host (a killed run, a crashed kernel);
- its ``heartbeat_at`` is older than its ``ttl_seconds`` (:data:`TTL_SECONDS`: a run killed on
  another machine, a terminated cluster);
- it was taken by this same process (a notebook whose previous run was not closed: a process
  runs one run at a time, so the older one is abandoned).

A holder whose lock was taken over notices it at its next heartbeat, logs it and stops
refreshing; releasing deletes the file only while it still holds this run's token.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from helpers import storage

LOG = logging.getLogger("helpers.pipeline.lock")

#: The lock file, at the top of ``output_path``.
LOCK_FILE = "run.lock.json"
#: How often the holder refreshes ``heartbeat_at``.
HEARTBEAT_SECONDS = 30.0
#: A lock not refreshed for this long is stale (its holder is taken to be dead).
TTL_SECONDS = 600.0
#: Pause between writing the lock and reading it back where creation is not atomic (S3) and
#: after taking over a stale lock (everywhere).
SETTLE_SECONDS = 2.0


class RunLockedError(RuntimeError):
    """Another run holds the lock of this ``output_path``; ``holder`` is its lock record."""

    def __init__(self, message: str, holder: Dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _age_seconds(timestamp: Any) -> Optional[float]:
    try:
        moment = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (_now() - moment).total_seconds()


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host (whoever owns it)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


def describe(holder: Dict[str, Any]) -> str:
    """``run <id> (host <host>, pid <pid>, started <time>)``."""
    return (
        f"run {holder.get('run_id', '?')} (host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')})"
    )


def lock_location(output_path: str) -> str:
    """Where the lock of ``output_path`` lives."""
    return storage.output_location(output_path, LOCK_FILE)


def read_holder(spark: Any, output_path: str) -> Optional[Dict[str, Any]]:
    """The lock record of ``output_path`` (``None`` when no run holds it). Local paths need no
    Spark session (``spark`` may be ``None``)."""
    data = storage.read_bytes_if_exists(spark, lock_location(output_path))
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:  # a half-written or foreign file: treat it as held by nobody known
        return {"run_id": "?", "token": None, "heartbeat_at": None}


def stale_reason(holder: Dict[str, Any], own_pid: Optional[int] = None) -> Optional[str]:
    """Why the lock ``holder`` may be taken over, or ``None`` when its run is alive.

    ``own_pid``: this process's pid, when a lock of this same process may be reclaimed.
    """
    same_host = holder.get("host") == socket.gethostname()
    pid = holder.get("pid")
    if same_host and own_pid is not None and pid == own_pid:
        return "it was taken by this same process, by a run that was not closed"
    if same_host and pid is not None and not pid_alive(pid):
        return f"its process {pid} is gone from this host"
    ttl = float(holder.get("ttl_seconds") or TTL_SECONDS)
    age = _age_seconds(holder.get("heartbeat_at"))
    if age is None:
        return "it has no readable heartbeat"
    if age > ttl:
        return f"its last heartbeat is {age:.0f} s old (more than {ttl:.0f} s)"
    return None


class OutputLock:
    """The lock of one ``output_path`` for one run (:meth:`acquire`, :meth:`release`)."""

    def __init__(
        self,
        spark: Any,
        output_path: str,
        run_id: str,
        ttl_seconds: float = TTL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        settle_seconds: Optional[float] = None,
        reclaim_own_process: bool = True,
    ) -> None:
        self.spark = spark
        self.output_path = output_path
        self.location = lock_location(output_path)
        self.run_id = run_id
        self.token = uuid.uuid4().hex
        self.ttl_seconds = float(ttl_seconds)
        self.heartbeat_seconds = float(heartbeat_seconds)
        local = storage.local_file(self.location) is not None
        self.atomic_create = local
        self.settle_seconds = (
            (0.0 if local else SETTLE_SECONDS) if settle_seconds is None else float(settle_seconds)
        )
        self.reclaim_own_process = reclaim_own_process
        self.started_at = _now().isoformat()
        self.held = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def record(self) -> Dict[str, Any]:
        """What the lock file says while this run holds it."""
        return {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat_at": _now().isoformat(),
            "ttl_seconds": self.ttl_seconds,
            "token": self.token,
            "output_path": self.output_path,
        }

    def _payload(self) -> bytes:
        return json.dumps(self.record(), indent=2, sort_keys=True).encode("utf-8")

    def holder(self) -> Optional[Dict[str, Any]]:
        """The lock record now in ``output_path`` (``None`` when none)."""
        return read_holder(self.spark, self.output_path)

    def _won_after_settling(self, seconds: float) -> Optional[Dict[str, Any]]:
        """Wait, read the lock back: ``None`` when it holds this run's token, else the winner."""
        if seconds:
            time.sleep(seconds)
        current = self.holder()
        return (
            None
            if current is not None and current.get("token") == self.token
            else (current or {"run_id": "?"})
        )

    def _locked(self, holder: Dict[str, Any]) -> RunLockedError:
        return RunLockedError(
            f"output_path {self.output_path} is in use by {describe(holder)}: one run at a time "
            f"may write there. Wait for it to end; a lock left by a killed run is taken over when "
            f"its process is gone from its host or its heartbeat is older than "
            f"{holder.get('ttl_seconds') or TTL_SECONDS:.0f} s (lock file {self.location}).",
            holder,
        )

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise :class:`RunLockedError` naming the run that holds it."""
        for _ in range(5):
            if storage.create_exclusive(self.spark, self.location, self._payload()):
                winner = (
                    None if self.atomic_create else self._won_after_settling(self.settle_seconds)
                )
                if winner is not None:
                    raise self._locked(winner)
                break
            holder = self.holder()
            if holder is None:
                continue  # released between our two looks: try again
            why = stale_reason(holder, os.getpid() if self.reclaim_own_process else None)
            if why is None:
                raise self._locked(holder)
            LOG.warning("taking over the lock of %s: %s", describe(holder), why)
            storage.write_bytes_atomic(self.spark, self.location, self._payload())
            # Overwriting is never atomic, on any storage: racers that both found the lock
            # stale wait, and only the last writer goes on.
            winner = self._won_after_settling(max(self.settle_seconds, SETTLE_SECONDS))
            if winner is not None:
                raise self._locked(winner)
            break
        else:
            raise RuntimeError(f"could not take the lock {self.location}: it keeps changing")
        self.held = True
        LOG.info("lock taken: %s holds %s", self.run_id, self.location)
        self._thread = threading.Thread(
            target=self._heartbeat, daemon=True, name=f"lock-heartbeat-{self.run_id}"
        )
        self._thread.start()
        atexit.register(self._release_at_exit)
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                current = self.holder()
                if current is None or current.get("token") != self.token:
                    LOG.warning(
                        "lock of %s lost: now held by %s",
                        self.run_id,
                        describe(current) if current else "nobody",
                    )
                    self.held = False
                    return
                storage.write_bytes_atomic(self.spark, self.location, self._payload())
            except Exception as error:  # noqa: BLE001 (keep trying: storage may be back)
                if self._stop.is_set():
                    return
                LOG.warning("lock heartbeat of %s failed: %s", self.run_id, error)

    def _release_at_exit(self) -> None:
        self.release(quiet=True)  # the log's stream may be closed by now

    def release(self, quiet: bool = False) -> None:
        """Stop the heartbeat and delete the lock if it still holds this run's token."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        atexit.unregister(self._release_at_exit)
        if not self.held:
            return
        self.held = False
        try:
            current = self.holder()
            if current is not None and current.get("token") == self.token:
                storage.delete_file(self.spark, self.location)
                if not quiet:
                    LOG.info("lock released: %s", self.location)
        except Exception as error:  # noqa: BLE001 (storage gone at exit: the TTL frees it)
            if not quiet:
                LOG.warning("could not release the lock %s: %s", self.location, error)
