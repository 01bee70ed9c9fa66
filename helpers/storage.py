"""Storage: the one seam through which the chain reads and writes a path, local or in S3.

Owns which paths are S3 (:func:`is_s3`), which S3 endpoint they go to
(:func:`resolve_s3_endpoint`), the output layout of a run, and reading and writing its small
files (plots, manifests, the lock, the history) and Spark's Parquet and CSV outputs. Like
papermill's ``iorw``, one handler per kind of path does the work, and :func:`handler_for`
alone picks it:

* :class:`LocalHandler`: a plain path or a ``file:`` URI, through Python's own file API,
  with or without a Spark session;
* :class:`HadoopHandler`: any other URI when a Spark session is given, through Hadoop's
  FileSystem, so that S3A (S3-compatible servers) and EMRFS (``s3://`` on EMR) use the
  credentials and settings Spark uses;
* :class:`S3Handler`: ``s3://``, ``s3a://`` or ``s3n://`` without a Spark session (the
  ``python -m helpers.report`` command line, the weights download on Spark's workers), through
  boto3 with the standard AWS credentials.

Every handler answers a missing file or bucket with a :class:`FileNotFoundError` naming the
path (:func:`translate_storage_error` words the S3 ones).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union

from helpers.config import S3_ENDPOINT_ENV

if TYPE_CHECKING:
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
FEATURE_MOMENTS = "feature_moments.npz"  # PCA moments of the run's own features/ folder

#: URI schemes that name an S3 object (``s3n`` and ``s3a`` are Hadoop's names for S3).
S3_SCHEMES = ("s3://", "s3a://", "s3n://")
#: How often a small file replaced while Hadoop reads it is read again before giving up.
REPLACED_WHILE_READ_ATTEMPTS = 5


# -- paths -----------------------------------------------------------------------------------
def is_s3(path: str) -> bool:
    """True when ``path`` names an S3 object or prefix (``s3://``, ``s3a://``, ``s3n://``)."""
    return path.startswith(S3_SCHEMES)


def resolve_s3_endpoint(explicit: Optional[str] = "") -> str:
    """The S3 endpoint to use: ``explicit``, else ``$FRUITS_S3_ENDPOINT``, else ``""`` (AWS S3)."""
    return explicit or os.environ.get(S3_ENDPOINT_ENV, "")


def output_location(output_path: str, name: str) -> str:
    """``output_path/name`` for a local folder or an ``s3://`` prefix."""
    return output_path.rstrip("/") + "/" + name


def to_local_or_uri(path: str) -> str:
    """Absolute local path for a plain path; URIs (``s3://``, ``file:``) unchanged."""
    if "://" in path or path.startswith("file:"):
        return path
    return os.path.abspath(path)


def local_file(path: str) -> Optional[str]:
    """The local file system path of ``path`` (a plain path or a ``file:`` URI), else ``None``."""
    target = to_local_or_uri(path)
    if target.startswith("file:"):
        local = target[len("file:") :]
        while local.startswith("//"):  # file:///x and file:/x are both /x
            local = local[1:]
        return local
    return None if "://" in target else target


def split_s3(path: str, key_required: bool = True) -> Tuple[str, str]:
    """``(bucket, key)`` of an S3 URI; the key has no leading or trailing ``/``.

    Raises:
        ValueError: no bucket, or no key where ``key_required``.
    """
    bucket, _, key = path.split("://", 1)[1].partition("/")
    key = key.strip("/")
    if not bucket or (key_required and not key):
        raise ValueError(f"malformed S3 URI {path!r}: expected s3://bucket/key")
    return bucket, key


# -- handlers --------------------------------------------------------------------------------
def _checksum_sidecar(local: str) -> str:
    """Where Hadoop's local file system keeps a file's checksum (``.name.crc``)."""
    folder, name = os.path.split(local)
    return os.path.join(folder, f".{name}.crc")


class LocalHandler:
    """Small files on the local disk, through Python's file API (no Spark needed).

    A file replaced here loses the ``.name.crc`` checksum Hadoop may have left beside it (a
    stale one would make a later Hadoop read fail); listings leave those sidecars out, as
    Hadoop's do.
    """

    def read(self, path: str) -> bytes:
        with open(local_file(path), "rb") as handle:
            return handle.read()

    def write(self, path: str, data: bytes) -> None:
        local = local_file(path)
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        with open(local, "wb") as handle:
            handle.write(data)
        self._drop_sidecar(local)

    def replace(self, path: str, data: bytes) -> None:
        local = local_file(path)
        os.replace(self._temporary(local, data), local)
        self._drop_sidecar(local)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        local = local_file(path)
        temporary = self._temporary(local, data)
        try:
            os.link(temporary, local)  # atomic, fails if it exists; readers never see it empty
        except FileExistsError:
            return False
        finally:
            os.remove(temporary)
        return True

    def exists(self, path: str) -> bool:
        return os.path.exists(local_file(path))

    def delete(self, path: str) -> None:
        local = local_file(path)
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local)
        else:
            try:
                os.remove(local)
            except FileNotFoundError:
                pass
        self._drop_sidecar(local)

    def list_names(self, path: str) -> List[str]:
        local = local_file(path)
        if not os.path.isdir(local):
            return []
        return sorted(
            name
            for name in os.listdir(local)
            if not (name.startswith(".") and name.endswith(".crc"))
        )

    def download(self, path: str, destination: str) -> None:
        shutil.copyfile(local_file(path), destination)

    @staticmethod
    def _temporary(local: str, data: bytes) -> str:
        """Write ``data`` to a new temporary file beside ``local``; return its path."""
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        temporary = f"{local}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        return temporary

    @staticmethod
    def _drop_sidecar(local: str) -> None:
        try:
            os.remove(_checksum_sidecar(local))
        except FileNotFoundError:
            pass


