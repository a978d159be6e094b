"""CompreFace- and DeepStack-compatible APIs, proven with their own published clients, unmodified,
against a real `faceforge serve` (krasserm_lfw10: four people enrolled with five photos each,
five probes each, and the strangers of unknown_singles), and with the exact calls Double Take's
detectors make (its api/src/util/detectors/compreface.js and deepstack.js)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from faceforge.core.config import CompatSettings, Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, serve_process, service_settings, wait_for
from tests.conftest import FACES, LFW10

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
CLIENTS = Path(__file__).parent / "clients"
ADMIN_KEY = "compat-admin"
PEOPLE = ("Colin Powell", "Tony Blair", "Hugo Chavez", "Vladimir Putin")
# The clients' usual thresholds, untouched: Double Take's defaults (match at 60 %, unknown below
# 40 %), DeepStack's min_confidence 0.67, and 0.5 as the bound for strangers.
DOUBLE_TAKE_MATCH, DOUBLE_TAKE_UNKNOWN = 60.0, 40.0
STRANGER_SIMILARITY = 0.5


@dataclass
class Server:
    url: str
    port: int


@pytest.fixture
def server(tmp_path: Path, settings: Settings) -> Iterator[Server]:
    with serve_process(tmp_path / "home", settings, FACEFORGE_ADMIN_KEYS=ADMIN_KEY) as (url, port):
        yield Server(url, port)


def _run(program: Path, script: Path, *args: str) -> dict[str, Any]:
    assert program.exists(), f"{program} is missing: `make install` installs the clients"
    done = subprocess.run(
        [str(program), str(script), *args], capture_output=True, text=True, timeout=600, cwd=script.parent
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The last line is the scenario's report (the JavaScript SDK prints debugging lines of its own).
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_compreface_python_sdk(server: Server) -> None:
    seen = _run(CLIENTS_PYTHON, CLIENTS / "compreface_python.py", server.url, ADMIN_KEY, str(FACES))
    assert seen["added_subject"] == {"subject": "Colin Powell"}
    assert all(len(ids) == 5 for ids in seen["image_ids"].values())
    assert seen["no_face_add"] == {"message": "No face is found in the given image", "code": 28}
    for name, answers in seen["probes"].items():
        for answer in answers:
            best = answer["result"][0]["subjects"][0]
            assert best["subject"] == name and best["similarity"] >= STRANGER_SIMILARITY, (name, best)
            assert len(answer["result"][0]["landmarks"]) == 5 and "execution_time" in answer["result"][0]
            embedding = np.asarray(answer["result"][0]["embedding"])  # the calculator plugin's
            assert embedding.shape == (640,) and abs(np.linalg.norm(embedding) - 1) < 1e-4
    # Its embeddings are faceforge's: two photos of one person agree more than two people's.
    first = {
        name: [np.asarray(a["result"][0]["embedding"]) for a in answers]
        for name, answers in seen["probes"].items()
    }
    assert (
        first["Colin Powell"][0] @ first["Colin Powell"][1]
        > first["Colin Powell"][0] @ first["Tony Blair"][0]
    )
    # execution_time times each stage: it said the whole request's time under both plugins.
    times = [
        answer["result"][0]["execution_time"] for answers in seen["probes"].values() for answer in answers
    ]
    assert all(set(t) == {"detector", "calculator"} and min(t.values()) > 0 for t in times), times
    assert any(t["detector"] != t["calculator"] for t in times), times
    for answer in seen["strangers"]:
        assert all(
            s["similarity"] < STRANGER_SIMILARITY for face in answer["result"] for s in face["subjects"]
        )
    assert seen["no_face_recognize"]["code"] == 28
    assert seen["verify_same"]["result"][0]["similarity"] >= STRANGER_SIMILARITY
    assert seen["verify_other"]["result"][0]["similarity"] < STRANGER_SIMILARITY
    assert seen["list_faces"]["total_elements"] == 20 and len(seen["list_faces"]["faces"]) == 20
    assert seen["rename"] == {"updated": True}
    assert seen["subjects_after_rename"]["subjects"] == [
        "Colin Powell",
        "Anthony Blair",
        "Hugo Chavez",
        "Vladimir Putin",
    ]
    assert seen["delete_face"]["subject"] == "Hugo Chavez"
    assert seen["delete_subject"] == {"subject": "Vladimir Putin"}
    assert seen["subjects_after_delete"]["subjects"] == ["Colin Powell", "Anthony Blair", "Hugo Chavez"]


def test_compreface_javascript_sdk(server: Server) -> None:
    """@exadel/compreface-js-sdk 1.0.0 from npm (`make install` runs `npm ci` in tests/compat/js)."""
    script = Path(__file__).parent / "js" / "compreface_js.mjs"
    assert (script.parent / "node_modules" / "@exadel" / "compreface-js-sdk").is_dir(), (
        "`make install` installs it"
    )
    node = Path(shutil.which("node") or "/usr/bin/node")
    seen = _run(node, script, server.url, ADMIN_KEY, str(FACES))
    assert len(seen["added"]) == 20 and all(a["image_id"] for a in seen["added"])
    for name, answers in seen["probes"].items():
        for answer in answers:
            best = answer["result"][0]["subjects"][0]
            assert best["subject"] == name and best["similarity"] >= STRANGER_SIMILARITY, (name, best)
    for answer in seen["strangers"]:
        assert all(
            s["similarity"] < STRANGER_SIMILARITY for face in answer["result"] for s in face["subjects"]
        )
    assert seen["no_face"] == {"message": "No face is found in the given image", "code": 28}
    # A photo given as base64 (the SDK's JSON body): the same answer as from its file.
    without_times = [
        {k: v for k, v in face.items() if k != "execution_time"} for face in seen["base64_probe"]["result"]
    ]
    assert without_times == [
        {k: v for k, v in face.items() if k != "execution_time"}
        for face in seen["probes"]["Colin Powell"][0]["result"]
    ]
    assert seen["base64_added"]["subject"] == "Colin Powell" and seen["base64_added"]["image_id"]
    same = seen["verify_same"]["result"][0]["face_matches"][0]["similarity"]
    other = seen["verify_other"]["result"][0]["face_matches"][0]["similarity"]
    assert other < 0.5 < same, (same, other)
    assert seen["rename"] == {"updated": True} and seen["deleted"] == {"subject": "Vladimir Putin"}
    assert seen["subjects"] == {"subjects": ["Colin Powell", "Anthony Blair", "Hugo Chavez"]}
    assert seen["faces"]["total_elements"] == 16  # Vladimir Putin's five went with him; one from base64


@pytest.mark.parametrize("release", ["0.8", "latest"])
def test_deepstack_python(server: Server, release: str) -> None:
    """0.8 is what Home Assistant's deepstack_face pins (in the clients' virtualenv); the latest is
    in the project's."""
    python = CLIENTS_PYTHON if release == "0.8" else Path(sys.executable)
    seen = _run(python, CLIENTS / "deepstack_client.py", "127.0.0.1", str(server.port), ADMIN_KEY, str(FACES))
    assert seen["registered"] == ["face added"] * 20
    assert "status code: 400" in seen["no_face_register"]  # the client reports the refusal, as DeepStack's
    for name, answers in seen["probes"].items():
        for predictions in answers:
            assert predictions[0]["userid"] == name and predictions[0]["confidence"] >= 0.67, (
                name,
                predictions,
            )
    assert all(p["userid"] == "unknown" for predictions in seen["strangers"] for p in predictions)
    assert seen["no_face_recognize"] == []
    # DeepstackFace.detect(): Obama's and Biden's faces and one behind them, each with its detection
    # score (the route was missing).
    assert len(seen["detected_pair"]) == 3 and seen["detected_none"] == [], seen["detected_pair"]
    assert all(p["confidence"] >= 0.45 and p["x_min"] < p["x_max"] for p in seen["detected_pair"])
    if release == "latest":
        assert seen["listed"] == list(PEOPLE)


