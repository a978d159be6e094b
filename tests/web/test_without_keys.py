"""A server without API keys in a real browser: the dashboard it serves registers people as before,
while a page of another origin (here: the same server reached as ``localhost``, a different origin
from ``127.0.0.1``) that POSTs to it is refused and changes nothing."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from faceforge.core.dataset import image_files
from tests.conftest import LFW10
from tests.web.browser import Server

SERVER_ENV = {"FACEFORGE_ADMIN_KEYS": "", "FACEFORGE_READ_KEYS": ""}


def _people(server: Server) -> list[str]:
    return [p["name"] for p in httpx.get(server.url + "/api/v1/people", timeout=60).json()["items"]]


def test_the_dashboard_works_and_other_pages_are_refused(page: Page, server: Server) -> None:
    page.goto(server.url + "/#/people")
    page.get_by_label("Name", exact=True).fill("Colin Powell")
    photos = image_files(LFW10 / "Colin_Powell")[:2]
    page.get_by_label("Photos (one face each)").set_input_files([str(p) for p in photos])
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    assert _people(server) == ["Colin Powell"]

    # Another origin's page: a form POST needs no permission from the server, only its refusal stops it.
    other_origin = server.url.replace("127.0.0.1", "localhost")
    page.goto(other_origin + "/ui/favicon.svg")
    server.expected_errors.add(("/api/v1/people", 403))
    page.evaluate(
        """async (target) => {
            const form = new FormData();
            form.append("name", "Mallory");
            await fetch(target + "/api/v1/people", {method: "POST", body: form, mode: "no-cors"});
        }""",
        server.url,
    )
    assert _people(server) == ["Colin Powell"]


def test_no_other_site_may_frame_the_pages(server: Server) -> None:
    """Here every visitor is an admin without logging in: another site's page that framed the
    dashboard could have them click "Make current" or "Delete" under a decoy (clickjacking)."""
    for path in ("/", "/ui/app.js", "/live"):
        answer = httpx.get(server.url + path, timeout=60)
        assert answer.status_code == 200, path
        assert answer.headers.get("X-Frame-Options") == "DENY", path
        assert answer.headers.get("Content-Security-Policy") == "frame-ancestors 'none'", path