class S3Handler:
    """Small files in S3 without Spark, through boto3 (standard AWS credentials).

    ``endpoint``: an S3-compatible server's URL, ``""`` for AWS S3.
    """

    def __init__(self, endpoint: str = "") -> None:
        self.endpoint = endpoint

    def read(self, path: str) -> bytes:
        bucket, key = split_s3(path)
        with self._clear_errors(path):
            return self._client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def write(self, path: str, data: bytes) -> None:
        bucket, key = split_s3(path)
        with self._clear_errors(path):
            self._client().put_object(Bucket=bucket, Key=key, Body=data)

    def replace(self, path: str, data: bytes) -> None:
        """One PUT: an S3 object becomes visible whole, when its upload completes."""
        self.write(path, data)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """A check then a PUT: two racers can both pass within milliseconds (see
        :func:`create_exclusive`)."""
        if self.exists(path):
            return False
        self.write(path, data)
        return True

    def exists(self, path: str) -> bool:
        """True for an object, or a prefix (a folder) holding at least one object."""
        bucket, key = split_s3(path, key_required=False)
        client = self._client()
        with self._clear_errors(path):
            if key:
                try:
                    client.head_object(Bucket=bucket, Key=key)
                    return True
                except client.exceptions.ClientError as error:
                    if str(error.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey"):
                        raise
            listed = client.list_objects_v2(
                Bucket=bucket, Prefix=key + "/" if key else "", MaxKeys=1
            )
            return bool(listed.get("KeyCount"))

    def delete(self, path: str) -> None:
        """Delete the object and every object under ``path/``."""
        bucket, key = split_s3(path)
        client = self._client()
        with self._clear_errors(path):
            client.delete_object(Bucket=bucket, Key=key)
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=key + "/"
            ):
                objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if objects:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": objects})

    def list_names(self, path: str) -> List[str]:
        bucket, key = split_s3(path, key_required=False)
        prefix = key + "/" if key else ""
        names = set()
        with self._clear_errors(path):
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
            )
            for page in pages:
                names.update(
                    item["Prefix"][len(prefix) :].rstrip("/")
                    for item in page.get("CommonPrefixes", [])
                )
                names.update(item["Key"][len(prefix) :] for item in page.get("Contents", []))
        return sorted(name for name in names if name)

    def download(self, path: str, destination: str) -> None:
        bucket, key = split_s3(path)
        with self._clear_errors(path):
            self._client().download_file(bucket, key, destination)

    def _client(self) -> Any:
        import boto3  # imported here: only S3 paths without Spark need it

        # A session of its own: boto3's default session keeps the first credentials it resolved
        # in this process, so a later change of AWS_* variables would not be seen.
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint or None)

    @contextmanager
    def _clear_errors(self, path: str) -> Iterator[None]:
        with clear_errors(path, self.endpoint):
            yield


