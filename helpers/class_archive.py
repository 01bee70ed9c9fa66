"""Local mode's class archive: the JVM maps Spark's classes from one file instead of its jars.

A local session's JVM (driver and executor in one) loads some 15,000 classes from pyspark's
jars, parsing and verifying each, in every run. Java's class-data sharing (CDS) keeps them
parsed and verified in an archive file that later JVMs map into memory. :func:`java_options`
gives a local session the archive made for this Java and this pyspark when there is one;
``python -m helpers.class_archive`` makes it (``make`` does, once per virtual environment) by
running the chain on a few generated images in a JVM that writes the classes it loaded as it
exits. Without the archive (not made yet, another Java, another pyspark) sessions start as
usual; an archive the JVM finds unusable costs one warning line, never the run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import List, Optional

#: Folder of the archives, inside the Python environment that runs the chain.
ARCHIVE_DIR = Path(sys.prefix) / "var" / "fruits-class-archive"

#: How long the JVM may take to write the archive once the workload's session stopped.
DUMP_TIMEOUT_SECONDS = 300


def java_executable() -> Optional[Path]:
    """The ``java`` Spark starts: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not found or not os.path.exists(found):
        return None
    return Path(os.path.realpath(found))


def archive_path() -> Optional[Path]:
    """Where the archive for this Java and this pyspark lives (``None`` without a Java).

    Its name is a digest of the Java binary (path, size, modification time) and of pyspark's
    version and jar names, so another Java or pyspark never gets an archive it cannot use."""
    java = java_executable()
    if java is None:
        return None
    stat = java.stat()
    version = importlib.metadata.version("pyspark")
    spec = importlib.util.find_spec("pyspark")  # not imported: the make step checks quickly
    jars = sorted(os.listdir(Path(spec.origin).parent / "jars"))
    identity = [str(java), str(stat.st_size), str(stat.st_mtime_ns), version, *jars]
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-{version}-{digest}.jsa"


def java_options() -> List[str]:
    """JVM options for a local session: the archive, when it exists for this Java and pyspark."""
    path = archive_path()
    if path is None or not path.is_file():
        return []
    return [_quoted(f"-XX:SharedArchiveFile={path}")]


def _quoted(option: str) -> str:
    # spark.driver.extraJavaOptions is split like a shell command line.
    return shlex.quote(option) if any(c.isspace() for c in option) else option


def make_archive(path: Path) -> Path:
    """Run the chain's stages on a few generated images in a new local JVM that writes the
    classes it loaded to ``path`` as it exits; return ``path``.

    The archive is written to a temporary name and moved into place once the JVM has exited,
    so a session never maps a half-written one. Fails when a Spark session is running in this
    process (its JVM would be reused) or the JVM writes no archive."""
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:  # noqa: SLF001
        raise RuntimeError(
            "a Spark session is running in this process: make the archive in a new one"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        _dump(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


def _dump(partial: Path) -> None:
    from pyspark import SparkContext

    with tempfile.TemporaryDirectory(prefix="fruits-class-archive-") as scratch:
        # Classes the archive cannot hold (signed jars, generated ones) are skipped, each with a
        # warning: only errors are shown.
        options = [_quoted(f"-XX:ArchiveClassesAtExit={partial}"), "-Xlog:cds*=error"]
        gateway_process = _run_workload(Path(scratch), options)
        # The JVM exits when its standard input closes, and writes the archive as it exits.
        gateway_process.stdin.close()
        gateway_process.wait(timeout=DUMP_TIMEOUT_SECONDS)
        # That JVM is gone: a later session in this process starts a new one.
        SparkContext._gateway = None  # noqa: SLF001
        SparkContext._jvm = None  # noqa: SLF001
    if not partial.is_file() or partial.stat().st_size == 0:
        raise RuntimeError(
            f"the JVM wrote no class archive (exit status {gateway_process.returncode})"
        )


def _run_workload(scratch: Path, options: List[str]):
    """The local notebook's cells, on 12 generated images in 2 classes; the JVM's process.

    Cell by cell, not :func:`helpers.pipeline.run_pipeline`: the archive holds the classes
    that the notebook's other cells load too (listing preview, summary, cluster check, report).
    """
    from pyspark import SparkContext

    from helpers.classify import evaluate_run
    from helpers.config import PipelineConfig
    from helpers.pipeline import Run
    from helpers.report import write_report
    from helpers.session import get_spark

    images = scratch / "images"
    _write_images(images)
    config = PipelineConfig(
        input_path=str(images),
        output_path=str(scratch / "outputs"),
        spark_master="local[2]",
        progress=False,
    )
    spark = get_spark(config, java_options=options)
    process = SparkContext._gateway.proc  # noqa: SLF001 (the JVM pyspark started)
    run = Run(config, spark)
    try:
        run.list_images().limit(5).toPandas()
        run.class_summary()
        run.sample_images(per_class=2)
        run.check_cluster()
        run.featurize()
        run.failed_images()
        run.reduce()
        run.variance_figure()
        run.scatter_figure()
        classification = evaluate_run(run)
        run.write_manifest()
        write_report(run, classification, per_class=2)
    finally:
        run.close()
        spark.stop()
    return process


def _write_images(root: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("Training", 4), ("Test", 2)):
        for label in ("Red fruit", "Green fruit 2"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}_100.jpg", quality=90)


def main(argv: Optional[List[str]] = None) -> int:
    """Make the archive for this Java and pyspark unless it exists. Never fails the caller:
    without an archive sessions start as before. A failed attempt is recorded next to where the
    archive would be (``.failed``, with the error) and not retried until that file is deleted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    path = archive_path()
    if path is None:
        print("class archive: no Java found, none made", file=sys.stderr)
        return 0
    failed = path.with_suffix(".failed")
    if path.is_file() or failed.is_file():
        return 0
    print(f"class archive: making {path} (once; about a minute) ...", file=sys.stderr)
    try:
        make_archive(path)
    except Exception as error:  # noqa: BLE001 (reported, recorded, and the run goes on)
        with suppress(OSError):  # a folder it cannot write to is one more reason, not a crash
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{type(error).__name__}: {error}\n")
        print(
            f"class archive: not made ({type(error).__name__}: {error}); sessions start without"
            f" it. Delete {failed} to try again.",
            file=sys.stderr,
        )
        return 0
    for old in path.parent.glob("spark-*"):
        if old != path:
            old.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
