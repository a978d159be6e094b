"""The dashboard's people pages in chromium: suspected duplicates, merging by name or face, every
photo's verdict after registering, notices that stay where the action happened, error routes and the
loading state. People are set up through the API; the browser does what a user would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, Route, expect

from faceforge.core.dataset import image_files
from tests.conftest import FACES, LFW10
from tests.web.browser import ADMIN_KEY, Server, assert_accessible, login, open_page, shot


@pytest.fixture(scope="module")
def people(server: Server) -> Iterator[dict[str, dict[str, Any]]]:
    """Colin Powell registered twice (under two names) and Tony Blair, then one trained version."""
    colin, blair = image_files(LFW10 / "Colin_Powell"), image_files(LFW10 / "Tony_Blair")
    registered = {
        "Colin Powell": server.register("Colin Powell", colin[:4], train=False),
        "C. Powell": server.register("C. Powell", colin[4:8], train=False),
        "Tony Blair": server.register("Tony Blair", blair[:4]),
    }
    server.wait_trained()
    yield registered


def _remember_dialogs(page: Page, *, accept: bool) -> list[str]:
    messages: list[str] = []

    def answer(dialog: Dialog) -> None:
        messages.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    return messages


def test_a_suspected_duplicate_opens_and_merges_from_the_list(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    colin, other = people["Colin Powell"], people["C. Powell"]
    login(page, server, ADMIN_KEY)
    open_page(page, server, f"#/people/{colin['id']}")
    expect(page.get_by_role("heading", name="Colin Powell")).to_be_visible()
    duplicates = page.locator("#duplicates")
    expect(duplicates.get_by_role("link", name="C. Powell")).to_have_attribute(
        "href", f"#/people/{other['id']}"
    )
    expect(duplicates.locator("img")).to_have_count(1)  # the other person's face, to compare
    shot(page, server, "duplicate")
    assert_accessible(page, "a suspected duplicate")

    asked = _remember_dialogs(page, accept=True)
    duplicates.get_by_role("button", name="Merge C. Powell into Colin Powell").click()
    expect(page.locator("#notice")).to_contain_text("C. Powell merged into Colin Powell")
    assert len(asked) == 1 and "C. Powell" in asked[0] and "Colin Powell" in asked[0], asked
    expect(page.locator("#photos figure")).to_have_count(8)
    # The version that flagged the pair still lists it, as history: no merge is offered for a person
    # merged since, nor a link to their page (its merge button answered "person ... not found").
    flagged = next(
        v["version"]
        for v in server.api("GET", "/api/v1/models").json()["items"]
        if (server.api("GET", f"/api/v1/models/{v['version']}").json().get("metrics") or {}).get(
            "suspected_duplicates"
        )
    )
    server.expected_errors.add((f"/api/v1/people/{other['id']}", 404))  # how the page learns they are gone
    open_page(page, server, f"#/versions/{flagged}")
    listed = page.locator("#duplicates li")
    # Named no more (its listing hides the names of people gone since), by number instead.
    expect(listed).to_contain_text(
        re.compile(r"(a deleted person / Colin Powell|Colin Powell / a deleted person) · ")
    )
    expect(listed).to_contain_text(f"person {other['id']} no longer registered (merged or deleted)")
    expect(listed).not_to_contain_text("C. Powell")
    expect(listed.get_by_role("button")).to_have_count(0)
    expect(listed.get_by_role("link", name="Colin Powell")).to_have_count(1)
    server.wait_trained()


def test_merge_picks_the_other_person_by_name_with_their_face(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    blair = people["Tony Blair"]
    page.add_init_script(
        """window.revoked = new Set();
        const revoke = URL.revokeObjectURL;
        URL.revokeObjectURL = (url) => { window.revoked.add(url); revoke(url); };"""
    )
    login(page, server, ADMIN_KEY)
    open_page(page, server, f"#/people/{blair['id']}")
    # An earlier search's answer, held back until the later one is shown: it replaced the later one's
    # people with its own ("nobody else named like x" under "powell").
    held: list[Route] = []
    earlier = re.compile(r".*/api/v1/people\?limit=8&q=zz$")
    page.route(earlier, lambda route: held.append(route))
    search = page.get_by_label("Find them by name")
    search.fill("zz")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    search.fill("powell")
    choice = page.locator("#merge-choices li").filter(has_text="Colin Powell")
    expect(choice.locator("img")).to_have_count(1)
    held[0].continue_()
    page.unroute(earlier)
    page.wait_for_timeout(500)  # the earlier answer has arrived
    expect(choice.locator("img")).to_have_count(1)
    expect(page.locator("#merge-choices")).not_to_contain_text("nobody else")
    # The tiles' and faces' images let their bytes go once shown (every one stayed in the tab's memory).
    expect(page.locator("#photos figure img").first).to_be_visible()
    page.wait_for_function("[...document.querySelectorAll('#main img')].every((image) => image.complete)")
    released = page.evaluate(
        """() => {
          const sources = [...document.querySelectorAll("#main img")].map((image) => image.src);
          return { shown: sources.length, held: sources.filter((src) => !window.revoked.has(src)) };
        }"""
    )
    assert released["shown"] >= 2 and released["held"] == [], released
    shot(page, server, "merge-picker")
    assert_accessible(page, "the merge picker")
    asked = _remember_dialogs(page, accept=False)
    choice.get_by_role("button", name="Merge Colin Powell into Tony Blair").click()
    expect(page.get_by_role("heading", name="Tony Blair")).to_be_visible()
    assert len(asked) == 1 and "Colin Powell" in asked[0] and "Tony Blair" in asked[0], asked


def test_registering_shows_every_verdict_and_deleting_says_so(page: Page, server: Server) -> None:
    chirac = image_files(LFW10 / "Jacques_Chirac")[:2]
    cat = image_files(FACES / "negatives")[0]
    login(page, server, ADMIN_KEY)
    page.get_by_label("Name", exact=True).fill("Jacques Chirac")
    page.get_by_label("Photos (one face each)").set_input_files([str(p) for p in [*chirac, cat]])
    # Held on its way: until it is answered the form says what it is doing (it showed a grey button only).
    held: list[Route] = []
    page.route("**/api/v1/people", lambda route: held.append(route))
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#registering")).to_have_text("Uploading and checking 3 photos…")
    for _ in range(100):  # the text is shown before the request leaves: wait for it to be held
        if held:
            break
        page.wait_for_timeout(50)
    held[0].continue_()
    page.unroute("**/api/v1/people")
    expect(page.get_by_role("heading", name="Jacques Chirac")).to_be_visible()
    # The notice survives the move to the new person's page, and every photo's verdict is there.
    expect(page.locator("#notice")).to_contain_text("2 of 3 photos accepted")
    verdicts = page.locator("#registered li")
    expect(verdicts).to_have_count(3)
    expect(verdicts.filter(has_text=cat.name)).to_contain_text("no face")
    shot(page, server, "registered")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-person").click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("Jacques Chirac deleted; a new version is being trained.")
    server.wait_trained()
    # Without photos, nobody is in any version: nothing is trained, and nothing is said to be. An error
    # under the form was followed by the word "null" (a tester's).
    server.expected_errors.add(("/api/v1/people", 400))
    page.get_by_label("Name", exact=True).fill("   ")
    page.get_by_role("button", name="Register").click()
    form = page.locator("form", has=page.get_by_role("button", name="Register"))
    expect(form.locator("[role=alert]")).to_have_text("Name is required")  # in words, no code
    assert "null" not in form.inner_text(), form.inner_text()
    page.get_by_label("Name", exact=True).fill("Nobody Photoless")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name="Nobody Photoless")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-person").click()
    expect(page.locator("#notice")).to_contain_text("Nobody Photoless deleted.")
    expect(page.locator("#notice")).not_to_contain_text("trained")


def test_an_error_route_replaces_the_page_and_slow_pages_say_loading(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    blair = people["Tony Blair"]
    login(page, server, ADMIN_KEY)
    open_page(page, server, f"#/people/{blair['id']}")
    expect(page.get_by_role("heading", name="Tony Blair")).to_be_visible()
    server.expected_errors.add(("/api/v1/people/999", 404))
    page.goto(server.url + "/#/people/999")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("heading", name="Tony Blair")).to_have_count(0)
    expect(page.locator("#photos")).to_have_count(0)
    assert_accessible(page, "an error route")

    # A route the dashboard does not have (a mistyped link) says so and stays where it was asked,
    # rather than showing People as if it had worked; the bare address still opens People.
    open_page(page, server, "#/peple")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("#main")).to_contain_text("There is no page at #/peple.")
    expect(page).to_have_url(re.compile(r"#/peple$"))
    expect(page.locator("[data-nav][aria-current]")).to_have_count(0)
    assert_accessible(page, "a route the dashboard does not have")
    page.get_by_role("link", name="← People").click()
    expect(page).to_have_url(re.compile(r"#/people$"))
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    # Shown as typed (the browser escapes it in the address), and as text: markup stays text.
    page.goto(server.url + "/#/<b id=bold>x</b> y")
    expect(page.locator("#main code")).to_have_text("#/<b id=bold>x</b> y")
    expect(page.locator("#bold")).to_have_count(0)
    open_page(page, server, "#/peple")
    page.goto(server.url + "/#/")
    expect(page).to_have_url(re.compile(r"#/people$"))
    expect(page.get_by_role("heading", name="People")).to_be_visible()

    # While a page's data is on its way, the page says so (the request is held back here).
    held: list[Route] = []
    page.route(f"**/api/v1/people/{blair['id']}", lambda route: held.append(route))
    page.goto(server.url + f"/#/people/{blair['id']}")
    expect(page.locator("#main")).to_contain_text("Loading")
    expect(page.get_by_role("heading", name="Not found")).to_have_count(0)
    for route in held:
        route.continue_()
    page.unroute(f"**/api/v1/people/{blair['id']}")
    expect(page.get_by_role("heading", name="Tony Blair")).to_be_visible()


def test_a_page_past_the_end_or_not_a_number_shows_a_page(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    """Deleting the only person of the last page left "25–24 of 24" on an empty page, and an offset
    that is not a number was sent as offset=NaN (a 422)."""
    total = server.api("GET", "/api/v1/people").json()["total"]
    login(page, server, ADMIN_KEY)
    for asked in ("abc", "-5", "48"):
        open_page(page, server, f"#/people?offset={asked}")
        expect(page.locator(".pager")).to_contain_text(f"1–{total} of {total}")
        expect(page.locator("#people .person")).to_have_count(total)
    expect(page).to_have_url(re.compile(r"#/people\?offset=0$"))  # the page shown, not the one asked for


def test_leaving_a_search_or_deleting_a_photo_keeps_the_visitor_where_they_are(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    """Typing a search then leaving People within 300 ms took the visitor back to People; deleting a
    photo lost the keyboard focus with its button. The DELETE is answered here: nothing is deleted."""
    blair = people["Tony Blair"]
    login(page, server, ADMIN_KEY)
    # Typed, then left in the same moment: the search's 300 ms are surely still to run.
    page.evaluate(
        """() => {
            const search = document.querySelector("input[type=search]");
            search.value = "tony";
            search.dispatchEvent(new Event("input", { bubbles: true }));
            location.hash = "#/versions";
        }"""
    )
    expect(page.get_by_role("heading", name="Versions")).to_be_visible()
    page.wait_for_timeout(600)  # past the search's 300 ms
    expect(page).to_have_url(re.compile(r"#/versions$"))

    def deleted(route: Route) -> None:
        if route.request.method == "DELETE":
            route.fulfill(status=204)
        else:
            route.continue_()

    page.route(f"**/api/v1/people/{blair['id']}/photos/*", deleted)
    open_page(page, server, f"#/people/{blair['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete photo 1 of Tony Blair").click()
    expect(page.locator("#notice")).to_contain_text("Photo 1 of Tony Blair deleted")
    expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_focused()


def test_a_long_name_takes_three_lines_in_the_people_grid(page: Page, server: Server) -> None:
    """A 200-character name wrapped to 17 lines and stretched every card of its row (a tester's); one
    without spaces widened the person's page."""
    name = " ".join(["Bartholomew"] * 16)[:200]
    person = server.register(name, image_files(LFW10 / "Tony_Blair")[:1], train=False)
    login(page, server, ADMIN_KEY)
    card = page.locator(f"a.person[href='#/people/{person['id']}'] .name")
    expect(card).to_have_attribute("title", name)  # the whole name on hover
    lines = card.evaluate("(node) => node.offsetHeight / parseFloat(getComputedStyle(node).lineHeight)")
    assert lines <= 3.05, lines
    page.set_viewport_size({"width": 375, "height": 800})
    assert (
        card.evaluate("(node) => node.offsetHeight / parseFloat(getComputedStyle(node).lineHeight)") <= 3.05
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, server, "long-name-phone")
    server.api("DELETE", f"/api/v1/people/{person['id']}")
    # Without spaces (198 characters), their own page was 1,781 px wide at 375 px (a tester's).
    name = "Maximiliana" * 18
    person = server.register(name, image_files(LFW10 / "Tony_Blair")[:1], train=False)
    open_page(page, server, f"#/people/{person['id']}")
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, server, "name-without-spaces-phone")
    server.api("DELETE", f"/api/v1/people/{person['id']}")


