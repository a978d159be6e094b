"""The browser client's files: the modules, ONNX Runtime Web from npm, and a clear 503 without it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fastapi.testclient import TestClient

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
        runtime = _runtime_folder(client, module.text)
        wasm_file = installed.client_runtime_path / "ort-wasm-simd-threaded.wasm"
        plain = client.get(f"{runtime}ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and plain.headers["content-type"] == "application/wasm"
        assert plain.content == wasm_file.read_bytes() and "content-encoding" not in plain.headers
        # Its path names its contents, so it is kept for good; gzipped for a browser (the WASM is most
        # of a first load's runtime), under an entity tag of its own: a resumed download of the plain
        # file is never mixed with gzip's bytes.
        wasm = client.get(f"{runtime}ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "gzip, br"})
        assert wasm.status_code == 200 and wasm.headers["content-encoding"] == "gzip"
        assert wasm.content == plain.content and int(wasm.headers["content-length"]) < len(plain.content) / 3
        assert "immutable" in wasm.headers["cache-control"] and "Accept-Encoding" in wasm.headers["vary"]
        assert wasm.headers["etag"] != plain.headers["etag"]
        for answer in (plain, wasm):
            again = client.get(
                f"{runtime}ort-wasm-simd-threaded.wasm",
                headers={"If-None-Match": answer.headers["etag"], "Accept-Encoding": "gzip"},
            )
            assert again.status_code == 304 if answer is wasm else again.status_code == 200
        part = client.get(
            f"{runtime}ort-wasm-simd-threaded.wasm", headers={"Range": "bytes=0-3", "Accept-Encoding": "gzip"}
        )
        assert part.status_code == 206 and part.content == b"\0asm" and "content-encoding" not in part.headers
        # A page from before the tag still loads its runtime, revalidated once a day.
        untagged = client.get("/client/ort/ort-wasm-simd-threaded.wasm")
        assert untagged.status_code == 200 and "max-age=86400" in untagged.headers["cache-control"]
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


def _runtime_folder(client: TestClient, module: str) -> str:
    """The runtime folder ``module`` (faceforge.js) imports from, checked against /live's worker."""
    imports = re.findall(r'from "\./ort/([0-9a-f]{16})/ort\.wasm\.min\.mjs"', module)
    paths = re.findall(r'new URL\("\./ort/([0-9a-f]{16})/", import\.meta\.url\)', module)
    assert len(imports) == 1 and paths == imports, (imports, paths)
    worker = client.get("/live-sw.js").text
    assert set(re.findall(r'"/client/ort/([^"]*)/[^"/]*"', worker)) == set(imports), worker
    return f"/client/ort/{imports[0]}/"


def test_an_upgraded_runtime_is_never_paired_with_the_old_client(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """The runtime's files are kept for good by a browser, so faceforge.js and /live's worker name
    them by their contents: after an upgrade of ONNX Runtime Web, a browser that kept the old files
    fetches the new ones under a new path, and an old path is not answered with the new files."""
    installed = service_settings(tmp_path / "a", database_url, settings)
    runtime = tmp_path / "runtime"
    shutil.copytree(installed.client_runtime_path, runtime)
    served = installed.model_copy(update={"client_runtime_dir": runtime})
    with local_client(create_app(served)) as client:
        before = _runtime_folder(client, client.get("/client/faceforge.js").text)
        assert client.get(f"{before}ort.wasm.min.mjs").status_code == 200
        with (runtime / "ort.wasm.min.mjs").open("ab") as upgraded:
            upgraded.write(b"\n// another release\n")
        after = _runtime_folder(client, client.get("/client/faceforge.js").text)
        assert after != before
        fresh = client.get(f"{after}ort.wasm.min.mjs")
        assert fresh.status_code == 200 and fresh.content.endswith(b"// another release\n")
        stale = client.get(f"{before}ort.wasm.min.mjs")
        assert stale.status_code == 404 and "reload the page" in stale.json()["error"]["message"]
        assert client.get(f"{after}ort.node.min.js").status_code == 404
