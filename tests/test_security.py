"""Security checks of the repository itself: no credentials in any file or in the git history,
and notebooks committed without outputs.

The scanner looks for AWS access key ids, AWS secret access keys (assigned to a secret-like
name, or a bare random-looking 40-character string near "aws") and private keys. The made-up
credentials of the tests' throwaway S3 server (``tests/conftest.py``) match none of these
patterns; there is deliberately no allow-list, which could hide a real key.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections import Counter
from typing import Iterable, List, Optional, Tuple

import pytest

from conftest import REPO

#: Files never scanned as text (also anything with a NUL byte in its first 8 KiB).
BINARY_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".bmp",
    ".ico",
    ".webp",
    ".pdf",
    ".parquet",
    ".pth",
    ".pt",
    ".h5",
    ".keras",
    ".npy",
    ".npz",
    ".pkl",
    ".whl",
    ".zip",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".jar",
    ".class",
    ".so",
    ".pyc",
)
#: Folders skipped when the repository is not a git checkout (git would ignore them).
UNTRACKED_DIRS = {
    ".git",
    ".venv",
    "outputs",
    "dist",
    "build",
    "__pycache__",
    ".pytest_cache",
    ".ipynb_checkpoints",
    ".bench",
}

AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
# A 40-character base64-ish value assigned (=, :, =>, a dict or YAML entry) to a secret-like name.
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:secret|aws_secret_access_key|secret_access_key|secretkey)[\w.\-]*[\"']?\s*"
    r"(?:=>|[:=])\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
# A bare 40-character base64-ish token (an AWS secret key's shape), checked near "aws" only.
BARE_40 = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
AWS_WORD = re.compile(r"(?i)aws")
#: Lines either side of a bare token in which "aws" makes it suspicious.
AWS_NEARBY_LINES = 3


def shannon_bits(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(token: str) -> bool:
    """A token as random as an AWS secret key: upper, lower and digits, and high entropy.

    Git SHAs (lower-case hex) and words or paths (low entropy) do not qualify.
    """
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
        and shannon_bits(token) >= 4.2
    )


def find_secrets(text: str) -> List[Tuple[int, str]]:
    """``(line number, what)`` for every credential-looking string in ``text``."""
    lines = text.splitlines()
    hits: List[Tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        for match in AWS_KEY_ID.finditer(line):
            hits.append((number, f"AWS access key id {match.group(0)[:8]}..."))
        if PRIVATE_KEY.search(line):
            hits.append((number, "private key block"))
        assigned = {match.group(1) for match in SECRET_ASSIGNMENT.finditer(line)}
        for token in assigned:
            hits.append((number, f"secret assigned: {token[:4]}..."))
        for match in BARE_40.finditer(line):
            token = match.group(0)
            if token in assigned or not looks_random(token):
                continue
            window = lines[max(0, number - 1 - AWS_NEARBY_LINES) : number + AWS_NEARBY_LINES]
            if any(AWS_WORD.search(near) for near in window):
                hits.append((number, f"random 40-character string near 'aws': {token[:4]}..."))
    return hits


def read_text(path: str) -> Optional[str]:
    """The file as text, or None for a binary file (by suffix or a NUL byte)."""
    if path.lower().endswith(BINARY_SUFFIXES):
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def git(*args: str) -> Optional[str]:
    """Output of a git command in the repository, or None when this is no git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", REPO, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def repository_files() -> List[str]:
    """Files git tracks, plus new files it does not ignore (a key is caught before its commit).

    Outside a git checkout (a source archive): every file but the usual generated folders.
    """
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        names = sorted({name for name in listed.split("\0") if name})
        return [name for name in names if os.path.isfile(os.path.join(REPO, name))]
    names = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [
            d for d in subfolders if d not in UNTRACKED_DIRS and not d.endswith(".egg-info")
        ]
        names += [os.path.relpath(os.path.join(folder, f), REPO) for f in files]
    return sorted(names)


def scan_files(root: str, names: Iterable[str]) -> List[str]:
    """``path:line: what`` for every hit in the text files ``names`` under ``root``."""
    found = []
    for name in names:
        text = read_text(os.path.join(root, name))
        if text is not None:
            found += [f"{name}:{line}: {what}" for line, what in find_secrets(text)]
    return found


def test_no_secrets_in_repository_files():
    names = repository_files()
    assert any(name.endswith(".ipynb") for name in names), "the notebooks were not scanned"
    assert any(name.endswith("conftest.py") for name in names), "the tests were not scanned"
    found = scan_files(REPO, names)
    assert not found, (
        "credentials in the repository (remove them, then rotate them):\n" + "\n".join(found)
    )