def test_searching_updates_the_list_in_place_and_keeps_the_register_form(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    """A new page per pause in typing lost the keys pressed while it loaded ("Goldie Han") and wiped
    a half-filled Register form; a search matching nobody said "nobody yet" (a tester's)."""
    login(page, server, ADMIN_KEY)
    page.get_by_label("Name", exact=True).fill("Half Filled")
    search = page.locator("#search")
    search.evaluate("(node) => { node.dataset.kept = 'yes'; }")
    search.press_sequentially("blair", delay=350)  # a pause past the search's 300 ms after each key
    expect(page.locator("#people .person")).to_have_count(1)
    expect(page.locator("#people .person")).to_contain_text("Tony Blair")
    expect(page.locator("#search")).to_have_attribute("data-kept", "yes")  # the same box, not a new one
    expect(page.locator("#search")).to_have_value("blair")
    expect(page.locator("#search")).to_be_focused()
    expect(page.locator("#new-name")).to_have_value("Half Filled")
    expect(page).to_have_url(re.compile(r"#/people\?q=blair$"))  # a reload shows the same list
    search.fill("zzzz")
    expect(page.locator(".pager")).to_contain_text("nobody named like “zzzz”")
    page.reload()
    expect(page.locator("#search")).to_have_value("zzzz")
    expect(page.locator(".pager")).to_contain_text("nobody named like “zzzz”")


def test_another_page_opens_at_its_top(page: Page, server: Server, people: dict[str, dict[str, Any]]) -> None:
    """A person opened from the bottom of People showed the bottom of their page ("Delete person"),
    their photos' verdicts out of view (a tester's)."""
    blair = people["Tony Blair"]
    page.set_viewport_size({"width": 375, "height": 700})
    login(page, server, ADMIN_KEY)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate("window.scrollY") > 0
    page.evaluate(f"location.hash = '#/people/{blair['id']}'")
    expect(page.get_by_role("heading", name="Tony Blair")).to_be_visible()
    expect(page.locator("#photos img").first).to_be_visible()
    assert page.evaluate("document.body.scrollHeight") > 700  # a page that could have stayed scrolled
    assert page.evaluate("window.scrollY") == 0


def test_a_photo_accepted_with_a_warning_is_marked(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    """A photo of someone else added to a person: its warning was green like a success and did not
    say which photo of the grid it meant (a tester's)."""
    blair = people["Tony Blair"]
    colin = image_files(LFW10 / "Colin_Powell")
    login(page, server, ADMIN_KEY)
    open_page(page, server, f"#/people/{blair['id']}")
    page.locator("#add-photos").set_input_files(str(colin[9]))
    note = page.locator(".uploads .note")
    expect(note).to_contain_text("Powell", timeout=30_000)
    expect(page.locator(".uploads .accepted")).to_have_text("accepted")
    flagged = page.locator("#photos figure.flagged")
    expect(flagged).to_have_count(1)
    expect(flagged.locator(".note")).to_contain_text("Just added")
    expect(flagged.locator("img")).to_be_visible()
    photos = server.api("GET", f"/api/v1/people/{blair['id']}/photos").json()
    newest = max(photo["id"] for photo in photos)
    try:
        assert flagged.get_attribute("data-photo-id") == str(newest)
        assert_accessible(page, "a photo accepted with a warning")
    finally:  # Colin's photo on Blair would change what the next tests see
        server.api("DELETE", f"/api/v1/people/{blair['id']}/photos/{newest}")
        server.wait_trained()


def test_every_page_says_while_changes_are_held_back(
    page: Page, server: Server, people: dict[str, dict[str, Any]]
) -> None:
    """Colin Powell registered again under another name: every version after it was held back, while
    each action said "a new version is being trained", and nothing but the Training and Versions
    pages said the changes were not in use (a tester's)."""
    colin = image_files(LFW10 / "Colin_Powell")
    assert server.wait_trained()["current_version"] is not None  # a version to hold the next one back
    again = server.register("Colin Again", colin[8:10])
    try:
        status = server.wait_trained()
        held = status["last_failure"]
        assert held is not None and held["message"].startswith("held back"), status
        assert held["version"] > status["current_version"]
        login(page, server, ADMIN_KEY)
        banner = page.locator("#held-back")
        said = f"Changes since version {status['current_version']} are not in use: version {held['version']}"
        for route in ("#/people", f"#/people/{again['id']}", "#/strangers", "#/try"):
            open_page(page, server, route)
            expect(banner).to_be_visible()
            expect(banner).to_contain_text(f"{said} was held back")
        assert_accessible(page, "a page while changes are held back")
        page.set_viewport_size({"width": 375, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        shot(page, server, "held-back-phone")
        # It names people: gone with the key (a reviewer's), back after logging in.
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(banner).to_be_hidden()
        login(page, server, ADMIN_KEY)
        expect(banner).to_be_visible()
    finally:
        # Deleting the second name is never held back: the next version is current (and the next
        # tests' versions are not held back either).
        server.api("DELETE", f"/api/v1/people/{again['id']}")
        server.wait_trained()
    # On the page that stayed open, too: it asks again while it is shown (it stayed for as long as
    # the visitor did: a tester's).
    expect(page).to_have_url(re.compile(r"#/people$"))
    expect(banner).to_be_hidden()