def _double_take_compreface(client: httpx.Client, path: Path, **params: str) -> list[dict[str, Any]]:
    """compreface.js recognize() + normalize(), line for line."""
    response = client.post(
        "/api/v1/recognition/recognize",
        params={"det_prob_threshold": "0.8", **params},
        files={"file": (path.name, path.read_bytes())},
        headers={"x-api-key": ADMIN_KEY},
    )
    data = response.json()
    if data.get("code") == 28:
        return []
    normalized = []
    for face in data["result"]:
        best = face["subjects"][0] if face["subjects"] else None
        confidence = round(best["similarity"] * 100, 2) if best else 0.0
        name = best["subject"].lower() if best and confidence >= DOUBLE_TAKE_UNKNOWN else "unknown"
        normalized.append({"name": name, "confidence": confidence, "match": confidence >= DOUBLE_TAKE_MATCH})
    return normalized


def _double_take_deepstack(client: httpx.Client, path: Path) -> list[dict[str, Any]]:
    """deepstack.js recognize() + normalize()."""
    data = client.post(
        "/v1/vision/face/recognize",
        data={"api_key": ADMIN_KEY},
        files={"image": (path.name, path.read_bytes())},
    ).json()
    if data["success"] is False:
        return []
    return [
        {
            "name": p["userid"].lower() if p["confidence"] * 100 >= DOUBLE_TAKE_UNKNOWN else "unknown",
            "match": p["userid"] != "unknown" and p["confidence"] * 100 >= DOUBLE_TAKE_MATCH,
        }
        for p in data["predictions"]
    ]


