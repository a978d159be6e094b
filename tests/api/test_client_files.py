"""The browser client's files: the modules, ONNX Runtime Web from npm, and a clear 503 without it."""

from __future__ import annotations

from pathlib import Path

from faceforge.core.config import Settings
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, service_settings


def test_client_files_and_a_missing_runtime(tmp_path: Path, database_url: str, settings: Settings) -> None:
    installed = service_settings(tmp_path / "a", database_url, settings)
    assert (installed.client_runtime_path / "ort-wasm-simd-threaded.wasm").is_file(), (
        "onnxruntime-web is installed by `make install` (npm ci in client/)"
    )
    with local_client(create_app(installed)) as client:
        module = client.get("/client/faceforge.js")
        assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
        assert "export async function connect" in module.text
        wasm = client.get("/client/ort/ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "gzip"})
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert wasm.content[:4] == b"\0asm"
        # Not gzipped (the gzipped and the plain answer shared one ETag, and ranges are served), and
        # revalidated by its ETag once a day.
        assert "max-age=86400" in wasm.headers["cache-control"] and "content-encoding" not in wasm.headers
        again = client.get(
            "/client/ort/ort-wasm-simd-threaded.wasm",
            headers={"If-None-Match": wasm.headers["etag"], "Accept-Encoding": "gzip"},
        )
        assert again.status_code == 304
        live = client.get("/live")
        assert live.status_code == 200 and live.headers["cross-origin-embedder-policy"] == "require-corp"
        for path in ("/client/other.js", "/client/ort/ort.node.min.js", "/client/ort/..%2f..%2fpackage.json"):
            assert client.get(path).status_code == 404, path

    missing = installed.model_copy(update={"client_runtime_dir": tmp_path / "nothing"})
    with local_client(create_app(missing)) as client:
        answer = client.get("/client/ort/ort-wasm-simd-threaded.wasm")
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "client_runtime_missing" and "make install" in error["message"]
        assert client.get("/client/faceforge.js").status_code == 200  # the module itself is ours
