"""helpers.storage: one seam for local and S3 paths, each handler on the real thing.

The local disk in a temporary folder; S3 on the real SeaweedFS server (``s3_server``, started
once per test session), reached through boto3 without Spark and through Hadoop's S3A client of
the test session's real Spark.
"""

from __future__ import annotations

import glob
import os
import socket
import uuid

import pyarrow.parquet as pq
import pytest

from helpers import storage
from helpers.config import S3_ENDPOINT_ENV, PipelineConfig


@pytest.fixture(scope="module")
def bucket(s3_client):
    """A fresh bucket on the test S3 server."""
    name = f"storage-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_environment(s3_server, monkeypatch):
    """boto3 in this process pointed at the test server (credentials, region, endpoint)."""
    _, environment = s3_server
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        S3_ENDPOINT_ENV,
    ):
        monkeypatch.setenv(name, environment[name])
    return environment


@pytest.fixture(params=["local", "s3", "hadoop-s3a"])
def place(request, tmp_path):
    """``(spark or None, folder)``: an empty folder that the parametrized handler serves."""
    if request.param == "local":
        return None, str(tmp_path / "out")
    request.getfixturevalue("s3_environment")
    folder = f"s3://{request.getfixturevalue('bucket')}/{request.param}/{uuid.uuid4().hex[:8]}"
    spark = request.getfixturevalue("spark") if request.param == "hadoop-s3a" else None
    return spark, folder


HANDLER_OF_PLACE = {
    "local": storage.LocalHandler,
    "s3": storage.S3Handler,
    "hadoop-s3a": storage.HadoopHandler,
}


def test_each_place_gets_its_handler(place, request):
    spark, folder = place
    kind = request.node.callspec.params["place"]
    assert type(storage.handler_for(spark, folder + "/x")) is HANDLER_OF_PLACE[kind]


def test_write_read_exists_list_delete(place):
    spark, folder = place
    path = storage.output_location(folder, "plots/variance.png")
    assert not storage.exists(spark, path) and not storage.exists(spark, folder)
    assert storage.list_names(spark, folder) == []
    storage.write_bytes(spark, path, b"first")
    storage.write_bytes(spark, path, b"second")  # replaces
    storage.write_json(spark, storage.output_location(folder, "manifest.json"), {"k": 3})
    assert storage.read_bytes(spark, path) == b"second"
    assert storage.read_json(spark, storage.output_location(folder, "manifest.json")) == {"k": 3}
    assert storage.exists(spark, path) and storage.exists(spark, folder + "/plots")
    assert storage.list_names(spark, folder) == ["manifest.json", "plots"]
    storage.delete(spark, storage.output_location(folder, "plots"))  # a folder, recursively
    assert not storage.exists(spark, path) and storage.read_bytes_if_exists(spark, path) is None
    assert storage.exists(spark, storage.output_location(folder, "manifest.json"))
    if storage.local_file(folder):  # SeaweedFS still lists an emptied folder as a prefix
        assert storage.list_names(spark, folder) == ["manifest.json"]
    storage.delete(spark, storage.output_location(folder, "never-written"))  # no error


def test_atomic_replace_leaves_only_the_new_file(place):
    spark, folder = place
    path = storage.output_location(folder, "history/latest.json")
    storage.write_json_atomic(spark, path, {"run": 1})
    storage.write_json_atomic(spark, path, {"run": 2})
    assert storage.read_json(spark, path) == {"run": 2}
    assert storage.list_names(spark, storage.output_location(folder, "history")) == ["latest.json"]


def test_create_exclusive_creates_once(place):
    spark, folder = place
    path = storage.output_location(folder, ".lock")
    assert storage.create_exclusive(spark, path, b"mine")
    assert not storage.create_exclusive(spark, path, b"theirs")
    assert storage.read_bytes(spark, path) == b"mine"
    storage.delete_file(spark, path)
    assert storage.read_bytes_if_exists(spark, path) is None
    assert storage.create_exclusive(spark, path, b"theirs")


def test_delete_all_but_keeps_the_named_folders(place):
    spark, folder = place
    runs = storage.output_location(folder, "runs")
    for run in ("a", "b", "c"):
        storage.write_bytes(spark, f"{runs}/{run}/manifest.json", run.encode())
    storage.delete_all_but(spark, runs, keep={"b", None})
    assert [
        storage.read_bytes_if_exists(spark, f"{runs}/{run}/manifest.json")
        for run in ("a", "b", "c")
    ] == [None, b"b", None]
    if storage.local_file(folder):  # SeaweedFS still lists an emptied folder as a prefix
        assert storage.list_names(spark, runs) == ["b"]


