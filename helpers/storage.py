"""Storage: where outputs go and how they get there, on the local disk or in S3.

Every path goes through Hadoop's FileSystem of the running Spark session, so the same code
serves the local file system, S3A (tests, S3-compatible servers) and EMRFS (``s3://`` on EMR)
with the same credentials Spark uses. Owns the output layout of a run, the small files
(plots, manifest) written next to the Parquet and CSV outputs, and the manifest itself.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

from pyspark.sql import DataFrame, SparkSession

#: Output layout inside ``output_path``: one name per deliverable.
FEATURES_DIR = "features"
PCA_DIR = "pca"
PCA_CSV_DIR = "pca_csv"
FAILED_DIR = "failed"
INVENTORY_DIR = "inventory"
RUNS_DIR = "runs"
VARIANCE_PLOT = "variance.png"
MANIFEST = "manifest.json"


def output_location(output_path: str, name: str) -> str:
    """``output_path/name`` for a local folder or an ``s3://`` prefix."""
    return output_path.rstrip("/") + "/" + name


def to_local_or_uri(path: str) -> str:
    """Absolute local path for a plain path; URIs (``s3://``, ``file:``) unchanged."""
    if "://" in path or path.startswith("file:"):
        return path
    return os.path.abspath(path)


def _hadoop_path(spark: SparkSession, path: str):  # -> py4j JavaObject
    jvm = spark.sparkContext._jvm  # noqa: SLF001 (py4j handle)
    hadoop_path = jvm.org.apache.hadoop.fs.Path(to_local_or_uri(path))
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001
    return hadoop_path, hadoop_path.getFileSystem(conf)


def exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` exists (file or folder) in its file system."""
    hadoop_path, fs = _hadoop_path(spark, path)
    return bool(fs.exists(hadoop_path))


def qualified(spark: SparkSession, path: str) -> str:
    """The fully qualified URI Spark uses for ``path`` (e.g. ``file:/data/x``, ``s3a://b/k``)."""
    hadoop_path, fs = _hadoop_path(spark, path)
    return str(fs.makeQualified(hadoop_path).toString())


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """Write a small file (a plot, a manifest), replacing any previous one."""
    hadoop_path, fs = _hadoop_path(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def read_bytes(spark: SparkSession, path: str) -> bytes:
    """Read a small file written by :func:`write_bytes`."""
    hadoop_path, fs = _hadoop_path(spark, path)
    jvm = spark.sparkContext._jvm  # noqa: SLF001
    stream = fs.open(hadoop_path)
    try:
        buffer = jvm.java.io.ByteArrayOutputStream()
        jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buffer, 65536, False)
        return bytes(buffer.toByteArray())
    finally:
        stream.close()


def delete(spark: SparkSession, path: str) -> None:
    """Delete a file or folder (recursively) if it exists."""
    hadoop_path, fs = _hadoop_path(spark, path)
    if fs.exists(hadoop_path):
        fs.delete(hadoop_path, True)


def write_json(spark: SparkSession, path: str, payload: Dict[str, Any]) -> None:
    """Write ``payload`` as indented UTF-8 JSON."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    write_bytes(spark, path, text.encode("utf-8"))


def local_file(path: str) -> Optional[str]:
    """The local file system path of ``path`` (a plain path or a ``file:`` URI), else ``None``."""
    target = to_local_or_uri(path)
    if target.startswith("file:"):
        local = target[len("file:"):]
        while local.startswith("//"):  # file:///x and file:/x are both /x
            local = local[1:]
        return local
    return None if "://" in target else target


def _is_s3(path: str) -> bool:
    return to_local_or_uri(path).startswith(("s3://", "s3a://", "s3n://"))


def _local_temporary(local: str, data: bytes) -> str:
    """Write ``data`` to a new temporary file beside the local file ``local``; return its path."""
    os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
    temporary = f"{local}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    return temporary


def write_bytes_atomic(spark: Optional[SparkSession], path: str, data: bytes) -> None:
    """Replace the small file ``path`` in one step: readers see the old file or the new one.

    Local disk: write a temporary file beside it, then ``os.replace`` (no Spark needed). S3: one
    PUT (an object becomes visible whole, when its upload completes). Other file systems (HDFS):
    write a temporary file, delete the old one, rename (a window of milliseconds without it).
    """
    local = local_file(path)
    if local is not None:
        os.replace(_local_temporary(local, data), local)
        return
    if _is_s3(path):
        write_bytes(spark, path, data)
        return
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    write_bytes(spark, temporary, data)
    delete(spark, path)
    hadoop_source, fs = _hadoop_path(spark, temporary)
    hadoop_target, _ = _hadoop_path(spark, path)
    if not fs.rename(hadoop_source, hadoop_target):
        raise OSError(f"could not publish {path} (rename from {temporary} failed)")


def write_json_atomic(spark: SparkSession, path: str, payload: Dict[str, Any]) -> None:
    """Replace the JSON file ``path`` in one step (:func:`write_bytes_atomic`)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")
    write_bytes_atomic(spark, path, text)


def create_exclusive(spark: Optional[SparkSession], path: str, data: bytes) -> bool:
    """Create the small file ``path`` holding ``data`` only if it does not exist; True if created.

    Local disk: the content written to a temporary file, then hard-linked to ``path`` (atomic
    like ``O_CREAT | O_EXCL``: of two racers exactly one creates it, and nobody reads it half
    written). Other file
    systems (S3): Hadoop's ``create(overwrite=false)``, a check then a write, which two racers
    can both pass within milliseconds; a caller that must be alone reads the file back after a
    pause (S3 is strongly read-after-write consistent: the last writer's content is what all see).
    """
    local = local_file(path)
    if local is not None:
        temporary = _local_temporary(local, data)
        try:
            os.link(temporary, local)  # atomic, fails if it exists; readers never see it empty
        except FileExistsError:
            return False
        finally:
            os.remove(temporary)
        return True
    hadoop_path, fs = _hadoop_path(spark, path)
    if fs.exists(hadoop_path):
        return False
    try:
        stream = fs.create(hadoop_path, False)
    except Exception as error:  # noqa: BLE001 (py4j)
        if "FileAlreadyExistsException" in str(error):
            return False
        raise
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
    return True


def read_bytes_if_exists(spark: Optional[SparkSession], path: str) -> Optional[bytes]:
    """The small file ``path`` (local disk without Spark), or ``None`` when there is none."""
    local = local_file(path)
    if local is not None:
        try:
            with open(local, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
    if not exists(spark, path):
        return None
    try:
        return read_bytes(spark, path)
    except Exception as error:  # noqa: BLE001 (py4j): deleted between the check and the read
        if "FileNotFoundException" in str(error):
            return None
        raise


def delete_file(spark: Optional[SparkSession], path: str) -> None:
    """Delete the small file ``path`` if it exists (local disk without Spark)."""
    local = local_file(path)
    if local is not None:
        try:
            os.remove(local)
        except FileNotFoundError:
            pass
        return
    delete(spark, path)


def read_json(spark: SparkSession, path: str) -> Dict[str, Any]:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(read_bytes(spark, path).decode("utf-8"))


def write_parquet(frame: DataFrame, path: str) -> None:
    """Write ``frame`` as Parquet, replacing what was there."""
    frame.write.mode("overwrite").parquet(to_local_or_uri(path))


def write_csv(frame: DataFrame, path: str) -> None:
    """Write ``frame`` as CSV part files with a header line each, replacing what was there."""
    frame.write.mode("overwrite").option("header", "true").csv(to_local_or_uri(path))


def read_parquet(spark: SparkSession, path: str) -> DataFrame:
    """Read a Parquet folder written by :func:`write_parquet`."""
    return spark.read.parquet(to_local_or_uri(path))


def list_names(spark: SparkSession, path: str) -> List[str]:
    """Names directly inside a folder (empty when it does not exist)."""
    hadoop_path, fs = _hadoop_path(spark, path)
    if not fs.exists(hadoop_path):
        return []
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(hadoop_path))


def read_json_if_exists(spark: SparkSession, path: str) -> Optional[Dict[str, Any]]:
    """The JSON file at ``path``, or ``None`` when there is none."""
    return read_json(spark, path) if exists(spark, path) else None


@contextmanager
def clear_errors(path: str, endpoint: str = "") -> Iterator[None]:
    """Turn the storage layer's Java errors into one clear Python error naming what is wrong.

    Missing bucket -> ``FileNotFoundError``; refused credentials -> ``PermissionError``;
    endpoint down -> ``ConnectionError``. Other errors pass through unchanged.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 (py4j errors have no useful Python type)
        translated = translate_storage_error(error, path, endpoint)
        if translated is None:
            raise
        raise translated from None


def translate_storage_error(error: Exception, path: str, endpoint: str = "") -> Optional[Exception]:
    """A clear error for a storage failure on ``path``, or ``None`` when it is not one we know."""
    text = str(error)
    where = f" at endpoint {endpoint}" if endpoint else ""
    bucket = path.split("://", 1)[1].split("/", 1)[0] if "://" in path else ""
    if "UnknownStoreException" in text or "NoSuchBucket" in text or (
        bucket and f"Bucket {bucket} does not exist" in text
    ):
        return FileNotFoundError(f"bucket {bucket!r} does not exist{where} (path {path})")
    if any(marker in text for marker in ("InvalidAccessKeyId", "SignatureDoesNotMatch",
                                         "AccessDenied", "403 Forbidden", "Status Code: 403")):
        return PermissionError(
            f"access to {path} refused{where}: check the credentials (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, or the cluster's instance profile) and the bucket policy"
        )
    if any(marker in text for marker in ("Connection refused", "ConnectException",
                                         "Unable to execute HTTP request", "connect timed out",
                                         "UnknownHostException")):
        target = f"S3 endpoint {endpoint}" if endpoint else "the storage service"
        return ConnectionError(f"{target} is not reachable (path {path}): is the server up?")
    return None
