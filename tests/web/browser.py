"""Helpers for the dashboard's browser tests: Debian's chromium driven by Playwright against a real
`faceforge serve` (one per test module), axe-core's accessibility checks, screenshots."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.api.fixtures import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium on a closed network: no background connections, no first-run work (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN_KEY, READ_KEY = "dashboard-admin", "dashboard-read"
TIMEOUT_MS = 120_000
# axe-core from npm (tests/compat/js/package.json, installed by `make install`), given to the page
# from disk: nothing is fetched from elsewhere.
AXE = Path(__file__).resolve().parents[1] / "compat" / "js" / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = {"serious", "critical"}


@dataclass
class Server:
    url: str
    screenshots: Path
    expected_errors: set[tuple[str, int]] = field(default_factory=set)  # (path suffix, status)
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, headers={"X-API-Key": ADMIN_KEY}, timeout=120)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the server's API with the admin key (to set up what a test looks at), on one
        client per server (a new one per call loaded the CA bundle each time, while polling)."""
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def register(self, name: str, photos: Iterable[Path], *, train: bool = True) -> dict[str, Any]:
        files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        query = "" if train else "?train=false"
        person: dict[str, Any] = self.api(
            "POST", "/api/v1/people" + query, data={"name": name}, files=files
        ).json()
        return person

    def wait_trained(self) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status: dict[str, Any] = self.api("GET", "/api/v1/training").json()
            return status if status["state"] == "idle" and status["built"] == status["requested"] else None

        result: dict[str, Any] = wait_for(done, what="training to finish")
        return result


def shot(page: Page, server: Server, name: str) -> None:
    page.screenshot(path=str(server.screenshots / f"{name}.png"), full_page=True)


def login(page: Page, server: Server, key: str) -> None:
    page.goto(server.url + "/#/login")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()


def open_page(page: Page, server: Server, hash_: str) -> None:
    """Go to a dashboard route and wait until it has been drawn."""
    page.goto(server.url + "/" + hash_)
    # The dashboard marks the route it has drawn (`data-route`); without it, wait for the network.
    page.wait_for_function(
        "(hash) => (document.getElementById('main').dataset.route ?? hash) === hash", arg=hash_
    )
    page.wait_for_load_state("networkidle")


def assert_accessible(page: Page, what: str) -> None:
    """axe-core over the page as it is now: no serious or critical violation."""
    assert AXE.is_file(), f"axe-core is a test dependency: run `make install` ({AXE} is missing)"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations.map(
            (v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join()) }),
        )"""
    )
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    assert failing == [], f"accessibility of {what}: {failing}"
