"""The dashboard's strangers in chromium against a real `faceforge serve`: the Strangers page (add a
stranger from photos, their face, delete), one stranger's page (their photos, more photos, delete),
and the Try-it face actions ("Add to <person>", "Not <name>: add as a stranger", a face cut out of
a group photo); a read key sees no faces or controls; logging in opens the page a link asked for.
At 375 and 1440 px nothing is wider than the screen; axe-core checks each page. People are set up
through the API; the browser does what a user would."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from PIL import Image
from playwright.sync_api import Page, Route, expect

from faceforge.core.dataset import image_files
from tests.conftest import FACES, LFW10
from tests.web.browser import (
    ADMIN_KEY,
    READ_KEY,
    TIMEOUT_MS,
    Server,
    assert_accessible,
    login,
    open_page,
    shot,
)

GROUP = FACES / "multi" / "face_recognition_obama_and_biden.jpg"
COLIN = image_files(LFW10 / "Colin_Powell")
WINONA = FACES / "lfw_dev" / "known" / "Winona_Ryder"
WINONA_AND_ANOTHER = WINONA / "Winona_Ryder_0007.jpg"  # a second face overlaps hers


def _counts(server: Server) -> tuple[int, int]:
    """(photos of everyone, strangers) as the API says, once every change is trained."""
    server.wait_trained()
    people = server.api("GET", "/api/v1/people").json()["items"]
    strangers = server.api("GET", "/api/v1/strangers").json()["total"]
    return sum(p["photo_count"] for p in people), strangers


def _current(server: Server) -> dict[str, Any]:
    server.wait_trained()
    current: dict[str, Any] = server.api("GET", "/api/v1/models/current").json()
    return current


def test_strangers_page_and_try_it_actions(page: Page, server: Server) -> None:
    server.register("Colin Powell", COLIN[:4], train=False)
    server.register(
        "Winona Ryder", [p for p in image_files(WINONA)[:5] if p != WINONA_AND_ANOTHER], train=False
    )
    server.register("Barack Obama", image_files(FACES / "face_recognition_examples" / "Barack_Obama"))
    first = _current(server)
    photos, _ = _counts(server)
    login(page, server, ADMIN_KEY)

    # The Strangers page, reached from the navigation: add one from three photos.
    page.get_by_role("navigation").get_by_role("link", name="Strangers").click()
    expect(page.locator(".pager")).to_contain_text("no strangers yet")
    page.get_by_label("Note (optional, never in a model)").fill("the mailman")
    page.get_by_label("Photos of the stranger").set_input_files(
        [str(p) for p in image_files(LFW10 / "Hugo_Chavez")[:3]]
    )
    page.get_by_role("button", name="Add stranger").click()
    expect(page.locator("#notice")).to_contain_text("3 of 3 photos accepted", timeout=TIMEOUT_MS)
    # A notice can be put away (it stayed over a phone's screen until the next page).
    page.get_by_role("button", name="Dismiss this notice").click()
    expect(page.locator("#notice")).to_be_hidden()
    expect(page.locator("#strangers .stranger")).to_have_count(1)
    expect(page.locator("#strangers .stranger img.avatar")).to_have_count(1)  # their face, for admins
    expect(page.locator("#strangers .stranger")).to_contain_text("the mailman")
    shot(page, server, "11-strangers")
    assert_accessible(page, "strangers")
    second = _current(server)
    assert second["version"] == first["version"] + 1  # the change trained a version

    # Try it: a named face offers both actions; adding it to its person stores the photo.
    open_page(page, server, "#/try")
    page.locator("#probe").set_input_files(str(COLIN[8]))
    face = page.locator("#faces li").first
    expect(face).to_contain_text("Colin Powell", timeout=TIMEOUT_MS)
    expect(face.get_by_role("button", name="Not Colin Powell: add as a stranger")).to_be_visible()
    shot(page, server, "12-try-it-actions")
    assert_accessible(page, "try it, with face actions")
    face.get_by_role("button", name="Add to Colin Powell").click()
    expect(face.locator(".accepted")).to_contain_text("Added to Colin Powell: accepted", timeout=TIMEOUT_MS)
    assert _counts(server) == (photos + 1, 1)

    # "Not Colin Powell": the face becomes a stranger.
    page.locator("#probe").set_input_files(str(COLIN[9]))
    face = page.locator("#faces li").first
    face.get_by_role("button", name="Not Colin Powell: add as a stranger").click()
    # It is Colin Powell's face: accepted, but said as a caution (it was a green success; then red,
    # as if it had failed), with the way to the stranger, whose deletion undoes it.
    said = face.locator(".warned")
    expect(said).to_contain_text(
        "Added as a stranger: accepted: this face looks like Colin Powell's", timeout=TIMEOUT_MS
    )
    stranger_link = said.get_by_role("link", name="Open the stranger")
    assert _counts(server) == (photos + 1, 2)
    newest = max(s["id"] for s in server.api("GET", "/api/v1/strangers").json()["items"])
    assert stranger_link.get_attribute("href") == f"#/strangers/{newest}"
    # A second click would store the same face as yet another stranger (a tester did it).
    expect(face.get_by_role("button", name="Not Colin Powell: add as a stranger")).to_be_disabled()
    expect(face.get_by_role("combobox")).to_be_disabled()  # and no other person to pick

    # A group photo: each face is cut out on its own, so it can be added alone.
    page.locator("#probe").set_input_files(str(GROUP))
    obama = page.locator("#faces li").filter(has_text="Barack Obama")
    other = page.locator("#faces li").filter(has_text="unknown").first
    obama.get_by_role("button", name="Add to Barack Obama").click()
    expect(obama.locator(".accepted")).to_contain_text("Added to Barack Obama: accepted", timeout=TIMEOUT_MS)
    expect(other.get_by_role("button", name="add as a stranger")).to_have_count(0)
    other.get_by_role("combobox").fill("Nobody Known")  # a search box with suggestions
    other.get_by_role("button", name="Add to Nobody Known").click()
    expect(other.locator(".rejected")).to_contain_text("Nobody is registered as", timeout=TIMEOUT_MS)
    assert _counts(server) == (photos + 2, 2)

    # Two faces close together (their boxes overlap), one of them hers, and "Not Winona Ryder": the
    # other face is greyed out of the cut, so hers goes alone. Cut out as it was, both were in it and
    # the stranger (who has no other photos to tell which face) was refused as several faces of
    # similar size, in a line that began "Added as a stranger" (a new user's trial).
    page.locator("#probe").set_input_files(str(WINONA_AND_ANOTHER))
    expect(page.locator("#faces li")).to_have_count(2, timeout=TIMEOUT_MS)
    not_her = page.get_by_role("button", name="Not Winona Ryder: add as a stranger")
    hers = page.locator("#faces li").filter(has=not_her)
    not_her.click()
    expect(hers.locator(".warned")).to_contain_text(
        "Added as a stranger: accepted: this face looks like Winona Ryder's", timeout=TIMEOUT_MS
    )
    assert _counts(server) == (photos + 2, 3)
    newest = max(s["id"] for s in server.api("GET", "/api/v1/strangers").json()["items"])
    assert server.api("DELETE", f"/api/v1/strangers/{newest}").status_code == 204
    assert _counts(server) == (photos + 2, 2)

    # Delete a stranger from the page; a version without them follows.
    before = _current(server)["version"]
    open_page(page, server, "#/strangers")
    expect(page.locator("#strangers .stranger")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete the mailman").click()
    expect(page.locator("#notice")).to_contain_text("the mailman deleted")
    expect(page.locator("#strangers .stranger")).to_have_count(1)
    assert _current(server)["version"] == before + 1

    # On a phone nothing is wider than the screen, a loose photo's 64-letter source included (it
    # widened the page to 1,201 px before it could wrap).
    loose = image_files(LFW10 / "Hugo_Chavez")[5]
    source = hashlib.sha256(loose.read_bytes()).hexdigest()  # what `faceforge import` names it by
    upload = [("photos", (loose.name, loose.read_bytes(), "image/jpeg"))]
    # And a note as long as a note may be: shown whole, it made the card three times its neighbour's
    # height, and the stranger's delete button six lines of red.
    note = "the courier who brings the parcels on weekdays, " * 4
    loose_stranger = server.api(
        "POST", "/api/v1/strangers?train=false", data={"source": source, "note": note.strip()}, files=upload
    ).json()
    page.set_viewport_size({"width": 375, "height": 800})
    open_page(page, server, "#/strangers")
    page.reload()  # the page was already on #/strangers: the new stranger shows on a fresh load
    expect(page.locator("#strangers .stranger")).to_have_count(2)
    # Its 64 digits ran over five lines of its card: shortened there, whole on hover.
    card = page.locator("#strangers .stranger").filter(has_text="from a photo")
    expect(card).to_contain_text(f"from a photo (sha256 {source[:12]}…)")
    expect(card).not_to_contain_text(source)
    assert card.locator(".muted").get_attribute("title") == source
    name = card.locator(".name")
    assert name.get_attribute("title") == note.strip()
    lines = name.evaluate(
        "(e) => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).fontSize)"
    )
    assert lines < 3.5, lines  # two lines of text at most (four lines measured 5.6 font sizes)
    expect(page.locator("#strangers .stranger img.avatar")).to_have_count(2, timeout=TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, server, "13-strangers-phone")
    open_page(page, server, f"#/strangers/{loose_stranger['id']}")
    delete = page.get_by_role("button", name=f"Delete this stranger: {note.strip()}")
    expect(delete).to_have_text("Delete this stranger")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    open_page(page, server, "#/try")
    page.locator("#probe").set_input_files(str(GROUP))
    expect(page.locator("#faces li").first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#faces .face-actions")).to_have_count(page.locator("#faces li").count())
    # A long name in "Add to <name>" wrapped the button to nine lines: one line, whole in its title.
    long_name = " ".join(["Bartholomew"] * 16)
    actions = page.locator("#faces .face-actions").first
    actions.locator("input").first.fill(long_name)
    add = actions.locator("button.add-to")
    expect(add).to_have_attribute("title", f"Add to {long_name}")
    height = add.evaluate(
        "(e) => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).fontSize)"
    )
    assert height < 3, height
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, server, "14-try-it-phone")
    actions.locator("input").first.fill("")
    # Faces at the photo's edges (their boxes reach past it): every number tag lies on the photo.
    page.locator("#probe").set_input_files(str(FACES / "multi" / "deepface_selfie-many-people.jpg"))
    expect(page.locator("#faces li").nth(4)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".frame .tag")).to_have_count(page.locator("#faces li").count())
    outside = page.evaluate(
        """() => { const frame = document.querySelector(".frame").getBoundingClientRect();
        return [...document.querySelectorAll(".frame .tag")]
          .map((tag) => [tag.textContent, tag.getBoundingClientRect()])
          .filter(([, r]) => r.left < frame.left - 0.5 || r.right > frame.right + 0.5
            || r.top < frame.top - 0.5 || r.bottom > frame.bottom + 0.5).map(([text]) => text); }"""
    )
    assert page.locator(".frame .tag").count() >= 5 and outside == [], outside

    # A read key: the list without faces or controls, and no actions on Try it.
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.get_by_role("button", name="Log out").click()
    login(page, server, READ_KEY)
    open_page(page, server, "#/strangers")
    expect(page.locator("#strangers .stranger")).to_have_count(2)
    expect(page.locator("#faces-note")).to_contain_text("admin keys only")
    expect(page.locator("#strangers img")).to_have_count(0)
    expect(page.locator("#add-stranger")).to_have_count(0)
    expect(page.locator("#strangers button")).to_have_count(0)
    assert_accessible(page, "strangers, read key")
    open_page(page, server, "#/try")
    page.locator("#probe").set_input_files(str(COLIN[8]))
    expect(page.locator("#faces li").first).to_contain_text("Colin Powell", timeout=TIMEOUT_MS)
    expect(page.locator("#faces .face-actions")).to_have_count(0)

    # The Strangers page says what the server says of an accepted photo: this face is an enrolled
    # person's (only the count of accepted photos was shown); and of a photo refused beside it, which
    # it did not name at all (a tester's).
    page.get_by_role("button", name="Log out").click()
    login(page, server, ADMIN_KEY)
    open_page(page, server, "#/strangers")
    coffee = FACES / "negatives" / "skimage_coffee.png"
    page.get_by_label("Photos of the stranger").set_input_files([str(COLIN[7]), str(coffee)])
    page.get_by_role("button", name="Add stranger").click()
    expect(page.locator("#notice")).to_contain_text(
        f"1 of 2 photos accepted; {COLIN[7].name}: this face looks like Colin Powell's", timeout=TIMEOUT_MS
    )
    expect(page.locator("#notice")).to_contain_text(f"{coffee.name}: rejected: ")


def test_one_strangers_page_shows_their_photos_takes_more_and_deletes_them(
    page: Page, server: Server
) -> None:
    """The list had no page for one stranger: their photos (which faces were kept), more photos of
    them, deleting them. A read key sees the page without faces or controls."""
    hugo = image_files(LFW10 / "Hugo_Chavez")
    upload = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in hugo[6:8]]
    added = server.api("POST", "/api/v1/strangers", data={"note": "the neighbour"}, files=upload).json()
    server.wait_trained()
    login(page, server, ADMIN_KEY)
    open_page(page, server, "#/strangers")
    page.get_by_role("link", name="the neighbour").click()
    expect(page).to_have_url(f"{server.url}/#/strangers/{added['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("the neighbour")
    expect(page.locator("#stranger-summary")).to_contain_text("2 photos")
    expect(page.locator("#photos img")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.locator("#photos .box")).to_have_count(2)  # the face kept from each photo
    expect(page.get_by_role("img", name="photo 1 of the neighbour")).to_be_visible()
    # The tiles show scaled copies (the stored photo may be megabytes).
    first = server.api("GET", f"/api/v1/strangers/{added['id']}").json()["photos"][0]
    scaled = server.api("GET", first["file_url"], params={"size": 64})
    assert scaled.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(scaled.content)).size) == 64

    # One more photo, with its verdict; the page then shows three.
    page.locator("#add-photos").set_input_files(str(hugo[8]))
    expect(page.locator(".uploads .accepted")).to_contain_text("accepted", timeout=TIMEOUT_MS)
    expect(page.locator("#photos img")).to_have_count(3, timeout=TIMEOUT_MS)
    assert server.api("GET", f"/api/v1/strangers/{added['id']}").json()["photo_count"] == 3
    assert_accessible(page, "one stranger")
    shot(page, server, "15-stranger")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, server, "16-stranger-phone")
    # A note without spaces (a file name, a URL) made the page 1,794 px wide: its "Delete" button.
    long_note = "Longnotewithoutspaces" * 9
    upload = [("photos", (hugo[9].name, hugo[9].read_bytes(), "image/jpeg"))]
    noted = server.api("POST", "/api/v1/strangers?train=false", data={"note": long_note}, files=upload)
    open_page(page, server, f"#/strangers/{noted.json()['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(long_note)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Their only photo goes with them, so it has no button of its own.
    expect(page.locator("#photos img")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.get_by_role("button", name="Delete photo")).to_have_count(0)
    expect(page.locator("#only-photo")).to_be_visible()
    server.api("DELETE", f"/api/v1/strangers/{noted.json()['id']}")
    page.set_viewport_size({"width": 1440, "height": 1000})

    # A read key: the same page, no faces, no controls.
    page.get_by_role("button", name="Log out").click()
    login(page, server, READ_KEY)
    open_page(page, server, f"#/strangers/{added['id']}")
    expect(page.locator("#stranger-summary")).to_contain_text("3 photos")
    expect(page.locator("#faces-note")).to_contain_text("admin keys only")
    expect(page.locator("#main img")).to_have_count(0)
    expect(page.locator("#main button")).to_have_count(0)
    assert_accessible(page, "one stranger, read key")

    # One photo deleted from their page (a face that was not theirs): two remain.
    page.get_by_role("button", name="Log out").click()
    login(page, server, ADMIN_KEY)
    open_page(page, server, f"#/strangers/{added['id']}")
    expect(page.locator("#photos img")).to_have_count(3, timeout=TIMEOUT_MS)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete photo 3 of the neighbour").click()
    expect(page.locator("#notice")).to_contain_text("Photo 3 of the neighbour deleted")
    expect(page.locator("#stranger-summary")).to_contain_text("2 photos")
    expect(page.locator("#photos img")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_focused()  # not lost with its button
    expect(page.locator("#only-photo")).to_be_hidden()
    assert server.api("GET", f"/api/v1/strangers/{added['id']}").json()["photo_count"] == 2

    # Deleted from their page: back on the list, which no longer has them.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this stranger: the neighbour").click()
    expect(page.locator("#notice")).to_contain_text("the neighbour deleted")
    expect(page).to_have_url(f"{server.url}/#/strangers")
    expect(page.locator(".pager")).to_be_visible()  # the list is drawn, not still loading
    expect(page.get_by_role("link", name="the neighbour")).to_have_count(0)
    # Their page is gone; the way back leads to the strangers, not to the people.
    server.expected_errors.add((f"/api/v1/strangers/{added['id']}", 404))
    open_page(page, server, f"#/strangers/{added['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("link", name="← Strangers")).to_be_visible()
    # So does a mistyped one's (it led to the people).
    open_page(page, server, "#/strangers/abc")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("link", name="← Strangers")).to_be_visible()
    server.wait_trained()


def test_logging_in_opens_the_page_that_was_asked_for(page: Page, server: Server) -> None:
    """A link to the strangers (shared, bookmarked) led to the login page, then to the people list.
    The form said nothing when the key could not be checked, and kept a key before it was accepted."""
    page.goto(server.url + "/#/strangers")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    kept = "() => sessionStorage.getItem('faceforge-api-key')"
    key, log_in, problem = (
        page.get_by_label("API key"),
        page.get_by_role("button", name="Log in"),
        page.get_by_role("alert"),
    )
    key.fill("not-a-key")
    log_in.click()
    expect(problem).to_have_text("That key was not accepted.")
    assert page.evaluate(kept) is None
    # A character no HTTP header carries: fetch refused to send it, and nothing was said.
    key.fill("ключ")
    log_in.click()
    expect(problem).to_contain_text("An API key has no characters such as “к”")
    assert page.evaluate(kept) is None
    # The server out of reach: the button waits for the answer, then the form says so.
    held: list[Route] = []
    page.route("**/api/v1/access", lambda route: held.append(route))
    key.fill(ADMIN_KEY)
    log_in.click()
    expect(log_in).to_be_disabled()
    for _ in range(TIMEOUT_MS // 50):  # bounded: a request that never comes fails, not hangs the suite
        if held:
            break
        page.wait_for_timeout(50)
    held[0].abort("aborted")  # as a dropped connection; the fixture flags any other failure
    expect(problem).to_contain_text("The server could not be reached")
    expect(log_in).to_be_enabled()
    assert page.evaluate(kept) is None
    page.unroute("**/api/v1/access")
    log_in.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Strangers")
    expect(page).to_have_url(f"{server.url}/#/strangers")
    assert page.evaluate(kept) == ADMIN_KEY

    # A key withdrawn meanwhile (401 on a page's data): the login page is not left marked busy.
    server.expected_errors.add(("/api/v1/people", 401))
    unauthorized = {"error": {"code": "unauthorized", "message": "invalid or missing API key"}}
    page.route("**/api/v1/people?*", lambda route: route.fulfill(status=401, json=unauthorized))
    page.goto(server.url + "/#/people")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#main")).not_to_have_attribute("aria-busy", "true")


def _answer(*matches: dict[str, Any] | None) -> dict[str, Any]:
    """An identify answer with one face per match (None: unknown), side by side on GROUP."""
    faces = [
        {
            "box": {"x": 300.0 + 500 * k, "y": 300.0, "width": 200.0, "height": 240.0},
            "score": 0.99,
            "match": match,
            "candidates": [match] if match else [],
        }
        for k, match in enumerate(matches)
    ]
    return {"version": 1, "faces": faces}


def _match(person: dict[str, Any]) -> dict[str, Any]:
    identity = {"person_id": person["id"], "name": person["name"], "position": None}
    return {**identity, "similarity": 0.8, "confidence": 0.99}


def test_try_it_shows_the_newest_photo_and_adds_to_the_right_person(page: Page, server: Server) -> None:
    """Photo A then photo B: A's answer arriving last replaced B's. "Add to <name>" looked the name up
    among the first 20 people whose names contain it: it filed a face matched to one John Smith under
    the other, and found nobody behind 20 John Smithsons. Identify's answers are set here (the
    network's faces do not matter), and the uploads are recorded rather than stored."""
    for k in range(1, 21):
        server.register(f"John Smithson {k}", [], train=False)
    smithson = server.register("John Smithson", [], train=False)
    first, second = (server.register("John Smith", [], train=False) for _ in range(2))
    held: list[Route] = []
    page.route("**/api/v1/identify", lambda route: held.append(route))
    posted: list[str] = []

    def photos(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        posted.append(route.request.url.split("/api/v1/people/")[1])
        route.fulfill(status=201, json={"photos": [{"index": 0, "verdict": "accepted", "message": None}]})

    page.route("**/api/v1/people/*/photos", photos)
    login(page, server, ADMIN_KEY)
    open_page(page, server, "#/try")
    page.locator("#probe").set_input_files(str(COLIN[8]))
    page.locator("#probe").set_input_files(str(GROUP))  # while the first one's answer is on its way
    for _ in range(TIMEOUT_MS // 50):
        if len(held) >= 2:
            break
        page.wait_for_timeout(50)
    late, newest = sorted(held, key=lambda r: GROUP.name.encode() in (r.request.post_data_buffer or b""))
    answer = _answer(_match(second), None, None)
    # Candidates come ranked by confidence, which a person's strangers margin reorders: under
    # "nearest", with similarities beside them, they read in similarity's order (a tester read
    # "nearest A 0.699, B 0.767, C 0.652" as a defect).
    answer["faces"][2]["candidates"] = [
        {**_match(first), "similarity": 0.699, "confidence": 0.3},
        {**_match(smithson), "similarity": 0.767, "confidence": 0.2},
        {**_match(second), "similarity": 0.652, "confidence": 0.1},
    ]
    newest.fulfill(json=answer)
    faces = page.locator("#faces li")
    expect(faces).to_have_count(3)
    expect(faces.nth(2)).to_contain_text(
        "unknown · nearest John Smithson 0.767, John Smith 0.699, John Smith 0.652"
    )
    late.fulfill(json=_answer({**_match(first), "name": "Late Answer"}))
    # What the late answer would draw, it draws once its photo is decoded (milliseconds): watched for
    # 3 s, so that a loaded machine's slow decode cannot hide it.
    for _ in range(30):
        page.wait_for_timeout(100)
        assert "Late Answer" not in page.locator("#result").inner_text()
    expect(faces).to_have_count(3)

    # The matched John Smith, by id.
    faces.nth(0).get_by_role("button", name="Add to John Smith").click()
    expect(faces.nth(0).locator(".accepted")).to_contain_text("Added to John Smith: accepted")
    assert posted == [f"{second['id']}/photos"]
    # A whole name behind 20 longer ones.
    faces.nth(1).get_by_role("combobox").fill("John Smithson")
    faces.nth(1).get_by_role("button", name="Add to John Smithson").click()
    expect(faces.nth(1).locator(".accepted")).to_contain_text("Added to John Smithson: accepted")
    assert posted[1:] == [f"{smithson['id']}/photos"]
    # Namesakes typed: the page asks which, and its list tells them apart by number.
    other = faces.nth(2)
    other.get_by_role("combobox").fill("John Smith")
    other.get_by_role("button", name="Add to John Smith").click()
    expect(other.locator(".rejected")).to_contain_text("2 people are registered as “John Smith”")
    choices = [f"John Smith (person {person['id']})" for person in (first, second)]
    expect(other.locator("datalist option")).to_have_count(2)
    assert other.locator("datalist option").evaluate_all("(all) => all.map((o) => o.value)") == choices
    other.get_by_role("combobox").fill(choices[0])
    other.get_by_role("button", name=f"Add to {choices[0]}").click()
    expect(other.locator(".accepted")).to_contain_text("Added to John Smith: accepted")
    assert posted[2:] == [f"{first['id']}/photos"]


def test_a_strangers_page_past_the_end_shows_the_last_one(page: Page, server: Server) -> None:
    """Deleting the only stranger of the last page left "25–24 of 24" on an empty page; an offset
    that is not a number was sent as offset=NaN (a 422)."""
    photo = image_files(LFW10 / "Hugo_Chavez")[4]
    upload = [("photos", (photo.name, photo.read_bytes(), "image/jpeg"))]
    server.api("POST", "/api/v1/strangers?train=false", data={"note": "past the end"}, files=upload)
    total = server.api("GET", "/api/v1/strangers").json()["total"]
    login(page, server, ADMIN_KEY)
    for asked in ("24", "abc"):
        open_page(page, server, f"#/strangers?offset={asked}")
        expect(page.locator(".pager")).to_contain_text(f"1–{total} of {total}")
        expect(page.locator("#strangers .stranger")).to_have_count(total)
