"""``deepstack-python`` (PyPI; Home Assistant's deepstack_face pins 0.8), unmodified, against a
faceforge server: ``python deepstack_client.py HOST PORT KEY FACES_DIR``. Prints one JSON object of
what it saw; ``tests/compat/test_clients.py`` judges it (0.8 runs in the clients' virtualenv, the
latest in the project's)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import requests
from deepstack.core import DeepstackException, DeepstackFace

PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Vladimir_Putin")


def main() -> None:
    host, port, key, faces_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    face = DeepstackFace(ip=host, port=port, api_key=key, timeout=120)
    lfw10 = faces_dir / "krasserm_lfw10"
    seen: dict[str, Any] = {"registered": []}
    for folder in PEOPLE:
        for photo in sorted((lfw10 / folder).iterdir())[:5]:  # one image per call, as Home Assistant does
            seen["registered"].append(face.register(folder.replace("_", " "), photo.read_bytes()))
    try:
        face.register("Cat", sorted((faces_dir / "negatives").iterdir())[0].read_bytes())
        seen["no_face_register"] = "accepted"
    except DeepstackException as error:
        seen["no_face_register"] = str(error)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = requests.get(
            f"http://{host}:{port}/api/v1/training", headers={"x-api-key": key}, timeout=30
        ).json()
        if status["state"] == "idle" and status["built"] == status["requested"] and status["current_version"]:
            break
        time.sleep(0.5)
    seen["probes"] = {
        folder.replace("_", " "): [
            face.recognize(p.read_bytes()) for p in sorted((lfw10 / folder).iterdir())[5:10]
        ]
        for folder in PEOPLE
    }
    seen["strangers"] = [
        face.recognize(p.read_bytes()) for p in sorted((faces_dir / "unknown_singles").iterdir())
    ]
    seen["no_face_recognize"] = face.recognize(sorted((faces_dir / "negatives").iterdir())[0].read_bytes())
    seen["detected_pair"] = face.detect(
        (faces_dir / "multi" / "face_recognition_obama_and_biden.jpg").read_bytes()
    )
    seen["detected_none"] = face.detect(sorted((faces_dir / "negatives").iterdir())[0].read_bytes())
    if hasattr(face, "get_registered_faces"):  # 0.9 and later
        seen["listed"] = face.get_registered_faces()
    sys.stdout.write(json.dumps(seen) + "\n")


if __name__ == "__main__":
    main()