def test_missing_file_is_named(place):
    spark, folder = place
    path = storage.output_location(folder, "nothing/here.json")
    with pytest.raises(FileNotFoundError, match="nothing/here.json"):
        storage.read_bytes(spark, path)
    assert storage.read_bytes_if_exists(spark, path) is None
    assert storage.read_json_if_exists(spark, path) is None


@pytest.mark.parametrize("with_spark", [False, True], ids=["boto3", "hadoop-s3a"])
def test_missing_bucket_is_named(with_spark, s3_environment, request):
    spark = request.getfixturevalue("spark") if with_spark else None
    path = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/outputs/manifest.json"
    with pytest.raises(
        FileNotFoundError,
        match=r"bucket 'no-such-bucket-\w+' does not exist"
        r".*outputs/manifest\.json",
    ):
        storage.read_bytes(spark, path)


def test_download_copies_local_and_s3_files(tmp_path, bucket, s3_environment):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    storage.download(str(source), str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    remote = f"s3://{bucket}/weights/m.weights.h5"
    storage.write_bytes(None, remote, source.read_bytes())
    storage.download(remote, str(tmp_path / "fetched.bin"))
    assert (tmp_path / "fetched.bin").read_bytes() == source.read_bytes()
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/weights/none.h5 does not exist"):
        storage.download(f"s3://{bucket}/weights/none.h5", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="malformed S3 URI"):
        storage.download("s3://only-a-bucket.weights.h5", str(tmp_path / "none"))


def test_unreachable_endpoint_is_named(tmp_path, s3_environment, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(ConnectionError, match=f"S3 endpoint {endpoint} is not reachable"):
        storage.read_bytes(None, "s3://bucket/manifest.json", s3_endpoint=endpoint)


def test_scheme_test():
    for path in ("s3://b/k", "s3a://b/k", "s3n://b/k"):
        assert storage.is_s3(path), path
    for path in (
        "file:///tmp/x",
        "file:/tmp/x",
        "/tmp/x",
        "outputs/run",
        "hdfs://nn/x",
        "gs://b/k",
        "my-s3://b/k",
    ):
        assert not storage.is_s3(path), path
    assert storage.local_file("file:///tmp/x") == "/tmp/x" == storage.local_file("file:/tmp/x")
    assert storage.local_file("outputs/run") == os.path.abspath("outputs/run")
    assert storage.local_file("s3://b/k") is None and storage.local_file("hdfs://nn/x") is None
    assert type(storage.handler_for(None, "file:/tmp/x")) is storage.LocalHandler
    assert type(storage.handler_for(None, "s3n://b/k")) is storage.S3Handler
    with pytest.raises(ValueError, match="hdfs://nn/x: only local paths and s3://"):
        storage.handler_for(None, "hdfs://nn/x")


def test_endpoint_resolution_order(monkeypatch):
    monkeypatch.delenv(S3_ENDPOINT_ENV, raising=False)
    assert storage.resolve_s3_endpoint("") == ""
    assert storage.handler_for(None, "s3://b/k").endpoint == ""
    monkeypatch.setenv(S3_ENDPOINT_ENV, "http://127.0.0.1:9000")
    assert storage.resolve_s3_endpoint("") == "http://127.0.0.1:9000"
    assert storage.resolve_s3_endpoint(None) == "http://127.0.0.1:9000"
    assert storage.resolve_s3_endpoint("http://127.0.0.1:9001") == "http://127.0.0.1:9001"
    assert storage.handler_for(None, "s3://b/k").endpoint == "http://127.0.0.1:9000"
    assert storage.handler_for(None, "s3://b/k", "http://127.0.0.1:9001").endpoint == (
        "http://127.0.0.1:9001"
    )
    assert PipelineConfig("in", "out").effective_s3_endpoint == "http://127.0.0.1:9000"
    assert (
        PipelineConfig("in", "out", s3_endpoint="http://127.0.0.1:9001").effective_s3_endpoint
        == "http://127.0.0.1:9001"
    )


def test_local_listing_and_replace_drop_hadoop_checksums(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / ".manifest.json.crc").write_bytes(b"stale")  # what Hadoop's local FS leaves
    assert storage.list_names(None, str(folder)) == ["manifest.json"]
    storage.write_json_atomic(None, str(folder / "manifest.json"), {"k": 1})
    assert sorted(os.listdir(folder)) == ["manifest.json"]


def test_hadoop_replace_renames_on_other_file_systems(spark, tmp_path):
    """Not local and not S3 (HDFS, say): a temporary file renamed over the old one. Hadoop's
    local file system stands in for HDFS here, through the handler itself."""
    hadoop = storage.HadoopHandler(spark)
    path = f"file:{tmp_path}/history/runs.jsonl"
    hadoop.replace(path, b"one\n")
    hadoop.replace(path, b"two\n")
    assert hadoop.read(path) == b"two\n"
    assert hadoop.list_names(f"file:{tmp_path}/history") == ["runs.jsonl"]
    assert not hadoop.create_exclusive(path, b"three\n")


def test_s3_handler_reads_the_credentials_of_now(bucket, s3_environment, monkeypatch):
    """boto3's default session keeps the first credentials it resolves in a process (here other
    ones, as another test or a notebook cell may leave); the handler must use today's."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with monkeypatch.context() as other:
        other.setenv("AWS_ACCESS_KEY_ID", "someone-else")
        other.setenv("AWS_SECRET_ACCESS_KEY", "someone-elses-secret")
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION.get_credentials().access_key == "someone-else"
    path = f"s3://{bucket}/credentials/{uuid.uuid4().hex[:8]}.txt"
    storage.write_bytes(None, path, b"mine")
    assert storage.read_bytes(None, path) == b"mine"


def replace_after_open(monkeypatch, s3_client, bucket: str, key: str, times: int) -> list:
    """Make each of the handler's first ``times`` opens of ``key`` followed by a new version of
    the object, as another process's write landing between S3A's open and its first read.
    Returns the list of versions written (``b"v1"``, ``b"v2"``, ...), filled as they land."""
    opened = storage.HadoopHandler._open
    versions: list = []

    def open_then_replace(self, target):
        stream = opened(self, target)
        if len(versions) < times:
            versions.append(f"v{len(versions) + 1}".encode())
            s3_client.put_object(Bucket=bucket, Key=key, Body=versions[-1])
        return stream

    monkeypatch.setattr(storage.HadoopHandler, "_open", open_then_replace)
    return versions


def test_hadoop_reads_a_file_replaced_while_it_is_read(
    spark, bucket, s3_client, s3_environment, monkeypatch
):
    """S3A opens a file at one version (its ETag) and fails the read when another process has
    replaced it since (the lock's heartbeat does that every 30 s): the handler reads it again and
    returns one whole version."""
    key = f"replaced/{uuid.uuid4().hex[:8]}/run.lock.json"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"v0")
    versions = replace_after_open(monkeypatch, s3_client, bucket, key, times=1)
    assert storage.read_bytes(spark, f"s3://{bucket}/{key}") == b"v1"
    assert versions == [b"v1"]


def test_hadoop_read_gives_up_on_a_file_replaced_at_every_read(
    spark, bucket, s3_client, s3_environment, monkeypatch
):
    key = f"replaced/{uuid.uuid4().hex[:8]}/busy.json"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"v0")
    versions = replace_after_open(monkeypatch, s3_client, bucket, key, times=10)
    with pytest.raises(OSError, match="busy.json was replaced while it was read, 5 times"):
        storage.read_bytes(spark, f"s3://{bucket}/{key}")
    assert len(versions) == storage.REPLACED_WHILE_READ_ATTEMPTS


def test_float_arrays_are_written_without_a_dictionary(spark, tmp_path):
    frame = spark.createDataFrame(
        # few distinct scores: Parquet's default would keep a dictionary for them
        [(f"p{i}", "Apple" if i % 2 else "Kiwi", [i % 5 / 7.0, i % 3 / 3.0]) for i in range(200)],
        "path string, label string, pca array<float>",
    )
    target = str(tmp_path / "scores")
    storage.write_parquet(frame, target)
    encodings = {}
    for part in glob.glob(os.path.join(target, "*.parquet")):
        row_group = pq.ParquetFile(part).metadata.row_group(0)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            encodings.setdefault(column.path_in_schema, set()).update(column.encodings)
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert not encodings["pca.list.element"] & dictionary, encodings
    assert encodings["label"] & dictionary, encodings  # repeated strings keep theirs
    assert sorted(storage.read_parquet(spark, target).toPandas()["path"]) == sorted(
        f"p{i}" for i in range(200)
    )
