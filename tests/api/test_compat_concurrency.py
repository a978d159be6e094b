"""The compatible APIs under concurrency: DeepStack's work (and identify's) never holds the event
loop, every photo they analyse passes the vision gate, and concurrent calls for one new subject make
one person."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from faceforge.core.config import LimitSettings, Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from faceforge.storage import people_store
from tests.api.fixtures import BOTH_DATABASES, local_client, service_settings, wait_for, wait_until_trained
from tests.conftest import LFW10
from tests.db.postgresql_locks import POSTGRESQL_ONLY, blocked_by

RECOGNITION = "/api/v1/recognition"
LEGACY_INFO = "/gorillas/face-recognition/api/v1.0/model/info"


def _image(path: Path, field: str = "image") -> dict[str, tuple[str, bytes, str]]:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_deepstack_work_leaves_the_event_loop_free(client: TestClient) -> None:
    """DeepStack's routes analyse photos, read the database and write files on worker threads, never
    on the event loop (there, one camera integration stalled /healthz for the whole process): every
    photo analysed during registration and match is analysed off the loop, and the process answers
    /healthz meanwhile."""
    pipeline = client.app.state.services.pipeline  # type: ignore[attr-defined]
    original = pipeline.detect
    on_loop: list[bool] = []

    def recording(image: Any, **options: Any) -> Any:  # every photo is detected, however analysed
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread: no loop runs here
            on_loop.append(False)
        return original(image, **options)

    pipeline.detect = recording
    colin = image_files(LFW10 / "Colin_Powell")
    files = [(f"image{i}", (p.name, p.read_bytes(), "image/jpeg")) for i, p in enumerate(colin[:3])]

    def register() -> Any:
        return client.post("/v1/vision/face/register", data={"userid": "Colin"}, files=files)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(register)
        answered = 0
        while not future.done():
            assert client.get("/healthz").status_code == 200
            answered += 1
        assert future.result().json() == {"success": True, "message": "face added"}
    # The same images again: no error, and nothing is said to be added ("face added", a tester's).
    again = register().json()
    assert again == {"success": True, "message": "face already registered: nothing was added"}, again
    match = {f"image{i}": (colin[5 + i].name, colin[5 + i].read_bytes()) for i in (1, 2)}
    assert client.post("/v1/vision/face/match", files=match).status_code == 200
    analysed = len(on_loop)
    # Our own identify route is asynchronous (it checks its answer on the loop): its photo is not.
    wait_until_trained(client)
    assert client.post("/api/v1/identify", files=_image(colin[9], "photo")).json()["faces"]
    assert len(on_loop) > analysed
    assert len(on_loop) >= 5 and not any(on_loop), on_loop
    assert answered >= 1


def test_model_info_never_touches_files_on_the_event_loop(client: TestClient) -> None:
    """Every phone asks model info on start: its cache check stats the current-version file, which
    must happen on a worker thread, like any other file access."""
    store = client.app.state.services.models.store  # type: ignore[attr-defined]
    original = store.pointer_stamp
    on_loop: list[bool] = []

    def recording() -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread: no loop runs here
            on_loop.append(False)
        return original()

    store.pointer_stamp = recording
    for _ in range(3):
        client.get(LEGACY_INFO)
    assert on_loop and not any(on_loop), on_loop


def test_verification_and_match_pass_the_vision_gate(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    limits = LimitSettings(vision_concurrency=1, vision_queue=0)
    colin = image_files(LFW10 / "Colin_Powell")
    with local_client(
        create_app(service_settings(tmp_path, database_url, settings, limits=limits))
    ) as client:
        gate = client.app.state.services.people.gate  # type: ignore[attr-defined]

        def verify() -> Any:
            files = {**_image(colin[0], "source_image"), **_image(colin[1], "target_image")}
            return client.post("/api/v1/verification/verify", files=files)

        def match() -> Any:
            return client.post(
                "/v1/vision/face/match", files={**_image(colin[0], "image1"), **_image(colin[1], "image2")}
            )

        with gate.slot():  # another request is analysing its photos
            busy_verify, busy_match = verify(), match()
        assert busy_verify.status_code == 503 and set(busy_verify.json()) == {"message", "code"}
        assert busy_match.status_code == 503 and busy_match.json()["success"] is False
        assert all(int(answer.headers["retry-after"]) >= 1 for answer in (busy_verify, busy_match))
        assert verify().json()["result"][0]["face_matches"][0]["similarity"] > 0.5
        assert match().json()["similarity"] > 0.5


@BOTH_DATABASES
def test_concurrent_calls_for_a_new_subject_make_one_person(client: TestClient) -> None:
    photos = image_files(LFW10 / "Tony_Blair")[:6]
    warm_up = client.post(
        f"{RECOGNITION}/faces",
        params={"subject": "Colin"},
        files=_image(LFW10 / "Colin_Powell" / "Colin_Powell_0001.jpg", "file"),
    )
    assert warm_up.status_code == 201  # the networks are loaded: the calls below analyse side by side
    barrier = threading.Barrier(len(photos))

    def add(photo: Path) -> int:
        barrier.wait()
        answer = client.post(f"{RECOGNITION}/faces", params={"subject": "Tony"}, files=_image(photo, "file"))
        return int(answer.status_code)

    with ThreadPoolExecutor(len(photos)) as pool:
        statuses = list(pool.map(add, photos))
    assert statuses == [201] * len(photos)
    tony = client.get("/api/v1/people", params={"q": "Tony"}).json()
    assert tony["total"] == 1 and tony["items"][0]["photo_count"] == len(photos), tony
    another = image_files(LFW10 / "Tony_Blair")[len(photos)]  # a stored photo again is a duplicate
    registered = client.post("/v1/vision/face/register", data={"userid": "Tony"}, files=_image(another))
    assert registered.status_code == 200 and client.get("/api/v1/people").json()["total"] == 2


def test_a_face_below_det_prob_threshold_is_never_stored(client: TestClient) -> None:
    photo = image_files(LFW10 / "Colin_Powell")[0]
    refused = client.post(
        f"{RECOGNITION}/faces",
        params={"subject": "Colin", "det_prob_threshold": "1.0"},  # no detection is that sure
        files=_image(photo, "file"),
    )
    assert refused.status_code == 400 and refused.json()["code"] == 28, refused.text
    assert client.get(f"{RECOGNITION}/subjects").json() == {"subjects": []}
    assert client.get("/api/v1/training").json()["requested"] == 0  # stored-then-deleted asked for two
    stored = client.post(f"{RECOGNITION}/faces", params={"subject": "Colin"}, files=_image(photo, "file"))
    assert stored.status_code == 201 and client.get("/api/v1/training").json()["requested"] == 1
    # The photo again, stored already: its face is as unsure as before (it answered the stored id).
    again = client.post(
        f"{RECOGNITION}/faces",
        params={"subject": "Colin", "det_prob_threshold": "1.0"},
        files=_image(photo, "file"),
    )
    assert again.status_code == 400 and again.json()["code"] == 28, again.text
    sure = client.post(
        f"{RECOGNITION}/faces",
        params={"subject": "Colin", "det_prob_threshold": "0.5"},
        files=_image(photo, "file"),
    )
    assert sure.status_code == 201 and sure.json()["image_id"] == stored.json()["image_id"], sure.text


def test_pair_probability_holds_any_scale() -> None:
    """A fitted scale of thousands put exp(-scale * (cosine - threshold)) beyond a float."""
    from faceforge.core.model.population import PairCalibration

    def pair_sigmoid(cosine: float, *, threshold: float, scale: float) -> float:
        return PairCalibration(slope=scale, midpoint=threshold).probability(cosine)

    threshold = 0.4
    for scale in (1.0, 20.0, 5_000.0, 1e6):
        below, at, above = (pair_sigmoid(c, threshold=threshold, scale=scale) for c in (-1.0, threshold, 1.0))
        assert 0.0 <= below <= at <= above <= 1.0 and math.isclose(at, 0.5)
    assert pair_sigmoid(-1.0, threshold=threshold, scale=5_000.0) == 0.0
    assert pair_sigmoid(1.0, threshold=threshold, scale=5_000.0) == 1.0
    # Agrees with the textbook form wherever that form is finite.
    for cosine in (-0.3, 0.1, 0.35, 0.45, 0.9):
        expected = 1.0 / (1.0 + math.exp(-20.0 * (cosine - threshold)))
        assert math.isclose(pair_sigmoid(cosine, threshold=threshold, scale=20.0), expected, rel_tol=1e-12)


@POSTGRESQL_ONLY
def test_deleting_every_subject_is_one_change_whoever_deletes_one_meanwhile(quiet_client: TestClient) -> None:
    """CompreFace's DELETE /subjects (and /faces) deleted person after person, each in its own
    transaction: one deleted meanwhile by another request made the whole call a 404 with the people
    before it already gone. Now one transaction, and a person already gone is simply not counted."""
    names = ["Ada", "Bob", "Cy"]
    ids = [quiet_client.post("/api/v1/people", data={"name": name}).json()["id"] for name in names]
    answer = _bulk_delete_while(
        quiet_client, "subjects", lambda deleting: people_store.delete_person(deleting, person_id=ids[1])
    )
    assert answer.json() == {"deleted": 2}
    assert quiet_client.get(f"{RECOGNITION}/subjects").json()["subjects"] == []


@POSTGRESQL_ONLY
def test_deleting_every_face_takes_turns_with_one_photos_delete(quiet_client: TestClient) -> None:
    """DELETE /faces listed a person's photos, then deleted them one by one, while a single photo's
    delete took no lock of the person's: one committed meanwhile was counted as this call's (or, once
    gone before the read, made the whole call a 404)."""
    photos = image_files(LFW10 / "Colin_Powell")[:3]
    files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    colin = quiet_client.post("/api/v1/people?train=false", data={"name": "Colin"}, files=files).json()
    first = colin["photos"][0]["photo_id"]
    answer = _bulk_delete_while(
        quiet_client,
        "faces",
        lambda deleting: people_store.delete_photo(deleting, person_id=colin["id"], photo_id=first),
    )
    assert answer.json() == {"deleted": 2}


def _bulk_delete_while(client: TestClient, what: str, other: Callable[[Session], object]) -> Any:
    """CompreFace's ``DELETE /<what>`` while another request's ``other`` change is not committed yet:
    the bulk delete must wait for it, then answer (200, asserted) counting only what it deleted."""
    services = client.app.state.services  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=1) as pool, services.sessions.begin() as deleting:
        other(deleting)
        bulk = pool.submit(client.delete, f"{RECOGNITION}/{what}")
        wait_for(lambda: blocked_by(deleting, services.engine), timeout=30, what="the bulk delete to wait")
        deleting.commit()
        answer = bulk.result(timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


@BOTH_DATABASES
def test_an_image_id_beyond_any_photo_id_is_not_found_on_every_database(quiet_client: TestClient) -> None:
    """CompreFace image ids carry 48 bits of photo id; ids are 32-bit columns, and PostgreSQL answered
    a larger one with "integer out of range": a 500 on verify, delete and img."""
    beyond = "00000000-0000-4000-8000-ffffffffffff"
    photo = image_files(LFW10 / "Colin_Powell")[0]
    verified = quiet_client.post(
        f"{RECOGNITION}/faces/{beyond}/verify", files={"file": (photo.name, photo.read_bytes())}
    )
    deleted = quiet_client.delete(f"{RECOGNITION}/faces/{beyond}")
    image = quiet_client.get(f"{RECOGNITION}/faces/{beyond}/img")
    for answer in (verified, deleted, image):
        assert answer.status_code == 404 and "message" in answer.json(), answer.text