def test_no_secrets_in_git_history():
    if git("rev-parse", "--is-inside-work-tree") is None:
        pytest.skip("not a git checkout: no history to scan")
    history = git("log", "-p", "--all", "--no-color", "--no-ext-diff", "--format=commit %H")
    assert history is not None, "git log failed"
    found, commit, path, added = [], "", "", []
    scanned = {"commits": 0, "lines": 0}

    def flush():
        scanned["lines"] += len(added)
        for _, what in find_secrets("\n".join(added)):
            found.append(f"{commit[:12]} {path}: {what}")
        added.clear()

    for line in history.splitlines():
        if line.startswith("commit ") and len(line) == 47:
            flush()
            commit = line.split()[1]
            scanned["commits"] += 1
        elif line.startswith("+++ "):
            flush()
            path = line[4:].removeprefix("b/")
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    flush()
    assert scanned["commits"] >= 1 and scanned["lines"] >= 1, (
        f"nothing parsed from git log: {scanned}"
    )
    assert not found, (
        "credentials in the git history (rotate them; rewriting history is not "
        "enough once pushed):\n" + "\n".join(found)
    )


def test_scanner_flags_planted_credentials(tmp_path):
    # Built at run time, so the repository itself never holds anything key-shaped.
    key_id = "AKIA" + "ABCDEFGHIJKLMNOP"
    session_id = "ASIA" + "Q" * 15 + "7"
    secret = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
    bare = "Zx9" + "kQ2mVb7Lp4Rt8Wn1Hs6Jd3Fg5Yc0Ua+Pe/Tq2"
    begin = "-----BEGIN " + "RSA PRIVATE KEY-----"
    planted = {
        "id.py": f'AWS_ACCESS_KEY_ID = "{key_id}"\n',
        "session.json": json.dumps({"token": session_id}),
        "env.sh": f"export AWS_SECRET_ACCESS_KEY={secret}\n",
        "config.yaml": f"credentials:\n  secret_key: '{secret}'\n",
        "notes.md": f"our aws account\n\nkey {bare}\n",
        "id_rsa": f"{begin}\nMIIEpAIBAAKCAQEA\n",
        "notebook.ipynb": json.dumps({"metadata": {"aws": {"secret": secret}}, "cells": []}),
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    found = scan_files(str(tmp_path), sorted(planted))
    flagged = {hit.split(":", 1)[0] for hit in found}
    assert flagged == set(planted), f"missed: {set(planted) - flagged}; found: {found}"
    assert any(hit.startswith("id.py:1:") for hit in found), found
    assert all(key_id not in hit and secret not in hit for hit in found), "hits echo the secret"

    # What must not be flagged: the tests' made-up S3 credentials, git SHAs, paths, words.
    benign = {
        "conftest.py": 'S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fruitstestkey", '
        '"AWS_SECRET_ACCESS_KEY": "fruitstestsecret"}\n',
        "sha.txt": "aws deploy at 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n",
        "path.txt": "aws s3 cp outputs/local/features/part0000 s3://bucket/prefix/\n",
        "photo.jpg": "AKIA" + "ABCDEFGHIJKLMNOP",  # binary by suffix: not read
    }
    for name, text in benign.items():
        (tmp_path / name).write_text(text)
    assert scan_files(str(tmp_path), sorted(benign)) == []


def tracked_notebooks() -> List[str]:
    listed = git("ls-files", "-z", "--", "*.ipynb")
    if listed is not None:
        names = [name for name in listed.split("\0") if name]
    else:
        names = [name for name in repository_files() if name.endswith(".ipynb")]
    return sorted(name for name in names if os.path.isfile(os.path.join(REPO, name)))


def test_every_notebook_is_committed_without_outputs():
    notebooks = tracked_notebooks()
    assert notebooks, "no notebook found"
    dirty = []
    for name in notebooks:
        with open(os.path.join(REPO, name), encoding="utf-8") as handle:
            notebook = json.load(handle)
        for index, cell in enumerate(notebook.get("cells", [])):
            if cell.get("cell_type") != "code":
                continue
            if cell.get("outputs"):
                dirty.append(f"{name}: cell {index} has {len(cell['outputs'])} output(s)")
            if cell.get("execution_count") is not None:
                dirty.append(f"{name}: cell {index} has execution_count {cell['execution_count']}")
    assert not dirty, "clear the notebooks' outputs before committing:\n" + "\n".join(dirty)
