"""scripts/emr/requirements_hashes.py: the hashes of requirements-emr.txt from the wheels pip
picks for x86_64 and aarch64 nodes, with real pip on a local folder of wheels (no index)."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "emr"))

import requirements_hashes  # noqa: E402

STALE = "0" * 64


def make_wheel(folder: Path, name: str, version: str, tag: str) -> str:
    """A minimal valid wheel; returns its sha256."""
    dist_info = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", f"# {tag}\n")
        wheel.writestr(
            f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        wheel.writestr(
            f"{dist_info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n",
        )
        wheel.writestr(f"{dist_info}/RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(tmp_path: Path):
    wheels = tmp_path / "index"
    wheels.mkdir()
    digests = {
        "pure": make_wheel(wheels, "pure", "1.0", "py3-none-any"),
        "native-x86_64": make_wheel(wheels, "native", "2.0", "cp311-cp311-manylinux_2_17_x86_64"),
        "native-aarch64": make_wheel(wheels, "native", "2.0", "cp311-cp311-manylinux_2_28_aarch64"),
        # newer glibc than Amazon Linux 2023's 2.34: a node cannot install it
        "native-too-new": make_wheel(wheels, "native", "2.0", "cp311-cp311-manylinux_2_39_aarch64"),
        "intel_only": make_wheel(wheels, "intel_only", "3.0", "cp311-cp311-manylinux2014_x86_64"),
        "arm_only": make_wheel(wheels, "arm_only", "3.0", "cp311-cp311-manylinux2014_aarch64"),
    }
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# header comment\n\n"
        f"pure==1.0 \\\n    --hash=sha256:{digests['pure']}\n    # via native\n"
        f"native==2.0 \\\n    --hash=sha256:{STALE}\n    # via (top level)\n"
        f'intel_only==3.0 ; platform_machine == "x86_64" \\\n    --hash=sha256:{STALE}\n'
        f'arm_only==3.0 ; platform_machine == "aarch64" \\\n'
        f"    --hash=sha256:{digests['arm_only']}\n    # via (top level)\n"
    )
    return requirements, wheels, digests


def run(requirements: Path, wheels: Path, *extra: str) -> int:
    return requirements_hashes.main(
        [
            *extra,
            "--file",
            str(requirements),
            "--isolated",
            "--no-index",
            "--find-links",
            str(wheels),
        ]
    )


def test_check_names_what_differs_then_rewrite_fixes_it(index, capsys) -> None:
    requirements, wheels, digests = index
    before = requirements.read_text()
    assert run(requirements, wheels, "--check") == 1
    out = capsys.readouterr().out
    assert "native==2.0" in out and "intel_only==3.0" in out and "2 differ" in out
    assert "pure==1.0:" not in out and "arm_only==3.0:" not in out
    assert requirements.read_text() == before  # --check writes nothing

    assert run(requirements, wheels) == 0
    pins = {
        pin.name: pin for pin in requirements_hashes.parse(requirements.read_text().split("\n"))
    }
    # one hash for a wheel both platforms share; x86_64's then aarch64's for a compiled one
    assert pins["pure"].hashes == [digests["pure"]]
    assert pins["native"].hashes == [digests["native-x86_64"], digests["native-aarch64"]]
    assert digests["native-too-new"] not in pins["native"].hashes
    assert pins["intel_only"].hashes == [digests["intel_only"]]
    assert pins["arm_only"].hashes == [digests["arm_only"]]
    text = requirements.read_text()
    assert text.startswith("# header comment\n") and text.count("# via") == 3
    assert run(requirements, wheels, "--check") == 0


def test_a_platform_without_a_wheel_is_an_error_naming_it(index) -> None:
    requirements, wheels, _ = index
    for wheel in wheels.glob("native-2.0-*aarch64.whl"):
        wheel.unlink()
    with pytest.raises(RuntimeError, match="aarch64"):
        run(requirements, wheels, "--check")


def test_the_repository_file_parses_with_a_hash_for_every_pin() -> None:
    lines = (ROOT / "requirements-emr.txt").read_text().split("\n")
    pins = requirements_hashes.parse(lines)
    assert len(pins) == sum(1 for line in lines if requirements_hashes.PIN.match(line))
    assert {pin.machine for pin in pins} == {None, "x86_64", "aarch64"}
    assert all(1 <= len(pin.hashes) <= len(pin.machines()) for pin in pins)
