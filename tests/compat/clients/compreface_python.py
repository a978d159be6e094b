"""The CompreFace Python SDK (PyPI ``compreface-sdk`` 0.6.0, unmodified) against a faceforge server.

Run with the clients' virtualenv (the SDK pins requests-toolbelt 0.9.1, which needs urllib3 < 2):
``python compreface_python.py URL KEY FACES_DIR``. Prints one JSON object of what it saw; the
test (``tests/compat/test_clients.py``) judges it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from compreface import CompreFace

PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Vladimir_Putin")


def main() -> None:
    url, key, faces_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    parts = urlsplit(url)
    options = {
        "limit": 0,
        "det_prob_threshold": 0.8,
        "prediction_count": 2,
        "face_plugins": "landmarks,calculator",
        "status": True,
    }
    compre_face = CompreFace(f"{parts.scheme}://{parts.hostname}", str(parts.port), options)
    recognition = compre_face.init_face_recognition(key)
    faces, subjects = recognition.get_face_collection(), recognition.get_subjects()
    seen: dict[str, Any] = {"added_subject": subjects.add("Colin Powell")}
    image_ids: dict[str, list[str]] = {}
    lfw10 = faces_dir / "krasserm_lfw10"
    for folder in PEOPLE:
        name = folder.replace("_", " ")
        for photo in sorted((lfw10 / folder).iterdir())[:5]:
            answer = faces.add(image_path=str(photo), subject=name)
            image_ids.setdefault(name, []).append(answer["image_id"])
    seen["image_ids"] = image_ids
    seen["no_face_add"] = faces.add(
        image_path=str(sorted((faces_dir / "negatives").iterdir())[0]), subject="Cat"
    )
    deadline = time.monotonic() + 300  # training is faceforge's own business: watch it over its API
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/api/v1/training", headers={"x-api-key": key}, timeout=30).json()
        if status["state"] == "idle" and status["built"] == status["requested"] and status["current_version"]:
            break
        time.sleep(0.5)
    seen["probes"] = {
        folder.replace("_", " "): [
            recognition.recognize(image_path=str(p)) for p in sorted((lfw10 / folder).iterdir())[5:10]
        ]
        for folder in PEOPLE
    }
    seen["strangers"] = [
        recognition.recognize(image_path=str(p)) for p in sorted((faces_dir / "unknown_singles").iterdir())
    ]
    seen["no_face_recognize"] = recognition.recognize(
        image_path=str(sorted((faces_dir / "negatives").iterdir())[0])
    )
    colin_probe = str(sorted((lfw10 / "Colin_Powell").iterdir())[7])
    seen["verify_same"] = faces.verify(image_path=colin_probe, image_id=image_ids["Colin Powell"][0])
    seen["verify_other"] = faces.verify(image_path=colin_probe, image_id=image_ids["Tony Blair"][0])
    seen["list_faces"] = faces.list()
    seen["rename"] = subjects.update("Tony Blair", "Anthony Blair")
    seen["subjects_after_rename"] = subjects.list()
    seen["delete_face"] = faces.delete(image_ids["Hugo Chavez"][0])
    seen["delete_subject"] = subjects.delete("Vladimir Putin")
    seen["subjects_after_delete"] = subjects.list()
    sys.stdout.write(json.dumps(seen) + "\n")


if __name__ == "__main__":
    main()