def test_double_takes_calls(server: Server) -> None:
    lfw10 = {name: image_files(LFW10 / name.replace(" ", "_")) for name in PEOPLE[:2]}
    strangers = image_files(FACES / "unknown_singles")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        # Before any version: each API's own error shape, not faceforge's.
        probe = lfw10["Colin Powell"][6]
        not_ready = client.post(
            "/api/v1/recognition/recognize",
            files={"file": ("a.jpg", probe.read_bytes())},
            headers={"x-api-key": ADMIN_KEY},
        )
        assert not_ready.status_code == 409 and set(not_ready.json()) == {"message", "code"}
        ds_not_ready = client.post(
            "/v1/vision/face/recognize",
            data={"api_key": ADMIN_KEY},
            files={"image": ("a.jpg", probe.read_bytes())},
        )
        assert ds_not_ready.status_code == 409 and ds_not_ready.json()["success"] is False
        wrong_key = client.post("/v1/vision/face/list", data={"api_key": "nope"})
        assert wrong_key.status_code == 401 and wrong_key.json()["success"] is False

        # train(): CompreFace for Colin Powell, DeepStack for Tony Blair, one image per call.
        for photo in lfw10["Colin Powell"][:5]:
            trained = client.post(
                "/api/v1/recognition/faces",
                params={"subject": "Colin Powell"},
                files={"file": (photo.name, photo.read_bytes())},
                headers={"x-api-key": ADMIN_KEY},
            )
            assert trained.status_code == 201, trained.text
        for photo in lfw10["Tony Blair"][:5]:
            trained = client.post(
                "/v1/vision/face/register",
                data={"userid": "Tony Blair", "api_key": ADMIN_KEY},
                files={"image": (photo.name, photo.read_bytes())},
            )
            assert trained.json() == {"success": True, "message": "face added"}

        def trained_all() -> bool:
            status = client.get("/api/v1/training", headers={"x-api-key": ADMIN_KEY}).json()
            return bool(
                status["state"] == "idle"
                and status["built"] == status["requested"]
                and status["current_version"]
            )

        wait_for(trained_all, timeout=300, what="a version with both people")
        for name, photos in lfw10.items():
            for photo in photos[5:]:
                for normalized in (
                    _double_take_compreface(client, photo),
                    _double_take_deepstack(client, photo),
                ):
                    assert normalized[0]["name"] == name.lower() and normalized[0]["match"], (
                        photo.name,
                        normalized,
                    )
            # An unconfigured Double Take sends the literal "undefined" as its face plugins.
            assert (
                _double_take_compreface(client, photos[6], face_plugins="undefined")[0]["name"]
                == name.lower()
            )
        for photo in strangers:
            for normalized in (_double_take_compreface(client, photo), _double_take_deepstack(client, photo)):
                assert all(face["name"] == "unknown" and not face["match"] for face in normalized), photo.name
        assert _double_take_compreface(client, image_files(FACES / "negatives")[0]) == []

        # remove(): both delete the person; the next version lacks them.
        removed = client.delete(
            "/api/v1/recognition/faces", params={"subject": "Colin Powell"}, headers={"x-api-key": ADMIN_KEY}
        )
        assert removed.json() == {"deleted": 5}
        gone = client.post("/v1/vision/face/delete", data={"userid": "Tony Blair", "api_key": ADMIN_KEY})
        assert gone.json() == {"success": True}
        listed = client.post("/v1/vision/face/list", data={"api_key": ADMIN_KEY}).json()
        assert listed == {"success": True, "faces": ["Colin Powell"]}  # photos deleted, the person stays


def test_each_api_can_be_switched_off(tmp_path: Path, settings: Settings) -> None:
    off = service_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'off.db'}",
        settings,
        compat=CompatSettings(compreface=False, deepstack=False),
    )
    with local_client(create_app(off)) as client:
        assert client.get("/api/v1/recognition/subjects").status_code == 404
        assert client.post("/v1/vision/face/list").status_code == 404
