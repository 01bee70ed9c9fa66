#!/usr/bin/env python3
"""requirements-emr.txt's hashes: the sha256 of every wheel an EMR node may install, per platform.

Each pin of requirements-emr.txt lists the hashes of the wheels pip picks for it on the cluster's
nodes: Amazon Linux 2023 (glibc 2.34), CPython 3.11, on x86_64 and on aarch64 (Graviton). A pin
with a ``platform_machine`` marker is for that platform only. This script downloads those wheels
with pip (``--platform`` flags, no dependencies) and either rewrites the hash lines from them or,
with ``--check``, says which pin's hashes differ from them. Comments and order are kept.

Usage: python scripts/emr/requirements_hashes.py [--check] [--file requirements-emr.txt]
       [--wheels DIR] [pip download options, e.g. --no-index --find-links DIR]
Needs pip and, without ``--no-index``, network to the package index pip is configured for.
Stdlib only (pip runs as ``python -m pip``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

#: Machines of the cluster's nodes, as platform_machine and as in manylinux tags.
MACHINES = ("x86_64", "aarch64")
#: glibc of Amazon Linux 2023 (EMR 7): the newest manylinux tag a node accepts.
GLIBC_MINOR = 34
#: The oldest node Python bootstrap-emr.sh accepts (its MIN_PYTHON), and its ABI.
PYTHON = ("3.11.5", "cp311")
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+?)"
    r'(?: ; platform_machine == "(?P<machine>[a-z0-9_]+)")? \\$'
)
HASH = re.compile(r"^    --hash=sha256:(?P<hash>[0-9a-f]{64})(?: \\)?$")


def normalize(name: str) -> str:
    """A project name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    """One ``name==version`` entry: its lines in the file and its hashes."""

    name: str
    version: str
    machine: Optional[str]  #: the platform_machine it is limited to, None for both
    first: int  #: index of its ``name==version`` line
    last: int  #: index of its last hash line
    hashes: List[str] = field(default_factory=list)

    def machines(self) -> List[str]:
        return [self.machine] if self.machine else list(MACHINES)


def parse(lines: Sequence[str]) -> List[Pin]:
    """The pins of a requirements file in pip-compile's layout (one hash per line)."""
    pins: List[Pin] = []
    index = 0
    while index < len(lines):
        match = PIN.match(lines[index])
        if not match:
            index += 1
            continue
        pin = Pin(match["name"], match["version"], match["machine"], index, index)
        index += 1
        while index < len(lines) and HASH.match(lines[index]):
            pin.hashes.append(HASH.match(lines[index])["hash"])
            pin.last = index
            index += 1
        if not pin.hashes:
            raise ValueError(f"line {pin.first + 1}: {pin.name} has no --hash line")
        pins.append(pin)
    return pins


def platform_flags(machine: str) -> List[str]:
    """pip download's flags for a node of ``machine``: its manylinux tags, newest first."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    flags = ["--python-version", PYTHON[0], "--implementation", "cp"]
    for abi in (PYTHON[1], "abi3", "none"):
        flags += ["--abi", abi]
    for tag in tags + ["any"]:
        flags += ["--platform", tag]
    return flags


def download(pins: Sequence[Pin], machine: str, folder: Path, pip_options: Sequence[str]) -> Dict:
    """Download the wheel of each pin that ``machine`` installs; ``{name: sha256}``."""
    wanted = [pin for pin in pins if machine in pin.machines()]
    folder.mkdir(parents=True, exist_ok=True)
    pins_file = folder / "pins.txt"
    pins_file.write_text("".join(f"{pin.name}=={pin.version}\n" for pin in wanted))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(folder),
        "-r",
        str(pins_file),
    ]
    completed = subprocess.run(
        command + platform_flags(machine) + list(pip_options), capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"pip download for {machine} failed:\n{completed.stderr[-3000:]}")
    found = {}
    for wheel in folder.glob("*.whl"):
        found[normalize(wheel.name.split("-")[0])] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    missing = [pin.name for pin in wanted if normalize(pin.name) not in found]
    if missing:
        raise RuntimeError(f"no {machine} wheel downloaded for {', '.join(missing)}")
    return found


def expected_hashes(pins: Sequence[Pin], folder: Path, pip_options: Sequence[str]) -> Dict:
    """``{pin name: [sha256 per machine, in MACHINES order, without repeats]}``."""
    by_machine = {
        machine: download(pins, machine, folder / machine, pip_options) for machine in MACHINES
    }
    result = {}
    for pin in pins:
        hashes: List[str] = []
        for machine in pin.machines():
            digest = by_machine[machine][normalize(pin.name)]
            if digest not in hashes:
                hashes.append(digest)
        result[pin.name] = hashes
    return result


def rewrite(lines: List[str], pins: Sequence[Pin], hashes: Dict) -> List[str]:
    """``lines`` with each pin's hash lines replaced by ``hashes[pin.name]``."""
    result = list(lines)
    for pin in sorted(pins, key=lambda p: p.first, reverse=True):
        new = hashes[pin.name]
        result[pin.first + 1 : pin.last + 1] = [
            f"    --hash=sha256:{digest}" + (" \\" if i < len(new) - 1 else "")
            for i, digest in enumerate(new)
        ]
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    parser.add_argument(
        "--file", type=Path, default=Path(__file__).parents[2] / "requirements-emr.txt"
    )
    parser.add_argument("--wheels", type=Path, help="download folder (default: a temporary one)")
    args, pip_options = parser.parse_known_args(argv)
    lines = args.file.read_text().split("\n")
    pins = parse(lines)
    with tempfile.TemporaryDirectory(prefix="emr-wheels-") as temporary:
        hashes = expected_hashes(pins, args.wheels or Path(temporary), pip_options)
    differ = [pin for pin in pins if pin.hashes != hashes[pin.name]]
    if args.check:
        for pin in differ:
            print(f"{pin.name}=={pin.version}: file {pin.hashes}, wheels {hashes[pin.name]}")
        print(f"{len(pins)} pins, {sum(map(len, hashes.values()))} wheels: {len(differ)} differ")
        return 1 if differ else 0
    args.file.write_text("\n".join(rewrite(lines, pins, hashes)))
    print(f"{args.file}: {len(differ)} of {len(pins)} pins' hashes rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
