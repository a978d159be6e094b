"""The browser client (`/client/faceforge.js`) and the camera page (`/live`) in real Chromium against a
real `faceforge serve` with people from lfw_dev: the same decisions as `POST /api/v1/identify`, the
right name from a fake camera, head-only updates, recognition with the server stopped, clear errors.
The tests run in file order: the last one stops the server."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.vision.align import align_face, chip_reduction, chip_transform
from faceforge.serving.vision.crop import crop_face, crop_square
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.refine import refine_faces, refiner_patch
from tests.api.fixtures import Served, faceforge_server, free_port
from tests.conftest import FACES
from tests.conftest import answer as answer_whole
from tests.web.browser import (
    ADMIN_KEY,
    CHROMIUM,
    CHROMIUM_ARGS,
    READ_KEY,
    TIMEOUT_MS,
    Server,
    assert_accessible,
    shot,
)
from tests.web.fake_camera import write_y4m

LFW_DEV = FACES / "lfw_dev"
PEOPLE = 10  # enrolled from their first 5 photos; each one's last photo is a probe
STRANGERS = 10
ENROLLED = 5
FOLDERS = sorted(p for p in (LFW_DEV / "known").iterdir() if p.is_dir())
NEWCOMER = FOLDERS[PEOPLE]  # registered during the update test
ON_CAMERA = FOLDERS[0]

CONNECT = """async ([url, key]) => {
  window.ff = await import(url + "/client/faceforge.js");
  window.client = await ff.connect(url, key ? { apiKey: key } : {});
  return { version: client.version, ...client.lastDownload };
}"""
RECOGNIZE = """async (photos) => {
  const answers = [];
  for (const b64 of photos) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
    const faces = await client.recognize(bitmap);
    answers.push(faces.map((f) => ({ name: f.name, personId: f.personId, probability: f.probability })));
  }
  return answers;
}"""
# Each step of the contract vectors (contract_vectors.json): the pixel steps from the vector's own
# inputs (exact checksums), the whole run from the photo (networks within the stated tolerance).
VECTORS = """async ([vectors, photos]) => {
  const hex = async (p) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", p.data)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  const C = ff.contract, box = ([x, y, width, height]) => ({ x, y, width, height }), out = [];
  for (const v of vectors.vectors) {
    const bytes = Uint8Array.from(atob(photos[v.photo.sha256]), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
    const picture = ff.toPicture(bitmap);
    const steps = await client.analyse(picture);
    const d = steps.detections[0], r = steps.refined[0];
    out.push({
      size: [picture.width, picture.height],
      patch: await hex(C.refinerPatch(picture, box(v.detector.box)).patch),
      face: await hex(C.cropFace(picture, box(v.refiner.box))),
      chip: await hex(C.alignFace(picture, v.refiner.points, box(v.refiner.box))),
      detector: [d.box.x, d.box.y, d.box.width, d.box.height, ...d.points.flat()],
      refined: [r.box.x, r.box.y, r.box.width, r.box.height, ...r.points.flat()],
      embedding: Array.from(steps.embeddings[0]), probabilities: Array.from(steps.probabilities[0]),
    });
  }
  return out;
}"""
# The contract's pixel steps alone, from a photo and the server's boxes and points: sha256 of each.
PIXELS = """async ([photo, detector, refined, points]) => {
  const hex = async (p) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", p.data)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  const C = ff.contract, box = ([x, y, width, height]) => ({ x, y, width, height });
  const bytes = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
  const picture = ff.toPicture(bitmap);
  const patch = C.refinerPatch(picture, box(detector)).patch, face = C.cropFace(picture, box(refined));
  return [await hex(patch), await hex(face), await hex(C.alignFace(picture, points, box(refined)))];
}"""
FETCH_LABELS = """async ([url, key]) => {
  const current = await (await fetch(url + "/api/v1/models/current", {headers: {"X-API-Key": key}})).json();
  const file = url + `/api/v1/models/${current.version}/files/labels.txt`;
  const answer = await fetch(file, {headers: {"X-API-Key": key}});
  return [answer.status, await answer.text()];
}"""
# Runs `work` and answers the FaceforgeError's code and status it throws (null if none).
ERROR_OF = """async (work) => {
  try { await (0, eval)(work)(); return null; }
  catch (error) { return { code: error.code, status: error.status }; }
}"""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _probe(folder: Path) -> Path:
    return image_files(folder)[-1]


class _AppPage(BaseHTTPRequestHandler):
    """A team's own web app on another origin: one empty page."""

    def do_GET(self) -> None:
        answer_whole(self, 200, b"<!doctype html><title>Another app</title>", "text/html")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BadGateway(BaseHTTPRequestHandler):
    """A reverse proxy in front of a stopped faceforge: its own 502 page for every request."""

    def do_GET(self) -> None:
        assert isinstance(self.server, _Proxy)
        self.server.answered += 1
        answer_whole(self, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Proxy(ThreadingHTTPServer):
    answered = 0


@pytest.fixture(scope="module")
def app_origin() -> Iterator[str]:
    """The origin of another web app, served on its own port; the module's server names it in
    FACEFORGE_CORS_ORIGINS."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _AppPage) as http:
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{http.server_address[1]}"
        http.shutdown()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, settings: Settings, app_origin: str) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("browser-client") / "home"
    env = {
        "FACEFORGE_ADMIN_KEYS": ADMIN_KEY,
        "FACEFORGE_READ_KEYS": READ_KEY,
        "FACEFORGE_CORS_ORIGINS": app_origin,
    }
    with faceforge_server(home, settings, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Server:
    """The module's server (the `page` fixture's), with PEOPLE people enrolled and a version ready."""
    screenshots = tmp_path_factory.mktemp("browser-client-screenshots")
    running = Server(served.url, screenshots)
    for folder in FOLDERS[:PEOPLE]:
        running.register(folder.name.replace("_", " "), image_files(folder)[:ENROLLED], train=False)
    running.api("POST", "/api/v1/training")
    running.wait_trained()
    return running


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """The module's chromium, with a fake camera showing an enrolled person's probe photo."""
    camera = write_y4m(tmp_path_factory.mktemp("camera") / "camera.y4m", _probe(ON_CAMERA))
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()


def _connect(page: Page, server: Server, key: str | None = READ_KEY) -> dict[str, Any]:
    page.goto(server.url + "/healthz")  # any page of the server's origin
    loaded: dict[str, Any] = page.evaluate(CONNECT, [server.url, key])
    return loaded


def _identify(server: Server, photo: Path) -> int | None:
    """The server's decision for the largest face: a person's id, or None (a stranger or no face)."""
    answer = server.api("POST", "/api/v1/identify", files={"photo": (photo.name, photo.read_bytes())}).json()
    faces = answer["faces"]
    return faces[0]["match"]["person_id"] if faces and faces[0]["match"] else None


def test_browser_decides_as_identify_does(page: Page, server: Server) -> None:
    loaded = _connect(page, server)
    assert loaded["version"] == 1
    assert sorted(loaded["downloaded"]) == [
        "backbone_int8.onnx", "detector_pnet.onnx", "detector_rnet.onnx", "head.onnx", "refiner.onnx",
    ]  # fmt: skip
    probes = [_probe(folder) for folder in FOLDERS[:PEOPLE]]
    strangers = image_files(LFW_DEV / "unknown")[:STRANGERS]
    photos = probes + strangers
    answers = page.evaluate(RECOGNIZE, [_b64(p) for p in photos])
    browser = [faces[0]["personId"] if faces else None for faces in answers]
    server_side = [_identify(server, p) for p in photos]
    agreement = sum(b == s for b, s in zip(browser, server_side, strict=True)) / len(photos)
    assert agreement >= 0.99, list(zip([p.name for p in photos], browser, server_side, strict=True))
    named = sum(b is not None for b in browser[:PEOPLE])
    rejected = sum(b is None for b in browser[PEOPLE:])
    assert named >= PEOPLE - 2 and rejected >= STRANGERS - 2, browser
    first = answers[0][0]
    assert first["name"] == FOLDERS[0].name.replace("_", " ") and 0.5 < first["probability"] <= 1.0


def test_browser_client_passes_the_contract_vectors(page: Page, server: Server) -> None:
    _connect(page, server)
    vectors = server.api("GET", "/api/v1/models/1/files/contract_vectors.json").json()
    assert len(vectors["vectors"]) == 3
    enrolled = {hashlib.sha256(p.read_bytes()).hexdigest(): p for f in FOLDERS[:3] for p in image_files(f)}
    photos = {v["photo"]["sha256"]: _b64(enrolled[v["photo"]["sha256"]]) for v in vectors["vectors"]}
    tolerance = vectors["tolerance"]
    networks = tolerance["backbone_int8.onnx"]  # the browser's backbone
    for vector, answer in zip(vectors["vectors"], page.evaluate(VECTORS, [vectors, photos]), strict=True):
        assert answer["size"] == [vector["photo"]["width"], vector["photo"]["height"]]
        assert answer["patch"] == vector["refiner"]["patch_sha256"]
        assert answer["face"] == vector["face"]["sha256"]
        assert answer["chip"] == vector["chip"]["sha256"]
        detector = [*vector["detector"]["box"], *np.ravel(vector["detector"]["points"])]
        refined = [*vector["refiner"]["box"], *np.ravel(vector["refiner"]["points"])]
        assert np.abs(np.subtract(answer["detector"], detector)).max() <= tolerance["pixels"]
        assert np.abs(np.subtract(answer["refined"], refined)).max() <= tolerance["pixels"]
        # A unit vector, as the server's (the int8 graph's own division misses by up to half a percent).
        assert abs(float(np.linalg.norm(answer["embedding"])) - 1.0) <= 1e-5
        assert float(np.dot(answer["embedding"], vector["embedding"])) >= networks["embedding_cosine"]
        probabilities = np.subtract(answer["probabilities"], vector["probabilities"])
        assert np.abs(probabilities).max() <= networks["probability"]


def test_browser_pixels_are_the_servers_on_phone_photos(
    page: Page, server: Server, pipeline: FacePipeline
) -> None:
    """The contract vectors' first photos are small, centred LFW faces: the chip's whole-factor
    reduction (every phone photo takes it) and the black beyond a photo's edge were never compared
    with the server's in the browser. Phone-sized photos and faces that fill their photo, here."""
    _connect(page, server)
    photos = image_files(FACES / "deepface_tests" / "deepface_id01")[:2] + image_files(
        FACES / "azure_face_samples" / "Family1-Dad"
    )
    reductions, beyond = [], []
    for path in photos:
        image = pipeline.decode(path.read_bytes())
        detected = pipeline.detect(image)[0].box
        picture = PIL.Image.fromarray(image)
        (refined,) = refine_faces(picture, [detected], pipeline.detector.describe_patches)
        expected = [
            hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
            for pixels in (
                refiner_patch(picture, detected)[0],
                crop_face(picture, refined.box),
                align_face(picture, refined.landmarks, refined.box),
            )
        ]
        boxes = [[b.x, b.y, b.width, b.height] for b in (detected, refined.box)]
        points = [list(point) for point in refined.landmarks.points]
        assert page.evaluate(PIXELS, [_b64(path), *boxes, points]) == expected, path.name
        transform = chip_transform(picture, refined.landmarks, refined.box)
        reductions.append(chip_reduction(picture.size, transform))
        left, top, right, bottom = crop_square(refined.box)
        beyond.append(left < 0 or top < 0 or right > picture.width or bottom > picture.height)
    assert max(reductions) >= 2 and any(beyond), (reductions, beyond)  # both paths were taken


def test_bad_input_gives_clear_errors(page: Page, server: Server) -> None:
    _connect(page, server)
    nothing = ["() => client.recognize()", "() => client.recognize(new Image())", "() => client.recognize(1)"]
    for work in nothing:
        assert page.evaluate(ERROR_OF, work) == {"code": "invalid_image", "status": None}, work
    server.expected_errors.add(("/api/v1/models/current", 401))
    wrong_key = f"() => ff.connect({server.url!r}, {{ apiKey: 'not-a-key' }})"
    assert page.evaluate(ERROR_OF, wrong_key) == {"code": "unauthorized", "status": 401}
    assert page.evaluate(ERROR_OF, "() => ff.connect('ftp://x')")["code"] == "invalid_url"


def test_live_page_names_the_person_on_camera(page: Page, server: Server) -> None:
    page.context.add_init_script(f"sessionStorage.setItem('faceforge-api-key', {READ_KEY!r})")
    # A reverse proxy's 503 (a page, not JSON) while faceforge restarts behind it: the page gave up
    # for good ("Cannot start…"); it tries again, and its banner goes once it has started.
    calls: list[float] = []  # when each look at the current version was made

    def restarting(route: Route) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            route.fulfill(status=503, content_type="text/html", body="<h1>503 Service Unavailable</h1>")
        else:
            route.continue_()

    server.expected_errors.add(("/api/v1/models/current", 503))
    page.route("**/api/v1/models/current", restarting)
    page.goto(server.url + "/live")
    expect(page.locator("#message")).to_contain_text("Trying again")
    # Start pressed twice (while it waits to try again) is one start: it ran two recognition loops.
    page.evaluate(
        """(key) => {
          document.getElementById("key").value = key;
          const form = document.getElementById("login");
          form.requestSubmit();
          form.requestSubmit();
        }""",
        READ_KEY,
    )
    expected = ON_CAMERA.name.replace("_", " ")
    expect(page.locator("#faces li.known")).to_contain_text(expected, timeout=TIMEOUT_MS)
    expect(page.locator("#message")).to_be_hidden()
    # The one that failed, then one start; a second start looked at once too (the page's own update
    # looks again 30 s after it started, which a slow start may reach: not counted).
    assert len(calls) >= 2 and [t for t in calls[1:] if t - calls[1] < 20] == [calls[1]], calls
    page.unroute("**/api/v1/models/current")
    expect(page.locator("#version")).to_have_text("1")
    expect(page.locator("#network")).to_have_text("Online")
    assert page.evaluate("crossOriginIsolated")  # so ONNX Runtime Web runs on threads
    shot(page, server, "live-1440")
    page.set_viewport_size({"width": 375, "height": 740})
    shot(page, server, "live-375")
    assert_accessible(page, "the live page")

    # Someone else's face where a track's face was is a new track after two frames unlike it
    # (edge/tracking.py's rule), while another photo of the same person keeps it: real faces, each
    # put in the first one's place for three frames.
    first, second = image_files(FOLDERS[1])[ENROLLED:][:2]
    stranger = sorted((LFW_DEV / "unknown").glob("*.jpg"))[STRANGERS]
    page.evaluate(
        """() => {
          window.facesOf = async (photos) => {  // each photo's first face, as the page recognises it
            const faces = [];
            for (const b64 of photos) {
              const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
              const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
              faces.push((await faceforgeLive.client.recognize(bitmap))[0]);
            }
            return faces;
          };
        }"""
    )
    shown = [first, second, stranger, _probe(FOLDERS[2])]
    tracks = page.evaluate(
        """async (photos) => {
          const faces = await facesOf(photos);
          const tracker = new faceforgeLive.Tracker(), place = faces[0].box, ids = [];
          let frame = 0;
          for (const face of faces) {
            for (let k = 0; k < 3; k++) ids.push(tracker.update(++frame, [{ ...face, box: place }])[0].id);
          }
          return ids;
        }""",
        [_b64(photo) for photo in shown],
    )
    assert tracks == [1] * 7 + [2] * 3 + [3] * 2

    # Two enrolled people can agree above the cosine (one pair in 50): a face that agrees with the
    # track but that the head names as another enrolled person than its samples do is a doubt too.
    # The second photo's embedding with a third person's probabilities, as the page samples them.
    third = _probe(FOLDERS[2])
    tracks = page.evaluate(
        """async (photos) => {
          const faces = await facesOf(photos);
          const version = faceforgeLive.client.version, place = faces[0].box;
          const alike = { ...faces[1], probabilities: faces[2].probabilities };
          const tracker = new faceforgeLive.Tracker(), ids = [];
          let frame = 0;
          for (const face of [faces[0], faces[0], faces[0], alike, alike, alike]) {
            const [track] = tracker.update(++frame, [{ ...face, box: place }], version);
            if (track.version !== version) { track.samples = []; track.version = version; }
            if (!track.doubts && track.samples.length < 3) track.samples.push(face.probabilities);
            ids.push(track.id);
          }
          return ids;
        }""",
        [_b64(photo) for photo in (first, second, third)],
    )
    assert tracks == [1] * 4 + [2] * 2

    # The probabilities saturate: a track named at 0.99999, then two faces that agree with it but
    # that the head names as another person at 0.9947 (more surely than not, less than the track):
    # someone else (a new-user tester's Colin Powell, then Tony Blair in his place, stayed "Colin").
    # Two faces named another at 0.45 against the track's person's 0.3 are a look-alike, not a doubt.
    tracks = page.evaluate(
        """() => {
          const version = faceforgeLive.client.version, box = { x: 10, y: 10, width: 100, height: 100 };
          const embedding = new Float32Array(128).fill(1);
          const face = (p) => ({ box, embedding, probabilities: Float32Array.from(p) });
          const sure = face([0.99999, 0.000005, 0.000005]), alike = face([0.3, 0.45, 0.25]);
          const newcomer = face([0.0034, 0.9947, 0.0019]);
          const tracker = new faceforgeLive.Tracker(), ids = [];
          let frame = 0;
          for (const f of [sure, sure, sure, alike, alike, newcomer, newcomer]) {
            const [track] = tracker.update(++frame, [f], version);
            if (track.version !== version) { track.samples = []; track.version = version; }
            if (!track.doubts && track.samples.length < 3) track.samples.push(f.probabilities);
            ids.push(track.id);
          }
          return ids;
        }"""
    )
    assert tracks == [1] * 6 + [2]
    # While its latest face is in doubt (maybe someone else), a track shows no name: a tester saw the
    # previous person's name on the newcomer's face for a frame at every swap.
    labels = page.evaluate(
        """() => [0, 1].map((doubts) => faceforgeLive.label({ decision: { name: "Ada" }, doubts }))"""
    )
    assert labels == ["Ada", "…"]

    # A ?min_face= the page cannot use is said on it: "abc" was ignored, -5 named the client's own
    # option, and one over the frame found nobody without a word.
    for asked, said in (
        ("abc", '?min_face= is a number of pixels, 12 or more (such as ?min_face=40), not "abc"'),
        ("-5", "?min_face= is a number of pixels, 12 or more"),
        ("99999", "?min_face=99999 is larger than the camera's"),
    ):
        page.goto(f"{server.url}/live?min_face={asked}")
        expect(page.locator("#message")).to_contain_text(said)

    # Behind a proxy that answers 502 while faceforge is down, the page starts from the version this
    # browser holds, as without a network (it said "Cannot start" and stayed so).
    server.expected_errors.add(("/api/v1/models/current", 502))
    page.route("**/api/v1/models/current", lambda route: route.fulfill(status=502, body="Bad Gateway"))
    page.goto(server.url + "/live")
    expect(page.locator("#network")).to_contain_text("Offline", timeout=TIMEOUT_MS)
    expect(page.locator("#faces li.known")).to_contain_text(expected, timeout=TIMEOUT_MS)
    expect(page.locator("#message")).to_be_hidden()


def test_update_downloads_the_head_only(page: Page, server: Server) -> None:
    _connect(page, server)
    newcomer = NEWCOMER.name.replace("_", " ")
    server.register(newcomer, image_files(NEWCOMER)[:ENROLLED])
    server.wait_trained()
    update = page.evaluate("client.update()")
    assert update["version"] == 2 and update["changed"]
    assert update["downloaded"] == ["head.onnx"]
    shared = ["backbone_int8.onnx", "detector_pnet.onnx", "detector_rnet.onnx", "refiner.onnx"]
    assert sorted(update["reused"]) == shared
    (faces,) = page.evaluate(RECOGNIZE, [_b64(_probe(NEWCOMER))])
    assert faces[0]["name"] == newcomer
    assert page.evaluate("client.update()")["changed"] is False


def test_a_page_of_a_named_origin_imports_the_client_and_recognises(
    chromium: Browser, server: Server, app_origin: str
) -> None:
    """Own context: the page of an origin nobody named fails to import the client on purpose."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    # First as faceforge's own pages do (no Origin): what the browser caches then (the client's
    # runtime for a day, model files for a year) must not be handed to the other origin's page
    # without its permission; it was, until every answer said Vary: Origin.
    page.goto(server.url + "/healthz")
    page.evaluate(CONNECT, [server.url, READ_KEY])
    page.evaluate(FETCH_LABELS, [server.url, READ_KEY])
    page.goto(app_origin)
    assert page.evaluate(FETCH_LABELS, [server.url, READ_KEY])[0] == 200
    loaded = page.evaluate(CONNECT, [server.url, READ_KEY])
    assert loaded["version"] >= 1
    probe = _probe(FOLDERS[1])
    (faces,) = page.evaluate(RECOGNIZE, [_b64(probe)])
    assert faces and faces[0]["personId"] == _identify(server, probe) is not None
    # The page reads a refusal's reason, not just "failed to fetch".
    refused = page.evaluate(
        """async (url) => { const r = await fetch(url + "/api/v1/people", {headers: {"X-API-Key": "no"}});
                          return [r.status, (await r.json()).error.code]; }""",
        server.url,
    )
    assert refused == [401, "unauthorized"]

    # The same faceforge reached as localhost is an origin nobody named: the browser refuses it the
    # client module (fetched in CORS mode) and every answer.
    page.goto(server.url.replace("127.0.0.1", "localhost") + "/healthz")
    failure = page.evaluate(
        """async (url) => { try { await import(url + "/client/faceforge.js"); return null; }
                          catch (error) { return String(error); } }""",
        server.url,
    )
    assert failure is not None and "import" in failure, failure
    # The server answered all the same (an opaque answer): it is the permission that is missing.
    reached = page.evaluate(
        """async (url) => (await fetch(url + "/client/faceforge.js", {mode: "no-cors"})).type""", server.url
    )
    assert reached == "opaque"
    context.close()


def test_recognition_with_the_server_stopped(chromium: Browser, server: Server, served: Served) -> None:
    """Own context: requests to a stopped server fail on purpose here. The client keeps recognising,
    a new client starts from the browser's cache, and /live reloads (its service worker)."""
    context = chromium.new_context()
    context.add_init_script(f"sessionStorage.setItem('faceforge-api-key', {READ_KEY!r})")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url + "/healthz")
    page.evaluate("async (url) => { window.ff = await import(url + '/client/faceforge.js'); }", server.url)
    # Before any first load, a server that cannot be reached is a clear error.
    closed = f"http://127.0.0.1:{free_port()}"
    assert page.evaluate(ERROR_OF, f"() => ff.connect({closed!r})")["code"] == "offline_without_model"
    page.evaluate(CONNECT, [server.url, READ_KEY])
    live = context.new_page()
    live.set_default_timeout(TIMEOUT_MS)
    live.goto(server.url + "/live")
    on_camera = ON_CAMERA.name.replace("_", " ")
    expect(live.locator("#faces li.known")).to_contain_text(on_camera, timeout=TIMEOUT_MS)
    live.wait_for_function("navigator.serviceWorker.controller !== null")

    served.process.terminate()
    served.process.wait(timeout=30)
    update = page.evaluate("client.update()")
    assert update["offline"] is True and update["version"] == 2
    # A new client in this browser starts from what it holds, verified against its sha256 again.
    restarted = page.evaluate(CONNECT, [server.url, READ_KEY])
    assert restarted["version"] == 2
    assert page.evaluate("client.offline") is True
    (faces,) = page.evaluate(RECOGNIZE, [_b64(_probe(NEWCOMER))])
    assert faces[0]["name"] == NEWCOMER.name.replace("_", " ")
    live.reload()
    expect(live.locator("#network")).to_contain_text("Offline", timeout=TIMEOUT_MS)
    expect(live.locator("#faces li.known")).to_contain_text(on_camera, timeout=TIMEOUT_MS)
    expect(live.locator("#version")).to_have_text("2")
    # Behind a reverse proxy, faceforge away is a 502 page on every path: /live reloads all the same.
    with _Proxy(("127.0.0.1", served.port), _BadGateway) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            live.reload()
            expect(live.locator("#network")).to_contain_text("Offline", timeout=TIMEOUT_MS)
            expect(live.locator("#faces li.known")).to_contain_text(on_camera, timeout=TIMEOUT_MS)
            assert proxy.answered > 0
        finally:
            proxy.shutdown()
    context.close()