class HadoopHandler:
    """Any URI through Hadoop's FileSystem of a running Spark session (S3A, EMRFS, HDFS)."""

    def __init__(self, spark: "SparkSession") -> None:
        self.spark = spark

    def read(self, path: str) -> bytes:
        """The whole file. A file replaced while it is read (S3A reports the change as
        ``RemoteFileChangedException``: another run's heartbeat, a republished manifest) is read
        again, up to :data:`REPLACED_WHILE_READ_ATTEMPTS` times, so the bytes are one version."""
        for _ in range(REPLACED_WHILE_READ_ATTEMPTS):
            try:
                return self._read_once(path)
            except Exception as error:  # noqa: BLE001 (py4j)
                if "RemoteFileChangedException" not in str(error):
                    raise
        raise OSError(
            f"{path} was replaced while it was read, {REPLACED_WHILE_READ_ATTEMPTS} times in a row"
        )

    def _open(self, path: str):  # -> py4j FSDataInputStream
        hadoop_path, fs = _hadoop_path(self.spark, path)
        return fs.open(hadoop_path)

    def _read_once(self, path: str) -> bytes:
        jvm = self.spark.sparkContext._jvm  # noqa: SLF001
        with _hadoop_errors(path):
            stream = self._open(path)
        try:
            buffer = jvm.java.io.ByteArrayOutputStream()
            with _hadoop_errors(path):
                jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buffer, 65536, False)
            return bytes(buffer.toByteArray())
        finally:
            stream.close()

    def write(self, path: str, data: bytes) -> None:
        hadoop_path, fs = _hadoop_path(self.spark, path)
        stream = fs.create(hadoop_path, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def replace(self, path: str, data: bytes) -> None:
        """S3: one PUT. Other file systems (HDFS): write a temporary file, delete the old one,
        rename (a window of milliseconds without it)."""
        if is_s3(path):
            self.write(path, data)
            return
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        self.write(temporary, data)
        self.delete(path)
        hadoop_source, fs = _hadoop_path(self.spark, temporary)
        hadoop_target, _ = _hadoop_path(self.spark, path)
        if not fs.rename(hadoop_source, hadoop_target):
            raise OSError(f"could not publish {path} (rename from {temporary} failed)")

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Hadoop's ``create(overwrite=false)``: a check then a write."""
        hadoop_path, fs = _hadoop_path(self.spark, path)
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

    def exists(self, path: str) -> bool:
        hadoop_path, fs = _hadoop_path(self.spark, path)
        return bool(fs.exists(hadoop_path))

    def delete(self, path: str) -> None:
        hadoop_path, fs = _hadoop_path(self.spark, path)
        if fs.exists(hadoop_path):
            fs.delete(hadoop_path, True)

    def list_names(self, path: str) -> List[str]:
        hadoop_path, fs = _hadoop_path(self.spark, path)
        if not fs.exists(hadoop_path):
            return []
        return sorted(str(status.getPath().getName()) for status in fs.listStatus(hadoop_path))

    def download(self, path: str, destination: str) -> None:
        with open(destination, "wb") as handle:
            handle.write(self.read(path))


@contextmanager
def _hadoop_errors(path: str) -> Iterator[None]:
    """Hadoop's missing file (``FileNotFoundException``: never written, or deleted while it was
    opened) and the errors :func:`translate_storage_error` knows, as Python errors."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 (py4j)
        if "RemoteFileChangedException" in str(error):
            raise  # the file changed while it was read: the caller reads it again
        translated = translate_storage_error(error, path)
        if translated is None and "FileNotFoundException" in str(error):
            translated = FileNotFoundError(f"{path} does not exist")
        if translated is None:
            raise
        raise translated from None


Handler = Union[LocalHandler, HadoopHandler, S3Handler]


def handler_for(spark: Optional["SparkSession"], path: str, s3_endpoint: str = "") -> Handler:
    """The handler that reads and writes ``path``: the one place that tells paths apart.

    Local paths: :class:`LocalHandler`. Other URIs with a Spark session: :class:`HadoopHandler`.
    S3 without one: :class:`S3Handler` at ``resolve_s3_endpoint(s3_endpoint)``.

    Raises:
        ValueError: a URI that is neither local nor S3, and no Spark session to reach it.
    """
    if local_file(path) is not None:
        return LocalHandler()
    if spark is not None:
        return HadoopHandler(spark)
    if is_s3(path):
        return S3Handler(resolve_s3_endpoint(s3_endpoint))
    raise ValueError(f"{path}: only local paths and s3:// are reached without a Spark session")


def _hadoop_path(spark: "SparkSession", path: str):  # -> (py4j Path, FileSystem)
    jvm = spark.sparkContext._jvm  # noqa: SLF001 (py4j handle)
    hadoop_path = jvm.org.apache.hadoop.fs.Path(to_local_or_uri(path))
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001
    return hadoop_path, hadoop_path.getFileSystem(conf)


# -- small files -----------------------------------------------------------------------------
# ``spark`` may be ``None`` in every function below: local paths and S3 then need no session.


def exists(spark: Optional["SparkSession"], path: str, s3_endpoint: str = "") -> bool:
    """True when ``path`` exists (file or folder)."""
    return handler_for(spark, path, s3_endpoint).exists(path)


def qualified(spark: "SparkSession", path: str) -> str:
    """The fully qualified URI Spark uses for ``path`` (e.g. ``file:/data/x``, ``s3a://b/k``)."""
    hadoop_path, fs = _hadoop_path(spark, path)
    return str(fs.makeQualified(hadoop_path).toString())


def write_bytes(
    spark: Optional["SparkSession"], path: str, data: bytes, s3_endpoint: str = ""
) -> None:
    """Write a small file (a plot, a manifest), replacing any previous one."""
    handler_for(spark, path, s3_endpoint).write(path, data)


def read_bytes(spark: Optional["SparkSession"], path: str, s3_endpoint: str = "") -> bytes:
    """Read a small file.

    Raises:
        FileNotFoundError: naming ``path``, when there is no such file (or bucket).
    """
    return handler_for(spark, path, s3_endpoint).read(path)


def download(path: str, destination: str, s3_endpoint: str = "") -> None:
    """Copy the file ``path`` (local or S3, no Spark) to the local file ``destination``."""
    handler_for(None, path, s3_endpoint).download(path, destination)


def delete(spark: Optional["SparkSession"], path: str) -> None:
    """Delete a file or folder (recursively) if it exists."""
    handler_for(spark, path).delete(path)


#: The name :mod:`helpers.lock` uses for :func:`delete` on its one small file.
delete_file = delete


def delete_all_but(spark: Optional["SparkSession"], folder: str, keep: Any) -> None:
    """Delete everything directly inside ``folder`` whose name is not in ``keep``."""
    folder_handler = handler_for(spark, folder)
    for name in folder_handler.list_names(folder):
        if name not in keep:
            folder_handler.delete(output_location(folder, name))


def list_names(spark: Optional["SparkSession"], path: str) -> List[str]:
    """Names directly inside a folder, sorted (empty when it does not exist)."""
    return handler_for(spark, path).list_names(path)


def write_bytes_atomic(spark: Optional["SparkSession"], path: str, data: bytes) -> None:
    """Replace the small file ``path`` in one step: readers see the old file or the new one.

    Local disk: write a temporary file beside it, then ``os.replace``. S3: one PUT (an object
    becomes visible whole, when its upload completes). Other file systems (HDFS): write a
    temporary file, delete the old one, rename (a window of milliseconds without it).
    """
    handler_for(spark, path).replace(path, data)


def create_exclusive(spark: Optional["SparkSession"], path: str, data: bytes) -> bool:
    """Create the small file ``path`` holding ``data`` only if it does not exist; True if created.

    Local disk: the content written to a temporary file, then hard-linked to ``path`` (atomic
    like ``O_CREAT | O_EXCL``: of two racers exactly one creates it, and nobody reads it half
    written). Other file systems (S3): a check then a write, which two racers can both pass
    within milliseconds; a caller that must be alone reads the file back after a pause (S3 is
    strongly read-after-write consistent: the last writer's content is what all see).
    """
    return handler_for(spark, path).create_exclusive(path, data)


def read_bytes_if_exists(spark: Optional["SparkSession"], path: str) -> Optional[bytes]:
    """The small file ``path``, or ``None`` when there is none (a missing bucket still raises)."""
    path_handler = handler_for(spark, path)
    if not path_handler.exists(path):
        return None
    try:
        return path_handler.read(path)
    except FileNotFoundError:  # deleted between the check and the read
        return None


def write_json(spark: Optional["SparkSession"], path: str, payload: Dict[str, Any]) -> None:
    """Write ``payload`` as indented UTF-8 JSON."""
    write_bytes(spark, path, _json_bytes(payload))


def write_json_atomic(spark: Optional["SparkSession"], path: str, payload: Dict[str, Any]) -> None:
    """Replace the JSON file ``path`` in one step (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(spark, path, _json_bytes(payload))


def _json_bytes(payload: Dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")


def read_json(spark: Optional["SparkSession"], path: str, s3_endpoint: str = "") -> Dict[str, Any]:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(read_bytes(spark, path, s3_endpoint).decode("utf-8"))


def read_json_if_exists(spark: Optional["SparkSession"], path: str) -> Optional[Dict[str, Any]]:
    """The JSON file at ``path``, or ``None`` when there is none."""
    data = read_bytes_if_exists(spark, path)
    return None if data is None else json.loads(data.decode("utf-8"))


# -- Spark's outputs -------------------------------------------------------------------------
def write_parquet(frame: "DataFrame", path: str) -> None:
    """Write ``frame`` as Parquet, replacing what was there.

    Columns of float arrays (features, PCA scores: values that hardly repeat) are written
    without a dictionary, which Parquet would otherwise build for each row group before
    falling back to plain values; other columns keep Parquet's defaults.
    """
    writer = frame.write.mode("overwrite")
    for field in frame.schema.fields:
        if field.dataType.simpleString() in ("array<float>", "array<double>"):
            # the standard LIST layout Spark writes: <column>.list.element
            writer = writer.option(f"parquet.enable.dictionary#{field.name}.list.element", "false")
    writer.parquet(to_local_or_uri(path))


def write_csv(frame: "DataFrame", path: str) -> None:
    """Write ``frame`` as CSV part files with a header line each, replacing what was there."""
    frame.write.mode("overwrite").option("header", "true").csv(to_local_or_uri(path))


def read_parquet(spark: "SparkSession", path: str) -> "DataFrame":
    """Read a Parquet folder written by :func:`write_parquet`."""
    return spark.read.parquet(to_local_or_uri(path))


# -- errors ----------------------------------------------------------------------------------
@contextmanager
def clear_errors(path: str, endpoint: str = "") -> Iterator[None]:
    """Turn Hadoop's (Java) and boto3's errors into one clear Python error naming what is wrong.

    Missing bucket or file -> ``FileNotFoundError``; refused credentials -> ``PermissionError``;
    endpoint down -> ``ConnectionError``. Other errors pass through unchanged.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 (py4j and botocore errors: told apart by text)
        translated = translate_storage_error(error, path, endpoint)
        if translated is None:
            raise
        raise translated from None


def translate_storage_error(error: Exception, path: str, endpoint: str = "") -> Optional[Exception]:
    """A clear error for a storage failure on ``path``, or ``None`` when it is not one we know."""
    text = str(error)
    where = f" at endpoint {endpoint}" if endpoint else ""
    bucket = path.split("://", 1)[1].split("/", 1)[0] if "://" in path else ""
    if (
        "UnknownStoreException" in text
        or "NoSuchBucket" in text
        or (bucket and f"Bucket {bucket} does not exist" in text)
    ):
        return FileNotFoundError(f"bucket {bucket!r} does not exist{where} (path {path})")
    if "NoSuchKey" in text or "(404)" in text:
        return FileNotFoundError(f"{path} does not exist{where}")
    if any(
        marker in text
        for marker in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
            "Status Code: 403",
            "(403)",
            "Unable to locate credentials",
        )
    ):
        return PermissionError(
            f"access to {path} refused{where}: check the credentials (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, or the cluster's instance profile) and the bucket policy"
        )
    if any(
        marker in text
        for marker in (
            "Connection refused",
            "ConnectException",
            "Unable to execute HTTP request",
            "connect timed out",
            "UnknownHostException",
            "Could not connect to the endpoint URL",
        )
    ):
        target = f"S3 endpoint {endpoint}" if endpoint else "the storage service"
        return ConnectionError(f"{target} is not reachable (path {path}): is the server up?")
    return None
