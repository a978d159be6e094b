"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real
`faceforge serve`: log in, register people with real photos, watch training, identify, add photos by
upload, roll back a version, delete a person; any console error or unexpected failed request fails.

Screenshots of every page land in the test's tmp folder (kept when the test fails)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect, sync_playwright

from faceforge.config import Settings
from faceforge.evaluation.dataset import image_files
from tests.api.fixtures import serve_process
from tests.conftest import FACES, LFW10

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium on a closed network: no background connections, no first-run work (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN_KEY, READ_KEY = "dashboard-admin", "dashboard-read"
TIMEOUT_MS = 120_000


@dataclass
class Server:
    url: str
    screenshots: Path
    expected_errors: set[tuple[str, int]] = field(default_factory=set)  # (path suffix, status)


@pytest.fixture
def server(tmp_path: Path, settings: Settings) -> Iterator[Server]:
    keys = {"FACEFORGE_ADMIN_KEYS": ADMIN_KEY, "FACEFORGE_READ_KEYS": READ_KEY}
    with serve_process(tmp_path / "home", settings, **keys) as (url, _):
        screenshots = tmp_path / "screenshots"
        screenshots.mkdir()
        yield Server(url, screenshots)


@pytest.fixture
def page(server: Server) -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), "the browser tests need Debian's chromium (`make install` adds it)"
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)

        def expected(url: str, status: int) -> bool:
            return any(
                url.split("?")[0].endswith(suffix) and status == code
                for suffix, code in server.expected_errors
            )

        def on_console(message: ConsoleMessage) -> None:
            if message.type != "error":
                return
            location = message.location.get("url", "") if message.location else ""
            if "the server responded with a status of" in message.text:
                return  # judged on the response itself below (the console line has no status to match)
            problems.append(f"console error: {message.text} ({location})")

        def on_response(response: Response) -> None:
            if response.status >= 400 and not expected(response.url, response.status):
                problems.append(f"{response.request.method} {response.url} -> {response.status}")

        def on_failed(request: Request) -> None:
            # A navigation cancels the requests still in flight (net::ERR_ABORTED): that is the test
            # moving on, not a failure of the page.
            if not request.url.startswith("blob:") and request.failure != "net::ERR_ABORTED":
                problems.append(f"request failed: {request.method} {request.url} ({request.failure})")

        tab.on("console", on_console)
        tab.on("response", on_response)
        tab.on("requestfailed", on_failed)
        tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        yield tab
        browser.close()
    assert problems == [], "\n".join(problems)


def _shot(page: Page, server: Server, name: str) -> None:
    page.screenshot(path=str(server.screenshots / f"{name}.png"), full_page=True)


def _login(page: Page, server: Server, key: str) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()


def _register(page: Page, name: str, photos: list[Path]) -> None:
    page.goto(page.url.split("#")[0] + "#/people")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Photos (one face each)").set_input_files([str(p) for p in photos])
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def _wait_trained(page: Page, server: Server, version: int) -> None:
    page.goto(server.url + "/#/training")
    expect(page.locator("#current-version")).to_have_text(str(version), timeout=TIMEOUT_MS)
    expect(page.locator("#training-state")).to_have_text("idle", timeout=TIMEOUT_MS)


def test_the_dashboard_end_to_end(page: Page, server: Server) -> None:
    _login(page, server, ADMIN_KEY)
    _shot(page, server, "01-people-empty")
    colin, blair = image_files(LFW10 / "Colin_Powell"), image_files(LFW10 / "Tony_Blair")
    _register(page, "Colin Powell", colin[:4])
    _wait_trained(page, server, 1)
    _register(page, "Tony Blair", blair[:4])
    _wait_trained(page, server, 2)
    _shot(page, server, "02-training")

    # Add photos on the person page: one face accepted, a cat refused, each with its own verdict.
    page.goto(server.url + "/#/people")
    page.get_by_role("link", name="Colin Powell").click()
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    server.expected_errors.add(("/photos", 422))
    cat = image_files(FACES / "negatives")[0]
    page.locator("#add-photos").set_input_files([str(colin[4]), str(cat)])
    expect(page.locator(".uploads .accepted")).to_have_count(1)
    expect(page.locator(".uploads .rejected")).to_contain_text("no face")
    expect(page.locator("#photos figure")).to_have_count(5)
    _shot(page, server, "03-person")
    _wait_trained(page, server, 3)

    # Try it: the probe is named on the page, with its box.
    page.goto(server.url + "/#/try")
    page.locator("#probe").set_input_files(str(colin[8]))
    expect(page.locator("#faces li").first).to_contain_text("Colin Powell")
    expect(page.locator("#result .box")).to_have_count(1)
    _shot(page, server, "04-try-it")
    page.locator("#probe").set_input_files(str(image_files(FACES / "unknown_singles")[0]))
    expect(page.locator("#faces li").first).to_contain_text("unknown")

    # Versions: roll back to version 2, then look at its quality.
    page.goto(server.url + "/#/versions")
    expect(page.locator("#version-3 .badge")).to_have_text("current")
    page.locator("#version-2 button.activate").click()
    expect(page.locator("#version-2 .badge")).to_have_text("current")
    expect(page.locator("#version-3 .badge")).to_have_count(0)
    _shot(page, server, "05-versions")
    page.locator("#version-2").get_by_role("link", name="Quality").click()
    expect(page.locator("svg.plot")).to_have_count(2)
    expect(page.locator("#worst li")).to_have_count(2)
    _shot(page, server, "06-quality")

    # Delete a person: gone from the list, and a version without them follows.
    page.goto(server.url + "/#/people")
    page.get_by_role("link", name="Tony Blair").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-person").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    expect(page.locator("#people .person")).to_have_count(1)
    expect(page.get_by_role("link", name="Tony Blair")).to_have_count(0)
    _wait_trained(page, server, 4)

    # A read key sees people and versions but no controls that change them.
    page.get_by_role("button", name="Log out").click()
    _login(page, server, READ_KEY)
    expect(page.locator("#register")).to_have_count(0)
    page.get_by_role("link", name="Colin Powell").click()
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    expect(page.locator("#delete-person")).to_have_count(0)
    page.goto(server.url + "/#/versions")
    expect(page.locator("button.activate")).to_have_count(0)
    _shot(page, server, "07-read-key")


def test_the_dashboard_on_a_phone_and_by_keyboard(page: Page, server: Server) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.keyboard.type(ADMIN_KEY)  # the key field has the focus
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    # Nothing wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # After logging in, the keyboard starts at the page's content: the search box is one Tab away.
    page.keyboard.press("Tab")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("nobody by this name")
    expect(page.locator(".pager")).to_contain_text("nobody yet")
    _shot(page, server, "08-phone")
    for hash_ in ("#/try", "#/training", "#/versions"):
        page.goto(server.url + "/" + hash_)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, hash_
