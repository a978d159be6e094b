"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real
`faceforge serve`: log in, register people with real photos, watch training, identify, add photos by
upload, roll back a version, delete a person; axe-core checks every page on the way."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import FileChooser, Page, Request, expect

from faceforge.core.dataset import image_files
from tests.conftest import FACES, LFW10
from tests.web.browser import ADMIN_KEY, READ_KEY, TIMEOUT_MS, Server, assert_accessible, login, shot

# The texts of Try it's tags, and the pairs of them that cover each other as drawn.
TAGS_COVERED = """() => {
  const tags = [...document.querySelectorAll("#result .tag")];
  const rects = tags.map((tag) => tag.getBoundingClientRect());
  const covered = [];
  rects.forEach((a, i) => rects.slice(i + 1).forEach((b, j) => {
    const meet = a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    if (meet) covered.push([i, i + j + 1]);
  }));
  return { tags: tags.map((tag) => tag.textContent), covered };
}"""


def _register(page: Page, name: str, photos: list[Path]) -> None:
    page.goto(page.url.split("#")[0] + "#/people")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Photos (one face each)").set_input_files([str(p) for p in photos])
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def _wait_trained(page: Page, server: Server, version: int) -> None:
    page.goto(server.url + "/#/training")
    expect(page.locator("#current-version")).to_have_text(str(version), timeout=TIMEOUT_MS)
    expect(page.locator("#training-state")).to_have_text(
        re.compile("idle", re.IGNORECASE), timeout=TIMEOUT_MS
    )


def test_the_dashboard_end_to_end(page: Page, server: Server, tmp_path: Path) -> None:
    login(page, server, ADMIN_KEY)
    shot(page, server, "01-people-empty")
    assert_accessible(page, "people, empty")
    colin, blair = image_files(LFW10 / "Colin_Powell"), image_files(LFW10 / "Tony_Blair")
    _register(page, "Colin Powell", colin[:4])
    _wait_trained(page, server, 1)
    _register(page, "Tony Blair", blair[:4])
    _wait_trained(page, server, 2)
    shot(page, server, "02-training")
    assert_accessible(page, "training")
    assert "null" not in page.locator("#main").inner_text()

    # Add photos on the person page: one face accepted, a cat refused, each with its own verdict.
    photo_requests: list[str] = []

    def on_request(request: Request) -> None:
        if "/photos/" in request.url and request.url.split("?")[0].endswith("/file"):
            photo_requests.append(request.url)

    page.on("request", on_request)
    page.goto(server.url + "/#/people")
    page.get_by_role("link", name="Colin Powell").click()
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    server.expected_errors.add(("/photos", 422))
    cat = image_files(FACES / "negatives")[0]
    page.locator("#add-photos").set_input_files([str(colin[4]), str(cat)])
    expect(page.locator(".uploads .accepted")).to_have_count(1)
    expect(page.locator(".uploads .rejected")).to_contain_text("no face")
    expect(page.locator("#photos figure")).to_have_count(5)
    expect(page.locator("#photos img")).to_have_count(5)
    shot(page, server, "03-person")
    assert_accessible(page, "a person")
    # Every photo is fetched scaled for its tile, not as the original.
    assert photo_requests and all("size=" in url for url in photo_requests), photo_requests
    # Each "Delete photo" button says which photo it deletes.
    names = page.locator("#photos button").evaluate_all(
        "(buttons) => buttons.map((b) => b.getAttribute('aria-label') || b.textContent)"
    )
    assert len(set(names)) == len(names) == 5, names
    _wait_trained(page, server, 3)

    # Try it: an error goes when a good photo follows; the probe is named on the page, with its box.
    page.goto(server.url + "/#/try")
    server.expected_errors.add(("/identify", 400))
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo")
    page.locator("#probe").set_input_files(str(not_a_photo))
    expect(page.locator("#result [role=alert]")).to_be_visible()
    expect(page.locator("#result [role=alert]")).not_to_contain_text("(not_an_image)")  # words, not codes
    page.locator("#probe").set_input_files(str(colin[8]))
    expect(page.locator("#faces li").first).to_contain_text("Colin Powell")
    expect(page.locator("#result [role=alert]")).to_have_count(0)
    expect(page.locator("#notice")).to_be_hidden()
    expect(page.locator("#result .box")).to_have_count(1)
    shot(page, server, "04-try-it")
    assert_accessible(page, "try it, with a result")
    page.locator("#probe").set_input_files(str(image_files(FACES / "unknown_singles")[0]))
    expect(page.locator("#faces li").first).to_contain_text("unknown")

    # A group photo on a phone: numbered boxes whose tags stay on the photo, each line of the list
    # numbered as its box, and no sideways scrolling (a tester saw tags cut to "nknown" past the
    # photo's edge and the page scrolling sideways).
    page.set_viewport_size({"width": 375, "height": 800})
    page.locator("#probe").set_input_files(str(FACES / "multi" / "dlib_bald_guys.jpg"))
    expect(page.locator("#result .box").first).to_be_visible()
    layout = page.evaluate(
        """() => {
          const frame = document.querySelector("#result .frame").getBoundingClientRect();
          const tags = [...document.querySelectorAll("#result .tag")];
          const off = tags.filter((tag) => {
            const r = tag.getBoundingClientRect();
            return r.left < frame.left - 0.5 || r.right > frame.right + 0.5
              || r.top < frame.top - 0.5 || r.bottom > frame.bottom + 0.5;
          }).map((tag) => tag.textContent);
          return {
            off, tags: tags.map((tag) => tag.textContent),
            numbers: [...document.querySelectorAll("#faces li .face-number")].map((n) => n.textContent),
            sideways: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          };
        }"""
    )
    assert len(layout["tags"]) > 4 and layout["tags"] == layout["numbers"] == [
        str(i + 1) for i in range(len(layout["tags"]))
    ]
    assert layout["off"] == [] and layout["sideways"] <= 0, layout
    shot(page, server, "04-try-it-group-375")
    # Three faces side by side: on a phone their named tags covered each other ("2 unknown" over
    # "1 unknown"), so there they carry their numbers; on a wide screen, where they fit, their names.
    page.locator("#probe").set_input_files(str(FACES / "multi" / "face_recognition_obama_and_biden.jpg"))
    expect(page.locator("#result .box")).to_have_count(3)
    expect(page.locator("#result .tag").first).to_have_text("1")
    narrow = page.evaluate(TAGS_COVERED)
    assert narrow["covered"] == [] and narrow["tags"] == ["1", "2", "3"], narrow
    shot(page, server, "04-try-it-three-375")
    page.set_viewport_size({"width": 1440, "height": 1000})
    expect(page.locator("#result .tag").first).to_have_text("1 unknown")
    wide = page.evaluate(TAGS_COVERED)
    assert wide["covered"] == [] and wide["tags"] == ["1 unknown", "2 unknown", "3 unknown"], wide

    # Versions: roll back to version 2, then look at its quality.
    page.goto(server.url + "/#/versions")
    expect(page.locator("#version-3 .badge")).to_have_text("current")
    page.once("dialog", lambda dialog: dialog.accept())  # it asks first
    page.locator("#version-2 button.activate").click()
    expect(page.locator("#version-2 .badge")).to_have_text("current")
    expect(page.locator("#version-3 .badge")).to_have_count(0)
    shot(page, server, "05-versions")
    assert_accessible(page, "versions")
    page.locator("#version-2").get_by_role("link", name="Quality").click()
    expect(page.locator("svg.plot")).to_have_count(2)
    expect(page.locator("#worst li")).to_have_count(2)
    shot(page, server, "06-quality")
    assert_accessible(page, "quality")

    # Delete a person: gone from the list, the notice says so there, and a version without them follows.
    page.goto(server.url + "/#/people")
    page.get_by_role("link", name="Tony Blair").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-person").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("Tony Blair deleted")
    expect(page.locator("#people .person")).to_have_count(1)
    expect(page.get_by_role("link", name="Tony Blair")).to_have_count(0)
    _wait_trained(page, server, 4)

    # A read key sees people and versions but no controls that change them, and is told why there
    # are no faces.
    page.get_by_role("button", name="Log out").click()
    assert_accessible(page, "log in")
    login(page, server, READ_KEY)
    expect(page.locator("#register")).to_have_count(0)
    expect(page.locator("#faces-note")).to_contain_text("admin keys only")
    assert "null" not in page.locator("#main").inner_text()
    page.get_by_role("link", name="Colin Powell").click()
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    expect(page.locator("#delete-person")).to_have_count(0)
    expect(page.locator("#faces-note")).to_contain_text("admin keys only")
    page.goto(server.url + "/#/versions")
    expect(page.locator("button.activate")).to_have_count(0)
    shot(page, server, "07-read-key")
    assert_accessible(page, "versions, read key")


