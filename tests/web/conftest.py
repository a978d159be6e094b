"""One `faceforge serve` per test module (a module may set `SERVER_ENV`), one chromium per module,
a fresh browser context per test; any console error or unexpected failed request fails the test.
Screenshots land in the module's tmp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, expect, sync_playwright

from faceforge.core.config import Settings
from tests.api.fixtures import serve_process
from tests.web.browser import ADMIN_KEY, CHROMIUM, CHROMIUM_ARGS, READ_KEY, TIMEOUT_MS, Server

# Playwright's assertions wait 5 s by default, apart from the page's own timeout: on a 2-core AMD EPYC
# (Zen 1, 2 GHz) beside the other pytest worker, identifying a group photo of seven faces took longer
# than that and the dashboard test failed while the page still said "Looking…". What the page waits for
# is the server's work, so the assertions wait as long as any other step of these tests.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    env = {
        "FACEFORGE_ADMIN_KEYS": ADMIN_KEY,
        "FACEFORGE_READ_KEYS": READ_KEY,
        **getattr(request.module, "SERVER_ENV", {}),
    }
    with serve_process(folder / "home", settings, **env) as (url, _):
        screenshots = folder / "screenshots"
        screenshots.mkdir()
        server = Server(url, screenshots)
        with server.http:
            yield server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "the browser tests need Debian's chromium (`make install` adds it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser, server: Server) -> Iterator[Page]:
    problems: list[str] = []
    server.expected_errors.clear()
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)

    def expected(url: str, status: int) -> bool:
        return any(
            url.split("?")[0].endswith(suffix) and status == code for suffix, code in server.expected_errors
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
    context.close()
    assert problems == [], "\n".join(problems)
