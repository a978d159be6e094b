"""A running faceforge server as a bulk-import target (``faceforge import --server URL``).

Speaks the public API: ``GET /api/v1/people?external_id=``, ``GET .../photos`` (their sha256),
``POST /api/v1/people?train=false`` and ``POST .../photos?train=false`` (photos stored without a
version each), the same under ``/api/v1/strangers`` (found by ``?source=``), ``POST
/api/v1/training`` once at the end, ``GET /api/v1/training`` to wait.

A long import outlives short outages: a 503 is retried after its ``Retry-After`` (seconds or an HTTP
date, as proxies send), a connection that could not be made is retried with growing pauses (nothing
was sent), and a reading request whose connection broke is sent again. A write whose connection
broke mid-way is not repeated blindly: the import is resumable, and its next run skips what arrived.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from faceforge.core.errors import FaceforgeError
from faceforge.serving.services.bulk_import import BatchRefusedError, BatchResult, FolderPerson
from faceforge.serving.services.people import PhotoVerdict, Upload

TIMEOUT_SECONDS = 300.0  # one request analyses up to 20 photos
DEFAULT_BATCH = 20  # the server's default FACEFORGE_LIMITS__MAX_PHOTOS_PER_REQUEST
BUSY_RETRIES = 30
CONNECT_RETRIES = 5  # pauses of 0.5, 1, 2, 4 s: a server restarting has time to come back
MAX_WAIT_SECONDS = 60.0  # a Retry-After further away than this is not waited for in full
SAFE_METHODS = {"GET", "HEAD"}


class ServerError(FaceforgeError):
    code = "server_error"


def _verdicts(body: dict[str, Any]) -> list[PhotoVerdict]:
    return [
        PhotoVerdict(
            index=v["index"],
            filename=v.get("filename"),
            accepted=v["verdict"] == "accepted",
            reasons=list(v.get("reasons", [])),
            message=v.get("message"),
            photo_id=v.get("photo_id"),
        )
        for v in body.get("photos", [])
    ]


class HttpTarget:
    def __init__(self, url: str, api_key: str | None, *, batch: int = DEFAULT_BATCH) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        try:
            self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_SECONDS)
        except httpx.InvalidURL as error:  # "http://host:8000x": a traceback before
            raise ServerError(f"--server {url!r} is not a URL such as http://host:8000 ({error})") from None
        self.max_photos_per_request = batch

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, sent again after connection failures that cannot have changed anything."""
        for attempt in range(CONNECT_RETRIES):
            try:
                return self.client.request(method, path, **kwargs)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
            ) as error:
                unsent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
                if not (unsent or method in SAFE_METHODS) or attempt == CONNECT_RETRIES - 1:
                    raise ServerError(f"cannot reach {self.client.base_url}: {error}") from None
                time.sleep(0.5 * 2**attempt)
            except httpx.HTTPError as error:
                raise ServerError(f"cannot reach {self.client.base_url}: {error}") from None
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(BUSY_RETRIES):
            response = self._send(method, path, **kwargs)
            if response.status_code != 503:
                break
            time.sleep(retry_after_seconds(response.headers.get("Retry-After")))  # busy: wait
        if response.status_code in (401, 403):
            raise ServerError(f"the server refused the key ({_message(response)})")
        return response

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ServerError(f"{response.request.method} {response.request.url.path}: {_message(response)}")
        try:
            return response.json()
        except ValueError:  # another web application answered (an HTML page): a traceback before
            raise ServerError(
                f"{self.client.base_url} is not a faceforge server: {response.request.url.path} answered "
                f"{response.headers.get('content-type') or 'no content type'}, not JSON"
            ) from None

    def find_person(self, external_id: str) -> int | None:
        page = self._ok(self._call("GET", "/api/v1/people", params={"external_id": external_id}))
        return int(page["items"][0]["id"]) if page["items"] else None

    def known_hashes(self, person_id: int) -> set[str]:
        photos = self._ok(self._call("GET", f"/api/v1/people/{person_id}/photos"))
        return {photo["sha256"] for photo in photos}

    def _upload(self, path: str, uploads: list[Upload], data: dict[str, str] | None = None) -> httpx.Response:
        files = [("photos", (u.filename or "photo", u.data, "application/octet-stream")) for u in uploads]
        response = self._call("POST", path, params={"train": "false"}, data=data or {}, files=files)
        code = _code(response)
        if 400 <= response.status_code < 500 and code != "photos_rejected":
            # Refused for what was sent (a photo over the size limit, a name it does not take, also
            # a proxy's bare 413): the importer refuses those photos and goes on with the others.
            # In the API's own words when it answered, as an import into --home says them (a tester
            # read "400 name_required: Name is required" beside build's "Name is required").
            said = _said(response) if code is not None else None
            raise BatchRefusedError(code or f"http_{response.status_code}", said or _message(response))
        return response

    def create_person(self, person: FolderPerson, uploads: list[Upload]) -> BatchResult:
        response = self._upload(
            "/api/v1/people", uploads, {"name": person.name, "external_id": person.external_id}
        )
        if response.status_code == 422 and _code(response) == "photos_rejected":
            return BatchResult(None, _verdicts(response.json()["error"]))
        body = self._ok(response)
        return BatchResult(int(body["id"]), _verdicts(body))

    def add_photos(self, person_id: int, uploads: list[Upload]) -> BatchResult:
        response = self._upload(f"/api/v1/people/{person_id}/photos", uploads)
        if response.status_code == 422 and _code(response) == "photos_rejected":
            return BatchResult(person_id, _verdicts(response.json()["error"]))
        return BatchResult(person_id, _verdicts(self._ok(response)))

    def find_stranger(self, source: str) -> int | None:
        page = self._ok(self._call("GET", "/api/v1/strangers", params={"source": source}))
        return int(page["items"][0]["id"]) if page["items"] else None

    def stranger_hashes(self, stranger_id: int) -> set[str]:
        stranger = self._ok(self._call("GET", f"/api/v1/strangers/{stranger_id}"))
        return {photo["sha256"] for photo in stranger["photos"]}

    def create_stranger(self, stranger: FolderPerson, uploads: list[Upload]) -> BatchResult:
        response = self._upload(
            "/api/v1/strangers", uploads, {"note": stranger.name, "source": stranger.external_id}
        )
        if response.status_code == 422 and _code(response) == "photos_rejected":
            return BatchResult(None, _verdicts(response.json()["error"]))
        body = self._ok(response)
        return BatchResult(int(body["id"]), _verdicts(body))

    def add_stranger_photos(self, stranger_id: int, uploads: list[Upload]) -> BatchResult:
        response = self._upload(f"/api/v1/strangers/{stranger_id}/photos", uploads)
        if response.status_code == 422 and _code(response) == "photos_rejected":
            return BatchResult(stranger_id, _verdicts(response.json()["error"]))
        return BatchResult(stranger_id, _verdicts(self._ok(response)))

    def request_training(self) -> None:
        self._ok(self._call("POST", "/api/v1/training"))

    def training(self) -> dict[str, Any]:
        """The server's ``GET /api/v1/training``."""
        status = self._ok(self._call("GET", "/api/v1/training"))
        if not isinstance(status, dict) or "current_version" not in status:
            raise ServerError(
                f"{self.client.base_url} is not a faceforge server: /api/v1/training has no version"
            )
        return status

    def current_version(self) -> int | None:
        current = self.training()["current_version"]
        return None if current is None else int(current)

    def wait_for_version(self, *, timeout: float = 600.0) -> int | None:
        """Wait until every requested training is built; the current version then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._ok(self._call("GET", "/api/v1/training"))
            if status["state"] == "idle" and status["built"] >= status["requested"]:
                current = status["current_version"]
                return None if current is None else int(current)
            time.sleep(0.5)
        raise ServerError("the server did not finish training in time")


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float:
    """How long to wait for a ``Retry-After`` value: delay-seconds or an HTTP date (RFC 9110 10.2.3),
    within 0..``MAX_WAIT_SECONDS``; 1 s when it is missing or unreadable."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return 1.0
        if when.tzinfo is None:  # an HTTP date is GMT; "-0000" parses as naive
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_WAIT_SECONDS)


def _code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _said(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return None


def _message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        # Not our error body: another web application, or a proxy in front (its HTML 404, 413 or 502
        # page, which was quoted here over ten lines). Its status and kind, on one line.
        kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        return f"{response.status_code} {response.reason_phrase} ({kind}: not an answer of faceforge's API)"
