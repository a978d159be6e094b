"""What every route shares: HEAD wherever GET works, faces and names never cached, and strict types
(an object is not a name, `true` is not person 1, ` 1` is not an id)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from faceforge.core.dataset import image_files
from tests.api.fixtures import photo_fields
from tests.conftest import LFW10

RECOGNITION = "/api/v1/recognition"
NO_STORE = "private, no-store"


def test_head_answers_wherever_get_does_and_nothing_private_is_cached(client: TestClient) -> None:
    person = client.post(
        "/api/v1/people", data={"name": "Colin"}, files=photo_fields(image_files(LFW10 / "Colin_Powell")[:1])
    )
    photo_id = person.json()["photos"][0]["photo_id"]
    image_id = f"00000000-0000-4000-8000-{photo_id:012x}"
    private = [
        "/api/v1/people",
        "/api/v1/people/1",
        "/api/v1/people/1/photos",
        f"/api/v1/people/1/photos/{photo_id}/file",
        "/api/v1/people/1/thumbnail",
        f"{RECOGNITION}/subjects",
        f"{RECOGNITION}/faces",
        f"{RECOGNITION}/faces/{image_id}/img",
    ]
    for path in [*private, "/healthz", "/api/v1/training", "/api/v1/models", "/", "/ui/app.js"]:
        got, head = client.get(path), client.head(path)
        assert got.status_code == 200 and head.status_code == 200, (path, head.status_code, head.text)
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["cache-control"] == got.headers["cache-control"], path
    for path in private:
        assert client.get(path).headers["cache-control"] == NO_STORE, path
    listed = client.post("/v1/vision/face/list")
    assert listed.json()["faces"] == ["Colin"] and listed.headers["cache-control"] == NO_STORE
    assert client.get("/ui/app.js").headers["cache-control"] == "no-cache"  # the dashboard's own files
    assert client.delete("/healthz").headers["allow"] == "GET, HEAD"
    post_only = client.head(f"{RECOGNITION}/recognize")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"
    # An image id of no photo: CompreFace's own code for it (11), which its clients test for.
    missing = "00000000-0000-4000-8000-0000000fffff"
    for answer in (
        client.get(f"{RECOGNITION}/faces/{missing}/img"),
        client.delete(f"{RECOGNITION}/faces/{missing}"),
    ):
        assert answer.status_code == 404 and answer.json()["code"] == 11, answer.text


def test_types_are_strict(client: TestClient) -> None:
    for body in ({"subject": {"a": 1}}, {"subject": 5}, {"subject": ["Ann"]}):
        refused = client.post(f"{RECOGNITION}/subjects", json=body)
        assert refused.status_code == 400 and set(refused.json()) == {"message", "code"}, refused.text
    assert client.get(f"{RECOGNITION}/subjects").json() == {"subjects": []}
    first = client.post("/api/v1/people", data={"name": "Ann"}).json()["id"]
    second = client.post("/api/v1/people", data={"name": "Ann again"}).json()["id"]
    for other in (True, "1", 1.0):
        merged = client.post(f"/api/v1/people/{second}/merge", json={"other_id": other})
        assert merged.status_code == 400 and merged.json()["error"]["code"] == "invalid_request", (
            other,
            merged.text,
        )
    assert client.patch(f"/api/v1/people/{first}", json={"name": 5}).status_code == 400
    for path in ("%201", "+1", "1_0", "%EF%BC%91", "1%20"):
        assert client.get(f"/api/v1/people/{path}").status_code == 404, path
    assert client.get("/api/v1/people").json()["total"] == 2
    assert client.get(f"/api/v1/people/{first}").status_code == 200
    # The identify options are form fields: in the query they would be ignored, so they are refused.
    photo = {"photo": ("p.jpg", next(iter(sorted((LFW10 / "Colin_Powell").iterdir()))).read_bytes())}
    misplaced = client.post("/api/v1/identify?threshold=0.99&top_k=2", files=photo)
    assert misplaced.status_code == 400 and misplaced.json()["error"]["code"] == "invalid_request"
    assert misplaced.json()["error"]["message"].startswith("threshold, top_k: send as multipart form fields")
    # Not a number is said to be one, not to be "less than or equal to 1".
    for value in ("nan", "inf", "-inf"):
        answer = client.post("/api/v1/identify", files=photo, data={"threshold": value})
        assert answer.status_code == 400 and "finite number" in answer.json()["error"]["message"], answer.text
    det = client.post("/api/v1/recognition/recognize?det_prob_threshold=nan", files={"file": photo["photo"]})
    assert det.status_code == 400 and "finite number" in det.json()["message"], det.text


def test_made_up_methods_share_one_metrics_label(client: TestClient) -> None:
    """The HTTP parser takes any token as a method, and refused requests are counted too: a label per
    method a client makes up would grow /metrics (and the server's memory) without bound."""
    for method in ("ZZZ1", "ZZZ2", "BREW"):
        assert client.request(method, "/api/v1/people").status_code == 405
    client.request("PATCH", "/api/v1/people")
    metrics = client.get("/metrics").text
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0] for line in metrics.splitlines() if 'method="' in line
    }
    assert "OTHER" in methods and "PATCH" in methods, methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}, methods


def test_the_openapi_document_promises_no_body_no_route_sends(quiet_client: TestClient) -> None:
    """FastAPI documented a 422 "Validation Error" with its own body on every route with parameters,
    while invalid input is answered 400 in each API's shape: a client generated from the document
    expected what never came. A 422 that means something (photos refused) stays."""
    document = quiet_client.get("/openapi.json").json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert all(op["responses"].get("422", {}).get("description") != "Validation Error" for op in operations)
    assert "HTTPValidationError" not in json.dumps(document)
    people = document["paths"]["/api/v1/people"]["post"]["responses"]
    assert "photos_rejected" in people["422"]["description"]
    bad = quiet_client.get("/api/v1/recognition/faces", params={"size": "many"})
    assert bad.status_code == 400 and bad.json()["code"] == 26, bad.text  # as documented: 400


def test_the_deepstack_routes_document_the_form_they_read(quiet_client: TestClient) -> None:
    """They read their form themselves (the key is a form field), so the document showed no body
    at all, and a 422 on every route where only register sends one. Each field the document calls
    required is one the route asks for when it is missing."""
    document = quiet_client.get("/openapi.json").json()
    for route in ("register", "recognize", "list", "delete", "match"):
        operation = document["paths"][f"/v1/vision/face/{route}"]["post"]
        body = operation["requestBody"]
        assert body["required"] is (route != "list"), route
        schema = body["content"]["multipart/form-data"]["schema"]
        assert "api_key" in schema["properties"], route
        assert ("422" in operation["responses"]) == (route == "register"), route
        for field in schema["required"]:
            assert schema["properties"][field]["type"] == "string", (route, field)
            # Every other field given: the route names the one missing.
            others = {name: "someone" for name in schema["required"] if name != field and "image" not in name}
            files = {
                name: ("a.jpg", b"x", "image/jpeg")
                for name in schema["required"]
                if name != field and "image" in name
            }
            answer = quiet_client.post(
                f"/v1/vision/face/{route}", data=others or {"x": "y"}, files=files or None
            )
            assert answer.status_code == 400 and answer.json()["success"] is False, (
                route,
                field,
                answer.text,
            )
            assert field in answer.json()["error"], (route, field, answer.json())
    assert (
        document["paths"]["/v1/vision/face/list"]["post"]["requestBody"]["content"]["multipart/form-data"][
            "schema"
        ]["required"]
        == []
    )
