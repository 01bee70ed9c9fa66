"""TensorFlow's CPU kernels: oneDNN on by default, the CPU's ISA, and what TF really uses.

TensorFlow 2.20 turns its oneDNN kernels on by itself only on x86 CPUs with AVX512-VNNI,
AVX512-BF16 or AMX; elsewhere (AVX2-only CPUs: AMD Zen 2/3, many Skylake hosts) it runs its
slower default kernels unless ``TF_ENABLE_ONEDNN_OPTS=1`` is set before it is imported. On
aarch64 (AWS Graviton) the same variable switches from Eigen to oneDNN with the Arm Compute
Library, which AWS's Graviton guide recommends for inference. The features are the same either
way (within the chain's 1e-4 tolerance).

:func:`enable_onednn` is the one rule: on x86 and aarch64, set ``TF_ENABLE_ONEDNN_OPTS=1``
unless the environment already holds a value (a user's ``0`` is kept). ``helpers/__init__.py``
applies it before anything else, so every process that imports helpers (the driver, the worker
daemon, a Python worker unpickling the featurization UDF, the benchmarks) has it before
TensorFlow.
This module imports nothing heavy: TensorFlow only inside :func:`tensorflow_state`.
:func:`process_state` says what TensorFlow uses in a process that may not have imported it
(the driver, which runs no CNN): its own switch once imported, else the switch it would set.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
from typing import Any, Dict, Iterable, Optional

#: The environment variable TensorFlow reads once, when it is imported.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"

#: ISA names, best first, from /proc/cpuinfo flags: (name, flags that all must be present).
_X86_ISAS = (
    ("amx", ("amx_tile",)),
    ("avx512_bf16", ("avx512_bf16",)),
    ("avx512_vnni", ("avx512_vnni",)),
    ("avx512f", ("avx512f",)),
    ("avx2", ("avx2",)),
)

#: x86 ISAs on which TensorFlow turns oneDNN on by itself when ``TF_ENABLE_ONEDNN_OPTS`` is unset.
ONEDNN_BY_DEFAULT = ("amx", "avx512_bf16", "avx512_vnni")

#: How each ISA name reads in a table or the report.
ISA_LABELS = {
    "amx": "AMX",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512f": "AVX-512",
    "avx2": "AVX2",
    "x86-64": "x86-64 (no AVX2)",
    "aarch64": "aarch64",
}


def is_x86(machine: Optional[str] = None) -> bool:
    """Whether ``machine`` (default: this one, ``platform.machine()``) is an x86-64 CPU."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64", "i686", "i386")


def has_onednn_switch(machine: Optional[str] = None) -> bool:
    """Whether TensorFlow's Linux wheels for ``machine`` (default: this one) have oneDNN kernels
    behind ``TF_ENABLE_ONEDNN_OPTS``: x86-64 (oneDNN) and aarch64 (oneDNN + Arm Compute Library)."""
    return is_x86(machine) or (machine or platform.machine()).lower() in ("aarch64", "arm64")


#: ``TF_ENABLE_ONEDNN_OPTS`` as this process found it, before :func:`enable_onednn` set it.
_user_value: Optional[str] = None
_user_value_read = False