def test_the_dashboard_on_a_phone_and_by_keyboard(page: Page, server: Server) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(server.url + "/#/login")
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
    expect(page.locator(".pager")).to_contain_text("nobody named like “nobody by this name”")
    shot(page, server, "08-phone")
    for hash_ in ("#/try", "#/training", "#/versions"):
        page.goto(server.url + "/" + hash_)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, hash_
        assert_accessible(page, hash_ + " on a phone")

    # Try it by keyboard: the photo chooser is reachable with Tab, shows its focus, and Enter opens it.
    # A listener registered now turns Chromium's file-chooser interception on before the key press;
    # expect_file_chooser turns it on as the press is sent, and a loaded machine let the press win.
    choosers: list[FileChooser] = []
    page.on("filechooser", lambda chosen: choosers.append(chosen))
    page.goto(server.url + "/#/try")
    expect(page.get_by_role("heading", name="Try it")).to_be_visible()
    # The skip link moves the focus to the content and stays on the page ("#main" went through the
    # router: "There is no page at #main").
    page.locator("a.skip").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"#/try$"))
    expect(page.get_by_role("heading", name="Try it")).to_be_visible()
    chooser = page.get_by_role("button", name="Choose a photo")
    for _ in range(12):
        page.keyboard.press("Tab")
        if chooser.evaluate("(node) => node === document.activeElement"):
            break
    expect(chooser).to_be_focused()
    outline = chooser.evaluate("(node) => getComputedStyle(node).outlineStyle")
    assert outline not in ("", "none"), outline
    page.keyboard.press("Enter")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not choosers and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(choosers) == 1, "Enter on the focused chooser opened no file chooser"
    choosers[0].set_files(str(image_files(FACES / "unknown_singles")[0]))
    expect(page.locator("#result")).not_to_be_empty()
