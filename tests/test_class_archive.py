"""helpers.class_archive: local sessions map Spark's classes from the archive made for them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import class_archive


def test_the_session_maps_the_archive_of_its_java_and_pyspark(spark) -> None:
    """The test session (built by get_spark, local mode) started its JVM with the archive, and
    the JVM mapped it: an archive it cannot use is unmapped, with a warning."""
    path = class_archive.archive_path()
    assert path is not None and path.is_file(), "make class-archive (make test does it first)"
    assert path.stat().st_size > 50 * 2**20  # some 15,000 classes, not an empty shell
    jvm = spark.sparkContext._jvm  # noqa: SLF001
    arguments = list(
        jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    )
    assert f"-XX:SharedArchiveFile={path}" in arguments
    pid = jvm.java.lang.ProcessHandle.current().pid()
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert str(path) in maps


def test_no_archive_no_option(tmp_path, monkeypatch) -> None:
    """Sessions get the option only once the archive exists; a path with spaces is quoted."""
    folder = tmp_path / "with space"
    monkeypatch.setattr(class_archive, "ARCHIVE_DIR", folder)
    assert class_archive.java_options() == []
    path = class_archive.archive_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    assert class_archive.java_options() == [f"'-XX:SharedArchiveFile={path}'"]


def test_another_java_gets_another_archive(tmp_path, monkeypatch) -> None:
    """The archive's name follows the Java Spark starts ($JAVA_HOME first), so one made for
    another Java is never offered; no Java, no archive."""
    ours = class_archive.archive_path()
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_bytes(b"#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    other = class_archive.archive_path()
    assert other is not None and other != ours and other.parent == ours.parent
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nothing"))
    assert class_archive.archive_path() is None


def test_an_archive_the_jvm_cannot_use_costs_a_warning_not_the_run(tmp_path) -> None:
    """What the module relies on: a JVM given an archive made for another class path (or not
    an archive at all) warns and runs without it."""
    java = str(class_archive.java_executable())
    bogus = tmp_path / "bogus.jsa"
    bogus.write_bytes(os.urandom(4096))

    def version(archive: Path) -> subprocess.CompletedProcess:
        command = [java, f"-XX:SharedArchiveFile={archive}", "-cp", str(tmp_path), "-version"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    other_class_path = version(class_archive.archive_path())
    assert other_class_path.returncode == 0, other_class_path.stderr
    assert "Unable to use shared archive" in other_class_path.stdout  # the JVM logs to stdout
    not_an_archive = version(bogus)
    assert not_an_archive.returncode == 0, not_an_archive.stderr
    assert "sharing" not in not_an_archive.stderr  # runs, sharing nothing


def test_a_failed_attempt_is_reported_once_and_never_fails_the_caller(
    tmp_path, monkeypatch, capsys
) -> None:
    """`make run` goes on without an archive when it cannot be made, and later calls do not
    spend the attempt again until the recorded failure is deleted."""
    monkeypatch.setattr(class_archive, "ARCHIVE_DIR", tmp_path)
    attempts = []

    def cannot(path: Path) -> Path:
        attempts.append(path)
        raise RuntimeError("this JVM cannot write class archives")

    monkeypatch.setattr(class_archive, "make_archive", cannot)
    assert class_archive.main([]) == 0
    error = capsys.readouterr().err
    assert "not made (RuntimeError: this JVM cannot write class archives)" in error
    failed = class_archive.archive_path().with_suffix(".failed")
    assert f"Delete {failed} to try again" in error
    assert class_archive.main([]) == 0 and len(attempts) == 1
    assert class_archive.java_options() == []
    failed.unlink()
    assert class_archive.main([]) == 0 and len(attempts) == 2


def test_a_folder_it_cannot_write_to_is_reported_not_raised(tmp_path, monkeypatch, capsys) -> None:
    """A Python environment whose folder cannot be written (a file stands in the way here)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(class_archive, "ARCHIVE_DIR", blocker / "archives")
    assert class_archive.main([]) == 0
    assert "class archive: not made (" in capsys.readouterr().err
