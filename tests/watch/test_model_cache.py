"""The agent's model cache (``edge.models``): downloads from the real server, shared by two agents,
and what a failed one leaves behind."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from faceforge.core.atomic import file_sha256
from faceforge.edge.choices import ModelChoice
from faceforge.edge.errors import WatchError
from faceforge.edge.models import ModelStore, ServerClient, needed_files
from tests.watch.conftest import Server, copy_cache


def test_two_agents_sharing_a_cache_download_one_file_at_once(server: Server, tmp_path: Path) -> None:
    """Two agents on one cache directory (the default one) fetching the same backbone: with one
    temporary name for both, one truncated the other's file, and whichever finished second found its
    file renamed away (or installed it with a hole)."""
    clients = [ServerClient(server.url, None) for _ in range(2)]
    version = clients[0].current_version()
    manifest = clients[0].manifest(version)
    backbone = needed_files(manifest, ModelChoice.TFLITE_INT8)[0]
    sha256 = manifest["files"][backbone]["sha256"]
    target = tmp_path / "blobs" / sha256
    target.parent.mkdir()
    together = threading.Barrier(2)
    failures: list[BaseException] = []

    def download(client: ServerClient) -> None:
        together.wait(10)
        try:
            client.download(version, backbone, target, sha256)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    try:
        threads = [threading.Thread(target=download, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for client in clients:
            client.close()
    assert failures == []
    assert file_sha256(target) == sha256
    assert os.listdir(target.parent) == [sha256]  # no temporary file left


def test_a_failed_download_leaves_nothing_and_stale_temporary_files_go(
    server: Server, warm_cache: Path, tmp_path: Path
) -> None:
    """A download that failed left its ``.part`` file for ever (the pruning skips dot-names), as does
    an agent killed while downloading: the failure removes its own, and fetching a version removes
    temporary files nobody has written to for a long while (not one being written now)."""
    cache = copy_cache(warm_cache, tmp_path / "cache")
    blobs = cache / "blobs"
    before = sorted(os.listdir(blobs))
    client = ServerClient(server.url, None)
    try:
        version = client.current_version()
        manifest = client.manifest(version)
        head = needed_files(manifest, ModelChoice.TFLITE_INT8)[1]
        with pytest.raises(httpx.HTTPStatusError):  # the server has no such file
            client.download(version, "missing.tflite", blobs / ("0" * 64), "0" * 64)
        with pytest.raises(WatchError, match="does not match its sha256"):
            client.download(version, head, blobs / ("1" * 64), "1" * 64)
        assert sorted(os.listdir(blobs)) == before

        old = time.time() - 24 * 3600  # a day ago
        left = [
            blobs / ".abc.part",
            blobs / ".abc.0123456789ab.tmp",
            cache / ".current.json.ba9876543210.tmp",
        ]
        for path in left:
            path.write_bytes(b"half a file")
            os.utime(path, (old, old))
        writing = blobs / ".def.fedcba987654.tmp"  # another agent's download in progress
        writing.write_bytes(b"the first chunk")
        ModelStore(cache, ModelChoice.TFLITE_INT8).fetch(client, version)
    finally:
        client.close()
    assert not any(path.exists() for path in left)
    assert writing.exists()


def test_another_model_choice_names_the_files_it_lacks(
    warm_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache of TFLite int8 files used with ``--model onnx`` said it lacked files by their sha256."""
    cache = copy_cache(warm_cache, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="faceforge.edge.models"):
        assert ModelStore(cache, ModelChoice.ONNX).cached() is None
    (said,) = [record.getMessage() for record in caplog.records]
    assert "for --model onnx" in said and ".onnx" in said, said
    assert not re.search(r"[0-9a-f]{64}", said), said
    assert ModelStore(cache, ModelChoice.TFLITE_INT8).cached() is not None  # its own files are whole


def test_a_refusal_is_said_in_the_servers_words(server: Server) -> None:
    """A server without keys refuses a request to a name it is not reached by (DNS rebinding); the
    agent said "the server refused the key" to someone who had given none."""
    client = ServerClient(server.url, None)
    client._http.headers["Host"] = "faceforge.example:8000"  # a name this server is not reached by
    with pytest.raises(WatchError) as refused:
        client.current_version()
    client.close()
    assert "refused the request (403)" in str(refused.value) and "localhost" in str(refused.value)
    assert "key (" not in str(refused.value)
