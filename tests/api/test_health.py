"""/healthz and /readyz: what a load balancer or orchestrator asks, without a key."""

from __future__ import annotations

from fastapi.testclient import TestClient

from faceforge.core.dataset import image_files
from tests.api.fixtures import photo_fields, wait_until_trained
from tests.conftest import LFW10


def test_health_and_readiness_follow_the_service(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    before = client.get("/readyz")
    assert before.status_code == 200
    # The embedded trainer loads the networks at start; int8 where this machine passed its check.
    services = client.app.state.services  # type: ignore[attr-defined]
    assert before.json().pop("embedder") == services.pipeline.embedder.precision in ("int8", "float")
    assert before.json()["embedder_graph"] == services.pipeline.embedder.graph.name  # which file runs
    skip = ("embedder", "embedder_graph")
    assert {key: value for key, value in before.json().items() if key not in skip} == {
        "status": "ready",
        "storage": "ok",
        "database": "ok",
        "migrations": "current",
        "model_version": None,
        "trainer": "running",
    }

    client.post(
        "/api/v1/people", data={"name": "Colin"}, files=photo_fields(image_files(LFW10 / "Colin_Powell")[:3])
    )
    wait_until_trained(client)
    assert client.get("/readyz").json()["model_version"] == 1

    # The current version's head is damaged on disk: this process cannot serve it.
    services.models._heads.clear()  # a process that has not loaded it yet
    (services.settings.models_dir / "1" / "head.safetensors").write_bytes(b"damaged")
    broken = client.get("/readyz")
    assert broken.status_code == 503
    assert broken.json()["status"] == "not_ready" and broken.json()["model_version"].startswith(
        "not loadable"
    )
    assert client.get("/healthz").status_code == 200  # alive, just not ready