def enable_onednn(environ: Optional[Dict[str, str]] = None, machine: Optional[str] = None) -> str:
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` in ``environ`` (default ``os.environ``) where
    :func:`has_onednn_switch` when it is unset; an explicit value (``0``, ``1``, anything) is
    kept. Returns the value in effect (``""`` when unset, on other CPUs). Effective only before
    TensorFlow is imported."""
    global _user_value, _user_value_read
    if environ is None:
        environ = os.environ
        if not _user_value_read:
            _user_value, _user_value_read = environ.get(ONEDNN_ENV), True
    if ONEDNN_ENV not in environ and has_onednn_switch(machine):
        environ[ONEDNN_ENV] = "1"
    return environ.get(ONEDNN_ENV, "")


def user_value() -> Optional[str]:
    """The ``TF_ENABLE_ONEDNN_OPTS`` the user gave this process (``None``: not set, so each
    process applies :func:`enable_onednn` on its own CPU)."""
    return _user_value


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> Iterable[str]:
    """The CPU's feature flags (the first ``flags`` line of ``cpuinfo``; empty if unreadable)."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(flags: Optional[Iterable[str]] = None, machine: Optional[str] = None) -> str:
    """The best vector ISA TensorFlow's kernels can use here: ``amx``, ``avx512_bf16``,
    ``avx512_vnni``, ``avx512f``, ``avx2`` or ``x86-64`` on x86 (from ``flags``, default this
    CPU's); the architecture's name (``aarch64``, ...) on other CPUs."""
    machine = machine or platform.machine()
    if not is_x86(machine):
        return machine.lower()
    present = set(cpu_flags() if flags is None else flags)
    for name, needed in _X86_ISAS:
        if all(flag in present for flag in needed):
            return name
    return "x86-64"


def tensorflow_state() -> Dict[str, Any]:
    """What TensorFlow uses in this process: ``onednn`` (its runtime switch, as TensorFlow
    itself reports it; ``None`` if it cannot say), ``isa``, ``host``, ``env``
    (``TF_ENABLE_ONEDNN_OPTS`` or ``None``), ``tensorflow`` (version), ``python`` and ``pid``.
    Imports TensorFlow (errors propagate)."""
    import tensorflow as tf

    try:  # TensorFlow's own runtime switch (what its test utilities read too)
        from tensorflow.python.util import _pywrap_util_port

        enabled: Optional[bool] = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without it: unknown, not an error
        enabled = None
    return {
        "host": socket.gethostname(),
        "onednn": enabled,
        "isa": cpu_isa(),
        "env": os.environ.get(ONEDNN_ENV),
        "tensorflow": tf.__version__,
        "python": sys.executable,
        "pid": os.getpid(),
    }


def expected_onednn(env: Optional[str], isa: str) -> Optional[bool]:
    """The oneDNN switch TensorFlow sets when imported with ``TF_ENABLE_ONEDNN_OPTS=env``
    (``None``: unset) on a CPU whose best ISA is ``isa`` (:func:`cpu_isa`): ``1``/``true`` on,
    ``0``/``false`` off; unset, on x86 only with :data:`ONEDNN_BY_DEFAULT`. ``None`` when it
    cannot be told (another value, or unset on a CPU other than x86)."""
    if env is not None:
        value = env.strip().lower()
        return True if value in ("1", "true") else False if value in ("0", "false") else None
    if isa in ONEDNN_BY_DEFAULT:
        return True
    return False if isa in dict(_X86_ISAS) or isa == "x86-64" else None


def installed_tensorflow() -> Optional[str]:
    """The installed TensorFlow's version (``tensorflow`` or ``tensorflow-cpu``), not imported;
    ``None`` when neither is installed."""
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def process_state() -> Dict[str, Any]:
    """:func:`tensorflow_state` of this process, with ``imported``: when TensorFlow is not
    imported here, it is not imported now (seconds and hundreds of MB on a driver that runs no
    CNN); ``onednn`` is then the switch it would set (:func:`expected_onednn`)."""
    if "tensorflow" in sys.modules:
        return {**tensorflow_state(), "imported": True}
    env = os.environ.get(ONEDNN_ENV)
    isa = cpu_isa()
    return {
        "host": socket.gethostname(),
        "onednn": expected_onednn(env, isa),
        "isa": isa,
        "env": env,
        "tensorflow": installed_tensorflow(),
        "python": sys.executable,
        "pid": os.getpid(),
        "imported": False,
    }


def describe(tensorflow: Dict[str, Any]) -> str:
    """One line for the report, e.g. ``on (driver AVX2; executors AVX2 x2)``, from the
    manifest's ``tensorflow`` entry (``driver`` and ``executors`` as :func:`helpers.cluster`
    records them)."""

    def side(entry: Dict[str, Any]) -> str:
        return ISA_LABELS.get(entry.get("isa", "?"), str(entry.get("isa", "?")))

    def switch(entries: Iterable[Dict[str, Any]]) -> str:
        states = {bool(entry.get("onednn")) for entry in entries}
        return "on" if states == {True} else "off" if states == {False} else "mixed"

    driver = tensorflow.get("driver") or {}
    executors = tensorflow.get("executors") or []
    entries = ([driver] if driver else []) + list(executors)
    if not entries:
        return "unknown"
    parts = []
    if driver:
        parts.append(f"driver {side(driver)}" + ("" if driver.get("onednn") else " off"))
    if executors:
        groups: Dict[str, int] = {}
        for entry in executors:
            label = side(entry) + ("" if entry.get("onednn") else " off")
            groups[label] = groups.get(label, 0) + int(entry.get("workers", 1))
        parts.append(
            "executors " + ", ".join(f"{label} x{count}" for label, count in groups.items())
        )
    return f"{switch(entries)} ({'; '.join(parts)})"
