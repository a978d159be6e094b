// faceforge dashboard: one page, plain JavaScript modules, every datum from /api/v1 with the key the
// user logged in with (kept in this tab's sessionStorage). No build step, nothing fetched from elsewhere.
//
// Shape: a page is one async function `(match, view) => nodes` registered in the route table at the
// bottom (`pages`); the router shows "Loading…" while it waits, replaces the whole content with the
// page's nodes (or an error page), and stops the previous page's timers (`view.onStop`).

import { faceActions, strangerPage, strangersPage } from "/ui/strangers.js";

const KEY_STORAGE = "faceforge-api-key";
const PAGE_SIZE = 24;
const VERSIONS_PAGE_SIZE = 10;
const PHOTO_SIZE = 480;  // px, longest side of the photos on a person's page (tiles are at most ~360 px wide)
const LOADING_DELAY_MS = 150;  // fast pages appear without a flash of "Loading…"
const main = document.getElementById("main");
const notice = document.getElementById("notice");
const noticeText = document.getElementById("notice-text");
const who = document.getElementById("who");
const heldBack = document.getElementById("held-back");
const logout = document.getElementById("logout");
const session = { key: sessionStorage.getItem(KEY_STORAGE), access: null, keysRequired: false };
let stopView = () => {};  // what the current page must stop when another one opens (polling timers)
let routeTicket = 0;  // the newest navigation; an older one that finishes late shows nothing
let keepNotice = false;  // the next navigation keeps the notice (it reports what led there)
let lastRegistration = null;  // {personId, photos}: every photo's verdict, shown on the new person's page
let loadingTimer = null;  // shows "Loading…" if the page has not drawn itself by then
let drawnHash = null;  // the address of the page drawn last

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

function headers(extra = {}, key = session.key) {
  return key ? { "X-API-Key": key, ...extra } : extra;
}

// `key`: another key than the session's (the login form tries one before keeping it).
async function api(path, { method = "GET", json, form, key = session.key } = {}) {
  const options = { method, headers: headers({}, key) };
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (form !== undefined) {
    options.body = form;
  }
  const response = await fetch(path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http_" + response.status, message: String(body) };
    throw new ApiError(response.status, error.code, error.message, body);
  }
  return body;
}

async function blobUrl(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw new ApiError(response.status, "http_" + response.status, "could not load " + path);
  return URL.createObjectURL(await response.blob());
}

// An image fetched with the key (an <img src> cannot send it). Its object URL is let go once the image
// is decoded: every thumbnail and photo tile kept its bytes in the tab for as long as the tab was open.
async function blobImage(path, attributes) {
  const url = await blobUrl(path);
  const release = () => URL.revokeObjectURL(url);
  return el("img", { ...attributes, src: url, onload: release, onerror: release });
}

// -- small DOM helpers ------------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...present(children));
  return node;
}

// Children without the absent ones (null, undefined, false), so no "null" is ever printed.
function present(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : String(c)));
}

function show(...nodes) {
  clearTimeout(loadingTimer);
  main.replaceChildren(...present(nodes));
}

// The notice sits at the top of the window (sticky), so it is seen wherever the action happened. It
// can be dismissed: a long warning covered a phone's screen until the next page (a new user's trial).
// Only the text is the live region: the button's name was read out with every notice.
function say(message, ok = false) {
  noticeText.textContent = message;
  notice.className = ok ? "notice ok" : "notice";
  notice.hidden = !message;
}
document.getElementById("dismiss").addEventListener("click", () => {
  say("");
  main.focus();  // the button went with the notice; focus goes on to the page, not back to the top
});

// Open another page and keep the notice that says what just happened.
function go(hash, message, ok = true) {
  say(message, ok);
  if (location.hash === hash) {
    route();
  } else {
    keepNotice = true;
    location.hash = hash;
  }
}

// The API's message, in words; its code only where there is no message (a home user read
// "(photos_rejected)" and "(not_an_image)" after every refusal: a tester's).
function describe(error) {
  if (!(error instanceof ApiError)) return String(error);
  return error.message ? error.message : `the server answered ${error.status} (${error.code})`;
}

function needsLogin(error) {
  return error instanceof ApiError && (error.status === 401 || (error.status === 403 && error.code === "keys_required"));
}

// The page a visitor asked for before the login page replaced it: logging in opens it (a link to one
// stranger or version, shared or bookmarked, led to the people list).
let afterLogin = null;

function toLogin() {
  if (location.hash && location.hash !== "#/login") afterLogin = location.hash;
  location.hash = "#/login";
}

function fail(error) {
  if (needsLogin(error)) {
    toLogin();
    return;
  }
  say(describe(error));
}

// An error shown where it happened (inside a page's own area, not in the notice).
function errorBox(error) {
  return el("p", { class: "notice inline", role: "alert", text: describe(error) });
}

const admin = () => session.access === "admin";
const plural = (count, word) => `${count} ${word}${count === 1 ? "" : "s"}`;
const percent = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %");
const number = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const bytes = (size) => (size >= 1e6 ? (size / 1e6).toFixed(1) + " MB" : (size / 1e3).toFixed(1) + " KB");
const when = (moment) => (moment ? new Date(moment).toLocaleString() : "–");
const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
const FACES_FOR_ADMINS = "Faces are shown to admin keys only: this read key sees names and figures.";

// A face box drawn over an image, in percent of the photo's own size. Its tag hangs from the side of
// the box nearer the photo's middle and goes above it in the photo's lower part, so it stays on the
// photo (the frame clips what would not).
function boxOverlay(face, width, height, label, unknown = false) {
  // Drawn as far as it lies on the photo: a detector's box may reach past its edge, and the tag
  // hanging from that side was clipped away (a face at the right edge of a group photo had none).
  const left = Math.max(0, face.x), top = Math.max(0, face.y);
  const box = { x: left, y: top, width: Math.min(width, face.x + face.width) - left, height: Math.min(height, face.y + face.height) - top };
  const style = `left:${(100 * box.x) / width}%;top:${(100 * box.y) / height}%;` +
    `width:${(100 * box.width) / width}%;height:${(100 * box.height) / height}%`;
  const end = box.x + box.width / 2 > width / 2 ? " end" : "";
  // Below the box when there is room, else above it, else (a face filling the photo) inside its top.
  const place = box.y + box.height <= 0.85 * height ? "" : box.y >= 0.08 * height ? " above" : " inside";
  return el("div", { class: unknown ? "box unknown" : "box", style }, label ? el("span", { class: `tag${end}${place}`, text: label }) : null);
}
// With more faces than this, boxes carry their number only; the list below says who each one is.
const NAMED_BOXES = 4;

// Tags carry "number name" while no two of them cover each other as drawn, else their number only
// (three faces side by side on a phone: "2 unknown" covered "1 unknown"). Judged on the drawn sizes,
// again whenever the photo's width changes (rotating a phone, resizing a window).
function fitTags(frame) {
  const tags = [...frame.querySelectorAll(".tag")];
  tags.forEach((tag) => { tag.textContent = tag.dataset.full; });
  const rects = tags.map((tag) => tag.getBoundingClientRect());
  const covered = rects.some((a, i) => rects.slice(i + 1).some((b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
  if (covered) tags.forEach((tag) => { tag.textContent = tag.dataset.short; });
}

// A button that opens the file chooser (keyboard: Tab to it, Enter or Space); the input itself stays
// hidden. `onFiles` gets the chosen files.
function filePicker({ id, text, multiple = false, onFiles }) {
  const input = el("input", { type: "file", id, accept: "image/*", multiple, hidden: true });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";  // choosing the same file again is a new choice
    if (files.length) onFiles(files);
  });
  const button = el("button", { type: "button", class: "choose", text, onclick: () => input.click() });
  return [button, input];
}

// A dashed area that takes dropped files, with a file picker inside.
function dropArea(prompt, picker, onFiles) {
  const zone = el("div", { class: "drop" }, el("p", { text: prompt }), ...picker);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) onFiles([...event.dataTransfer.files]);
  });
  return zone;
}

// -- login ----------------------------------------------------------------------------------------
async function checkAccess(key = session.key) {
  const access = await api("/api/v1/access", { key });
  session.keysRequired = access.keys_required;
  if (access.access === "none") {
    session.access = null;
    return false;
  }
  session.key = key;
  session.access = access.access;
  who.textContent = access.keys_required ? (admin() ? "admin key" : "read key") : "open on this computer";
  logout.hidden = !access.keys_required;
  return true;
}

// Why a key could not be tried: a character no HTTP header can carry (fetch refuses it before
// sending), the server out of reach, or its own error (503 while its database is away).
function loginProblem(key, error) {
  const foreign = [...key].find((c) => c.codePointAt(0) > 0xff);
  if (foreign) return `An API key has no characters such as “${foreign}”: check the key.`;
  if (error instanceof ApiError) return `The server could not check the key: ${describe(error)}.`;
  return `The server could not be reached (${error.message}).`;
}

function loginPage() {
  const input = el("input", { type: "password", id: "key", name: "key", autocomplete: "current-password", required: true,
    "aria-describedby": "login-problem" });
  const problem = el("p", { class: "notice inline", id: "login-problem", role: "alert", hidden: true });
  const button = el("button", { class: "primary", type: "submit", text: "Log in" });
  const refuse = (text) => {
    problem.textContent = text;
    problem.hidden = false;
    input.focus();
  };
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;  // one check at a time
    problem.hidden = true;
    let accepted;
    try {
      accepted = await checkAccess(key);
    } catch (error) {
      return refuse(loginProblem(key, error));
    } finally {
      button.disabled = false;
    }
    if (!accepted) return refuse("That key was not accepted.");
    sessionStorage.setItem(KEY_STORAGE, key);  // kept only once the server took it
    say("");
    location.hash = afterLogin || "#/people";
    afterLogin = null;
  } },
  el("h1", { text: "Log in" }),
  el("p", { class: "muted", text: "Enter an API key: a read key shows people, versions and recognition; an admin key can also change them." }),
  el("div", { class: "field" }, el("label", { for: "key", text: "API key" }), input), problem, button);
  show(form);
  input.focus();
}

// The skip link's "#main" would go through the router ("There is no page at #main"): it moves the
// focus to the page's content instead, leaving the address as it is.
document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

logout.addEventListener("click", () => {
  hideHeldBack();
  sessionStorage.removeItem(KEY_STORAGE);
  session.key = null;
  session.access = null;
  who.textContent = "";
  logout.hidden = true;
  location.hash = "#/login";
});

// -- paging ---------------------------------------------------------------------------------------
const MAX_OFFSET = 2147483647;  // the API's largest
// An offset from the address: a whole number from 0 ("abc" sent offset=NaN, which the API refuses).
const offsetOf = (params) => Math.min(MAX_OFFSET, Math.max(0, Math.floor(Number(params.get("offset"))) || 0));

// The page at `offset` (`load(offset)` fetches it), or the last page when there is nothing at it but
// there is before it: after deleting the only item of the last page it said "25–24 of 24". `link`
// writes a page's address, which replaces the one asked for. Answers [page, offset].
async function pageAt(offset, size, load, link) {
  const page = await load(offset);
  if (page.items.length || !page.total || !offset) return [page, offset];
  const last = Math.floor((page.total - 1) / size) * size;
  history.replaceState(null, "", link(last));
  return [await load(last), last];
}

// -- people ---------------------------------------------------------------------------------------
// A person's face (their thumbnail) for admin keys, their initials otherwise.
function face(person, className = "avatar") {
  const picture = el("div", { class: className, "aria-hidden": "true", text: initials(person.name) });
  if (admin() && person.photo_count !== 0) {
    blobImage(`/api/v1/people/${person.id}/thumbnail`, { class: className, alt: "" })
      .then((image) => picture.replaceWith(image)).catch(() => {});
  }
  return picture;
}

function personCard(person) {
  return el("a", { class: "person", href: `#/people/${person.id}` }, face(person),
    el("div", { class: "name", text: person.name, title: person.name }),
    el("div", { class: "muted", text: [person.position, plural(person.photo_count, "photo")].filter(Boolean).join(" · ") }));
}

// The search updates the list in place (and the address, for reload and sharing) without drawing the
// page again: a new page per pause in typing lost the keys pressed while it loaded, and wiped a
// half-filled Register form (a tester's).
async function peoplePage(match, view) {
  const params = new URLSearchParams(match[1] || "");
  const search = el("input", { type: "search", id: "search", value: params.get("q") || "", placeholder: "Search by name", "aria-label": "Search people by name" });
  const grid = el("div", { class: "grid", id: "people" });
  const pager = el("div", { class: "pager", "aria-live": "polite" });  // the count, said as it changes
  let asked = 0;  // the newest search: an older one's answer arriving later is dropped
  async function load(wanted, query) {
    const ticket = ++asked;
    const link = (start) => `#/people?offset=${start}` + (query ? `&q=${encodeURIComponent(query)}` : "");
    let page, offset;
    try {
      [page, offset] = await pageAt(wanted, PAGE_SIZE,
        (start) => api(`/api/v1/people?offset=${start}&limit=${PAGE_SIZE}` + (query ? `&q=${encodeURIComponent(query)}` : "")), link);
    } catch (error) {
      if (ticket !== asked || !view.alive()) return;  // a newer search, or another page, is shown
      throw error;
    }
    if (ticket !== asked || !view.alive()) return;
    const none = query ? `nobody named like “${query}”` : "nobody yet";
    grid.replaceChildren(...page.items.map(personCard));
    pager.replaceChildren(...present([
      el("span", { class: "muted", text: page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : none }),
      offset > 0 ? el("a", { class: "button", href: link(Math.max(0, offset - PAGE_SIZE)), text: "Previous" }) : null,
      offset + page.items.length < page.total ? el("a", { class: "button", href: link(offset + PAGE_SIZE), text: "Next" }) : null]));
  }
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const query = search.value.trim();
      history.replaceState(null, "", query ? `#/people?q=${encodeURIComponent(query)}` : "#/people");
      load(0, query).catch((error) => (needsLogin(error) ? fail(error) : pager.replaceChildren(errorBox(error))));
    }, 300);
  });
  // Typing, then leaving within 300 ms: the search took the visitor back to People.
  view.onStop(() => clearTimeout(timer));
  await load(offsetOf(params), search.value.trim());
  return [el("h1", { text: "People" }), admin() ? null : el("p", { class: "muted", id: "faces-note", text: FACES_FOR_ADMINS }),
    el("div", { class: "field" }, search), grid, pager, admin() ? registerForm() : null];
}

function verdictList(verdicts) {
  return el("ul", { class: "uploads" }, verdicts.map((v) => el("li", {},
    el("span", { text: v.filename || `photo ${v.index + 1}` }),
    el("span", { class: v.verdict === "accepted" ? "accepted" : "rejected", text: v.verdict }),
    v.message ? el("span", { class: "muted", text: v.message }) : null)));
}

function registerForm() {
  const result = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "card", id: "register", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const button = form.querySelector("button");
    button.disabled = true;
    // Said while it uploads and is analysed: many photos on a slow line took long with only a grey
    // button to show for it (a tester's).
    const sending = data.getAll("photos").filter((file) => file.size || file.name).length;
    result.replaceChildren(el("p", { class: "muted", id: "registering", text: sending ? `Uploading and checking ${plural(sending, "photo")}…` : "Registering…" }));
    try {
      const person = await api("/api/v1/people", { method: "POST", form: data });
      const accepted = person.photos.filter((p) => p.verdict === "accepted").length;
      lastRegistration = { personId: person.id, photos: person.photos };
      const photos = person.photos.length ? `${accepted} of ${plural(person.photos.length, "photo")} accepted` : "no photos yet";
      go(`#/people/${person.id}`, `${person.name} registered: ${photos}.` + (person.training ? " A new version is being trained." : ""));
    } catch (error) {
      if (needsLogin(error)) return fail(error);
      const verdicts = error instanceof ApiError && error.body && error.body.error && error.body.error.photos;
      result.replaceChildren(errorBox(error), ...(verdicts ? [verdictList(verdicts)] : []));  // a null child is printed "null"
    } finally {
      button.disabled = false;
    }
  } },
  el("h2", { text: "Register a person" }),
  el("div", { class: "field" }, el("label", { for: "new-name", text: "Name" }), el("input", { type: "text", id: "new-name", name: "name", required: true, maxlength: 200 })),
  el("div", { class: "field" }, el("label", { for: "new-position", text: "Position (optional)" }), el("input", { type: "text", id: "new-position", name: "position", maxlength: 200 })),
  el("div", { class: "field" }, el("label", { for: "new-photos", text: "Photos (one face each)" }), el("input", { type: "file", id: "new-photos", name: "photos", accept: "image/*", multiple: true })),
  el("button", { class: "primary", type: "submit", text: "Register" }), result);
  return form;
}

function uploadPhoto(url, file, row) {
  // One photo per request, so each gets its own progress bar and verdict. `url` takes multipart
  // `photos` and answers with their verdicts (a person's photos, a stranger's).
  return new Promise((resolve) => {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `uploading ${file.name}` });
    const verdict = el("span", { text: "uploading" });
    row.replaceChildren(el("span", { text: file.name }), bar, verdict);
    let flagged = null;
    const request = new XMLHttpRequest();
    request.open("POST", url);
    if (session.key) request.setRequestHeader("X-API-Key", session.key);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = (100 * event.loaded) / event.total;
    });
    request.addEventListener("load", () => {
      bar.value = 100;
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { body = null; }
      const verdicts = request.status === 201 ? body.photos : body && body.error && body.error.photos;
      const first = verdicts && verdicts[0];
      if (first && first.verdict === "accepted" && first.message) {
        // Accepted with a warning (another person's face, a stranger's): amber, not a success's
        // green, and the photo is marked in the grid once it is drawn again (a tester's).
        verdict.className = "accepted";
        verdict.textContent = "accepted";
        verdict.after(el("span", { class: "note", text: first.message }));
        flagged = { photoId: first.photo_id, message: first.message };
      } else if (first) {
        verdict.className = first.verdict === "accepted" ? "accepted" : "rejected";
        verdict.textContent = first.verdict + (first.message ? `: ${first.message}` : "");
      } else {
        verdict.className = "rejected";
        verdict.textContent = body && body.error ? body.error.message : `failed (${request.status})`;
      }
      resolve(flagged);
    });
    request.addEventListener("error", () => {
      verdict.className = "rejected";
      verdict.textContent = "network error";
      resolve();
    });
    const form = new FormData();
    form.append("photos", file, file.name);
    request.send(form);
  });
}

function addPhotos(url, onDone) {
  const list = el("ul", { class: "uploads", "aria-live": "polite" });
  async function send(files) {
    const rows = files.map((file) => [file, el("li")]);
    list.replaceChildren(...rows.map(([, row]) => row));
    const flagged = [];
    for (const [file, row] of rows) {
      const warning = await uploadPhoto(url, file, row);
      if (warning) flagged.push(warning);
    }
    await onDone();
    for (const { photoId, message } of flagged) {
      const tile = document.querySelector(`figure.photo[data-photo-id="${photoId}"]`);
      if (!tile) continue;
      tile.classList.add("flagged");
      tile.querySelector("figcaption").after(el("p", { class: "note", text: `Just added: ${message}` }));
    }
  }
  const picker = filePicker({ id: "add-photos", text: "Choose photos", multiple: true, onFiles: send });
  return el("section", { class: "card" }, el("h2", { text: "Add photos" }), dropArea("Drop photos here, or", picker, send), list);
}

function photoTile(person, photo, position, onDeleted) {
  const frame = el("div", { class: "frame" });
  const tile = el("figure", { class: "photo", "data-photo-id": photo.id }, frame,
    el("figcaption", { class: "muted" }, `accepted · face ${Math.round(photo.box.width)}×${Math.round(photo.box.height)} px · score ${number(photo.score, 2)}`));
  if (!admin()) {
    frame.append(el("div", { class: "avatar", "aria-hidden": "true", text: initials(person.name) }));
    return tile;
  }
  // A copy sized for the tile (the original may be megabytes); the box is in percent, so it fits any size.
  blobImage(`/api/v1/people/${person.id}/photos/${photo.id}/file?size=${PHOTO_SIZE}`, { alt: `photo ${position} of ${person.name}` })
    .then((image) => frame.prepend(image))
    .catch(() => frame.prepend(el("p", { class: "muted", text: "could not load the photo" })));
  frame.append(boxOverlay(photo.box, photo.width, photo.height, null));
  const remove = el("button", { class: "danger", type: "button", text: "Delete photo", "aria-label": `Delete photo ${position} of ${person.name}`,
    onclick: async () => {
      if (!confirm(`Delete photo ${position} of ${person.name}?`)) return;
      try {
        await api(`/api/v1/people/${person.id}/photos/${photo.id}`, { method: "DELETE" });
        say(`Photo ${position} of ${person.name} deleted; a new version is being trained.`, true);
      } catch (error) { fail(error); }
      onDeleted();  // redrawn either way: after a 404 (deleted elsewhere meanwhile) the grid was stale
    } });
  tile.append(remove);
  return tile;
}

const DUPLICATE_KINDS = { person: "registered twice?", photo: "a photo may be filed under the wrong person" };

function duplicatesCard(person) {
  const found = person.suspected_duplicates;
  return el("section", { class: "card", id: "duplicates" }, el("h2", { text: "Maybe the same person" }),
    el("p", { class: "muted", text: `Found by version ${found[0].version}: their faces are as alike as one person's photos.` }),
    el("ul", { class: "choices" }, found.map((d) => el("li", {},
      face({ id: d.person_id, name: d.name }, "avatar small"),
      el("span", {}, el("a", { href: `#/people/${d.person_id}`, text: d.name }),
        ` · similarity ${number(d.similarity)} · ${DUPLICATE_KINDS[d.kind] || d.kind}`),
      admin() && d.kind === "person" ? mergeButton(person, { id: d.person_id, name: d.name }) : null))));
}

function mergeButton(person, other) {
  return el("button", { type: "button", class: "merge", text: `Merge ${other.name} into ${person.name}`, onclick: async () => {
    const photos = other.photo_count === undefined ? "every photo" : `the ${plural(other.photo_count, "photo")}`;
    const question = `Move ${photos} of ${other.name} (person ${other.id}) to ${person.name} (person ${person.id}), ` +
      `then delete ${other.name} (person ${other.id})?`;
    if (!confirm(question)) return;
    try {
      await api(`/api/v1/people/${person.id}/merge`, { method: "POST", json: { other_id: other.id } });
      go(`#/people/${person.id}`, `${other.name} merged into ${person.name}; a new version is being trained.`);
    } catch (error) { fail(error); }
  } });
}

// Pick the person to merge by name, with their face beside each match.
function mergePicker(person) {
  const choices = el("ul", { class: "choices", id: "merge-choices", "aria-live": "polite" });
  const search = el("input", { type: "search", id: "merge-search", autocomplete: "off" });
  let asked = 0;  // the newest search: an older one's answer arriving later is dropped
  async function find() {
    const query = search.value.trim();
    const mine = ++asked;
    if (!query) return choices.replaceChildren();
    try {
      const page = await api(`/api/v1/people?limit=8&q=${encodeURIComponent(query)}`);
      if (mine !== asked) return;  // "Jo"'s answer after "Johanna"'s listed Jo's people under Johanna
      const others = page.items.filter((other) => other.id !== person.id);
      choices.replaceChildren(...(others.length
        ? others.map((other) => el("li", {}, face(other, "avatar small"),
          el("span", { text: `${other.name} · person ${other.id} · ${plural(other.photo_count, "photo")}` }), mergeButton(person, other)))
        : [el("li", { class: "muted", text: `nobody else named like “${query}”` })]));
    } catch (error) { if (mine === asked) choices.replaceChildren(el("li", {}, errorBox(error))); }
  }
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(find, 250); });
  return el("form", { onsubmit: (event) => { event.preventDefault(); find(); } },
    el("h3", { text: "Merge another person into this one" }),
    el("div", { class: "field" }, el("label", { for: "merge-search", text: "Find them by name" }), search), choices);
}

function editForm(person) {
  const name = el("input", { type: "text", id: "edit-name", value: person.name, required: true, maxlength: 200 });
  const position = el("input", { type: "text", id: "edit-position", value: person.position || "", maxlength: 200 });
  const save = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api(`/api/v1/people/${person.id}`, { method: "PATCH", json: { name: name.value, position: position.value || null } });
      go(`#/people/${person.id}`, "Saved.");
    } catch (error) { fail(error); }
  } },
  el("div", { class: "field" }, el("label", { for: "edit-name", text: "Name" }), name),
  el("div", { class: "field" }, el("label", { for: "edit-position", text: "Position" }), position),
  el("button", { class: "primary", type: "submit", text: "Save" }));
  const remove = el("button", { class: "danger", type: "button", id: "delete-person", text: "Delete person", onclick: async () => {
    if (!confirm(`Delete ${person.name} (person ${person.id}) and every photo of them?`)) return;
    try {
      await api(`/api/v1/people/${person.id}`, { method: "DELETE" });
      // Someone without photos is in no version: deleting them trains nothing (it said it did).
      go("#/people", `${person.name} deleted` + (person.photo_count ? "; a new version is being trained." : "."));
    } catch (error) { fail(error); }
  } });
  return el("section", { class: "card" }, el("h2", { text: "Edit" }), save, mergePicker(person), el("p", {}, remove));
}

async function personPage(match) {
  const id = Number(match[1]);
  const person = await api(`/api/v1/people/${id}`);
  const summary = el("p", { class: "muted" });
  const grid = el("div", { class: "photos", id: "photos" });
  async function refreshPhotos() {
    // After uploads only the photos change: the upload list keeps its verdicts.
    const [current, photos] = await Promise.all([api(`/api/v1/people/${id}`), api(`/api/v1/people/${id}/photos`)]);
    summary.textContent = [current.position, current.external_id ? `external id ${current.external_id}` : null,
      plural(current.photo_count, "photo")].filter(Boolean).join(" · ");
    // The deleted photo's button had the focus: keyboard users continue from the photos' heading.
    const again = () => refreshPhotos().catch(fail).then(() => photosHeading.focus({ preventScroll: true }));
    grid.replaceChildren(...photos.map((p, k) => photoTile(current, p, k + 1, again)));
  }
  const photosHeading = el("h2", { text: "Photos", tabindex: "-1" });
  await refreshPhotos();
  const registered = lastRegistration && lastRegistration.personId === id ? lastRegistration.photos : null;
  lastRegistration = null;
  return [el("p", {}, el("a", { href: "#/people", text: "← People" })), el("h1", { text: person.name }), summary,
    registered && registered.length ? el("section", { class: "card", id: "registered" }, el("h2", { text: "Photos sent when registering" }), verdictList(registered)) : null,
    person.suspected_duplicates.length ? duplicatesCard(person) : null,
    admin() ? [editForm(person), addPhotos(`/api/v1/people/${id}/photos`, () => refreshPhotos().catch(fail))] : null,
    photosHeading, admin() ? null : el("p", { class: "muted", id: "faces-note", text: FACES_FOR_ADMINS }), grid];
}

// -- try it ---------------------------------------------------------------------------------------
// One line per face found. `found` is {file, image, face, index, count, faces}: what a per-face action (e.g.
// "remember this stranger") needs to add its buttons to the line.
function faceLine(found) {
  const { face } = found;
  const label = face.match
    ? `${face.match.name} · similarity ${number(face.match.similarity)} · confidence ${percent(face.match.confidence)}`
    // Nearest first: candidates come ranked by confidence, which a strangers margin reorders.
    : `unknown · nearest ${[...face.candidates].sort((a, b) => b.similarity - a.similarity)
      .map((c) => `${c.name} ${number(c.similarity)}`).join(", ")}`;
  return el("li", { class: "face" }, el("span", { class: "face-number", text: `${found.index + 1}` }), label,
    face.candidates.length ? null : " (nobody enrolled)", faceActions(ui, found));
}

async function tryPage(match, view) {
  const result = el("div", { id: "result", "aria-live": "polite" });
  let tagsFitter = null;
  // Only the newest photo's answer is shown: after photo A then photo B, A's answer arriving last
  // replaced B's, and its buttons stored B's faces under A's names.
  let latest = 0;
  let shownUrl = null;  // the photo on show (an object URL holds the file until revoked)
  view.onStop(() => {
    tagsFitter?.disconnect();
    if (shownUrl) URL.revokeObjectURL(shownUrl);
  });
  async function identify(file) {
    const ticket = ++latest;
    say("");  // an older notice says nothing about this photo
    result.replaceChildren(el("p", { text: "Looking…" }));
    const form = new FormData();
    form.append("photo", file, file.name);
    form.append("top_k", "3");
    let url = null;
    try {
      const answer = await api("/api/v1/identify", { method: "POST", form });
      if (ticket !== latest || !view.alive()) return;
      url = URL.createObjectURL(file);
      const image = el("img", { src: url, alt: "the photo" });
      await image.decode();
      if (ticket !== latest || !view.alive()) return;
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = url;
      url = null;
      const frame = el("div", { class: "frame" }, image);
      answer.faces.forEach((face, index) => {
        const name = face.match ? face.match.name : "unknown";
        const label = answer.faces.length > NAMED_BOXES ? `${index + 1}` : `${index + 1} ${name}`;
        const box = boxOverlay(face.box, image.naturalWidth, image.naturalHeight, label, !face.match);
        Object.assign(box.firstChild.dataset, { full: label, short: `${index + 1}` });
        frame.append(box);
      });
      tagsFitter?.disconnect();  // the previous photo's frame is gone
      tagsFitter = new ResizeObserver(() => fitTags(frame));
      tagsFitter.observe(frame);
      result.replaceChildren(
        el("p", { class: "muted", text: `model version ${answer.version}: ${plural(answer.faces.length, "face")}` }),
        el("div", { class: "probe" }, frame),
        el("ul", { id: "faces" }, answer.faces.map((face, index) => faceLine({ file, image, face, index, count: answer.faces.length, faces: answer.faces }))));
    } catch (error) {
      if (ticket !== latest || !view.alive()) return;
      if (needsLogin(error)) return fail(error);
      result.replaceChildren(errorBox(error));
    } finally {
      if (url) URL.revokeObjectURL(url);  // not shown: a newer photo, an error, or another page
    }
  }
  const picker = filePicker({ id: "probe", text: "Choose a photo", onFiles: (files) => identify(files[0]) });
  return [el("h1", { text: "Try it" }), el("p", { class: "muted", text: "Who is in this photo, according to the current version?" }),
    dropArea("Drop a photo here, or", picker, (files) => identify(files[0])), result];
}

// -- training -------------------------------------------------------------------------------------
// What each stage of a training does, in words (the API reports identifiers).
const STAGES = {
  preparing_backbones: "Preparing the face models (first training only)",
  claimed: "Starting the training",
  loading: "Loading photos",
  fitting: "Fitting the recognizer",
  exporting: "Exporting model files",
  writing: "Writing model files",
  paused: "Waiting before publishing",
  publishing: "Publishing",
};
const stageWords = (stage) => (stage ? STAGES[stage] || stage.replaceAll("_", " ") : "–");
const STATES = { idle: "Idle", queued: "Waiting to start", running: "Training" };

// What an idle worker leaves current. No current version after earlier ones means the last training
// failed and cleared it (everyone deleted): say why, not "no version yet" as on a fresh install.
function idleWords(t) {
  if (t.current_version) return `version ${t.current_version} is current.`;
  if (!t.last_success && !t.last_failure) return "no version yet.";
  const failedLast = t.last_failure && (!t.last_success || t.last_failure.version > t.last_success.version);
  return failedLast ? `no version is current: ${(t.last_failure.message || "the last training failed").replace(/\.?$/, ".")}` : "no version is current.";
}

// A version held back (a suspected duplicate pair, fewer people recognised) keeps every change since
// from identify and the devices, while each action says a new version is being trained: every page
// says so while the newest version built is one held back (a tester made eleven such versions
// unaware). It names people: hidden without a key (the login page). Each page asks once; an answer
// that arrives after another page opened, or after logging out, is dropped.
// While shown, it is asked again every HELD_BACK_RECHECK_MS: a page left open (Training, or People
// after deleting the second name) kept it for as long as the visitor stayed (a tester's).
const HELD_BACK_RECHECK_MS = 5000;
let heldBackAsked = 0;
let heldBackTimer = null;
function hideHeldBack() {
  heldBackAsked++;
  clearTimeout(heldBackTimer);
  heldBack.hidden = true;
  heldBack.replaceChildren();
}
async function showHeldBack() {
  clearTimeout(heldBackTimer);
  const ticket = ++heldBackAsked;
  let t;
  try { t = await api("/api/v1/training"); } catch { return; }  // the page says what failed, if anything
  if (ticket !== heldBackAsked) return;
  const failure = t.last_failure;
  const newest = Math.max(t.current_version ?? 0, t.last_success ? t.last_success.version : 0);
  const held = Boolean(failure && (failure.message || "").startsWith("held back") && failure.version > newest);
  if (!held) return hideHeldBack();
  const since = t.current_version ? `since version ${t.current_version} ` : "";
  const text = `Changes ${since}are not in use: version ${failure.version} was ${failure.message.replace(/\.?$/, ".")} `;
  heldBack.hidden = false;
  heldBackTimer = setTimeout(showHeldBack, HELD_BACK_RECHECK_MS);
  // Written only when it changed: the status region was read out again on every page.
  if (heldBack.firstChild && heldBack.firstChild.textContent === text) return;
  heldBack.replaceChildren(text, el("a", { href: "#/versions", text: "See the versions" }));
}

async function trainingPage(match, view) {
  // Built once and updated in place: the live region speaks only when the state or stage changes.
  const figure = (label, id) => {
    const value = el("b", { id });
    return [el("div", { class: "figure" }, label, value), value];
  };
  const [stateBox, state] = figure("state", "training-state");
  const [stageBox, stage] = figure("stage", "training-stage");
  const [buildingBox, building] = figure("building version", "building-version");
  const [currentBox, current] = figure("current version", "current-version");
  const [builtBox, built] = figure("changes built", "changes-built");
  const status = el("p", { id: "training-status", role: "status", class: "message" });
  const bar = el("progress", { max: 1, value: 0, "aria-label": "training progress" });
  const barText = el("span");
  const progress = el("p", { hidden: true }, bar, " ", barText);
  const success = el("p"), failure = el("p", { class: "message" });
  const set = (node, text) => { if (node.textContent !== String(text)) node.textContent = text; };
  const problem = el("div");
  async function refresh() {
    try {
      const t = await api("/api/v1/training");
      problem.replaceChildren();
      set(state, STATES[t.state] || t.state);
      state.dataset.state = t.state;
      set(stage, stageWords(t.stage));
      set(building, t.building_version ?? "–");
      set(current, t.current_version ?? (t.last_success ? "none" : "none yet"));
      set(built, `${t.built} / ${t.requested}`);
      set(status, t.state === "running" ? `Training version ${t.building_version}: ${stageWords(t.stage)}.`
        : t.state === "queued" ? (t.trainer_running === false ? `A training is waiting, and ${t.message}.` : "A training is waiting to start.")
        : `Idle; ${idleWords(t)}`);
      progress.hidden = t.state !== "running";
      if (bar.value !== t.progress) bar.value = t.progress;
      set(barText, percent(t.progress));
      set(success, t.last_success ? `version ${t.last_success.version} at ${when(t.last_success.at)}` : "none yet");
      set(failure, t.last_failure ? `version ${t.last_failure.version} at ${when(t.last_failure.at)}: ${t.last_failure.message}` : "none");
    } catch (error) {
      if (!view.alive()) return;  // an answer after the visitor left: not a reason to go to the login
      if (needsLogin(error)) return fail(error);
      if (!problem.firstChild || problem.textContent !== describe(error)) problem.replaceChildren(errorBox(error));
    }
  }
  // Each look a second after the last answer, never two at once: polled every second whatever, a slow
  // answer (SQLite busy with a training) arrived after a newer one and moved the bar backwards.
  let timer = null;
  async function follow() {
    await refresh();
    if (view.alive()) timer = setTimeout(follow, 1000);
  }
  await refresh();
  timer = setTimeout(follow, 1000);
  view.onStop(() => clearTimeout(timer));
  return [el("h1", { text: "Training" }), el("p", { class: "muted", text: "Every change to people or photos trains a new version; this page follows it live." }),
    problem, status, el("div", { id: "training", class: "figures" }, stateBox, stageBox, buildingBox, currentBox, builtBox), progress,
    el("h2", { text: "Last success" }), success, el("h2", { text: "Last failure or version held back" }), failure];
}

// -- versions -------------------------------------------------------------------------------------
// The file through the key (a plain link cannot send it), saved under its name. The button waits while it
// downloads (a model is up to ~110 MB: a second click fetched it twice), and the bytes are let go once
// the save has started (they stayed in the tab's memory, one copy per click).
async function download(button, version, name) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Downloading…";
  try {
    const url = await blobUrl(`/api/v1/models/${version}/files/${encodeURIComponent(name)}`);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  } catch (error) { fail(error); } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

const REPLACED_BY_NEXT_TRAINING = "The next training (any change to people or photos) builds a new version, which becomes current unless it is held back (its status then says why).";

function filesTable(v) {
  const files = Object.entries(v.files || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!files.length) return null;
  // On a phone each file is a small block (name, size, checksum, button) instead of a table row.
  return el("details", {}, el("summary", { text: plural(files.length, "file") }),
    el("table", { class: "files" },
      el("thead", {}, el("tr", {}, el("th", { text: "file" }), el("th", { text: "size" }), el("th", { text: "sha256" }), el("th", {}, el("span", { class: "visually-hidden", text: "download" })))),
      el("tbody", {}, files.map(([name, info]) => el("tr", {},
        el("td", { class: "file-name" }, el("code", { text: name })), el("td", { text: bytes(info.size) }),
        el("td", { class: "sha" }, el("code", { title: info.sha256, text: info.sha256 })),
        el("td", {}, el("button", { type: "button", text: "Download", "aria-label": `Download ${name} of version ${v.version}`, onclick: (event) => download(event.currentTarget, v.version, name) })))))));
}

function versionCard(v, newestReady) {
  const metrics = v.metrics || {};
  const activate = async () => {
    // A change every device notices at its next check, so asked first (one click did it before).
    if (!confirm(`Make version ${v.version} current? Identify and every device switch to it. ${REPLACED_BY_NEXT_TRAINING}`)) return;
    try {
      await api(`/api/v1/models/${v.version}/activate`, { method: "POST" });
      go(location.hash, `Version ${v.version} is now current. ${REPLACED_BY_NEXT_TRAINING}`);
    } catch (error) { fail(error); }
  };
  const heldBack = v.is_current && newestReady !== null && newestReady > v.version;
  // A version naming people deleted since cannot be made current (the server answers 409): no
  // button that leads to that refusal, but why.
  const gone = v.deleted_people || [];
  return el("section", { class: "card version", id: `version-${v.version}` },
    el("div", { class: "row" },
      el("h2", { text: `Version ${v.version}` }),
      el("span", { class: `status-${v.status}`, text: v.status }),
      v.is_current ? el("span", { class: "badge", text: "current" }) : null,
      admin() && v.status === "ready" && !v.is_current && !gone.length ? el("button", { type: "button", class: "activate", text: "Make current", "aria-label": `Make current: version ${v.version}`, onclick: activate }) : null,
      v.status === "ready" ? el("a", { href: `#/versions/${v.version}`, text: "Quality", "aria-label": `Quality of version ${v.version}` }) : null),
    heldBack ? el("p", { class: "note", text: `Made current by hand (version ${newestReady} is newer). ${REPLACED_BY_NEXT_TRAINING}` }) : null,
    gone.length && !v.is_current ? el("p", { class: "muted deleted-people", text: `Names ${gone.length === 1 ? "1 person" : `${gone.length} people`} deleted or merged since (id ${gone.slice(0, 5).join(", ")}${gone.length > 5 ? ", …" : ""}): it cannot be made current again, and its files are no longer served.` }) : null,
    v.status_message ? el("p", { class: "muted", text: v.status_message }) : null,
    el("div", { class: "figures" },
      // These come from the version's manifest: a building, failed or pruned version has none.
      v.status === "ready" ? [
        el("div", { class: "figure" }, "people", el("b", { text: v.people.length })),
        el("div", { class: "figure" }, "threshold", el("b", { text: number(v.threshold) })),
        el("div", { class: "figure" }, "held-out accepted", el("b", { text: percent(metrics.accept_rate) })),
        el("div", { class: "figure" }, "held-out top-1", el("b", { text: percent(metrics.top1) }))] : null,
      el("div", { class: "figure" }, "built", el("b", { text: when(v.finished_at || v.created_at) }))),
    // Only a ready version's files exist: a pruned or failed one's are gone (or were never written).
    // Nor those of a version naming people deleted since: the server refuses them (410).
    v.status === "ready" && !(gone.length && !v.is_current) ? filesTable(v) : null);
}

async function versionsPage(match) {
  const params = new URLSearchParams(match[1] || "");
  // The API pages versions (at most 500 at a time); an offset past the end shows none, with "Newer".
  const limit = Math.min(500, Math.max(1, Math.floor(Number(params.get("limit")) || VERSIONS_PAGE_SIZE)));
  const offset = Math.min(2147483647, Math.max(0, Math.floor(Number(params.get("offset")) || 0)));
  const [list, newest] = await Promise.all([
    api(`/api/v1/models?offset=${offset}&limit=${limit}`), api("/api/v1/models?status=ready&limit=50")]);
  // A newer version that was held back was never current, so it does not make the current one a
  // version made current by hand: the newest ready version that was not held back does.
  const latest = newest.items.find((v) => !(v.status_message || "").startsWith("held back"));
  const newestReady = latest ? latest.version : null;
  const shown = list.items;
  const link = (start) => `#/versions?offset=${start}` + (params.has("limit") ? `&limit=${limit}` : "");
  const pager = el("nav", { class: "pager", "aria-label": "Versions pages" },
    el("span", { class: "muted", text: shown.length ? `${offset + 1}–${offset + shown.length} of ${list.total}` : `none of ${list.total} here` }),
    offset > 0 ? el("a", { class: "button", href: link(Math.max(0, Math.min(offset, list.total) - limit)), text: "Newer" }) : null,
    offset + shown.length < list.total ? el("a", { class: "button", href: link(offset + limit), text: "Older" }) : null);
  return [el("h1", { text: "Versions" }),
    admin() && list.total ? el("p", { class: "muted", text: `Make current serves an older version again. ${REPLACED_BY_NEXT_TRAINING}` }) : null,
    list.total ? [el("div", { id: "versions" }, shown.map((v) => versionCard(v, newestReady))), pager]
      : el("p", { text: "No version yet: register people with photos." })];
}

// Plots drawn as SVG from the version's stored quality figures, at the width they are shown at (one
// SVG unit is one CSS pixel, so their text stays readable on a phone).
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function plotWidth() {
  const style = getComputedStyle(main);
  const inner = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
  return Math.round(Math.max(280, Math.min(760, inner)));
}

// Ticks at a round step (1, 2, 2.5 or 5 times a power of ten) within [low, high], about `count` steps
// apart: dividing the range evenly labelled axes 6, 11, 17, 22, 28 % or 20, 36, 52, 68, 84 %.
// Returns the values and the step, whose decimals the labels show (a 2.5 % step labelled 0.3 %).
function roundTicks(low, high, count) {
  const wanted = (high - low) / count;
  if (!(wanted > 0)) return [[low], 1];
  const power = 10 ** Math.floor(Math.log10(wanted));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= wanted * 0.999);
  const values = [];
  for (let k = Math.ceil(low / step - 1e-9); k * step <= high + 1e-9 * step; k++) values.push(k * step);
  return [values, step];
}
// The decimals that write `x` exactly (up to 6): a step of 0.025 needs 3.
const decimalsFor = (x) => [0, 1, 2, 3, 4, 5, 6].find((d) => Math.abs(x * 10 ** d - Math.round(x * 10 ** d)) < 1e-6) ?? 6;

// axes: {x: [low, high], y: [low, high]} as drawn; ticks are labelled with `xText` / `yText`.
function plotFrame(title, xLabel, yLabel, axes, { xText, yText, legend = [] }) {
  const W = plotWidth();
  const narrow = W < 480;
  const legendRows = legend.length;
  const [L, R, T, B] = [narrow ? 54 : 60, 24, 30 + 16 * legendRows, 46];
  const H = Math.round(Math.max(260, Math.min(380, W * 0.56))) + 16 * legendRows;
  const [xs, ys] = [axes.x, axes.y];
  const x = (v) => L + ((v - xs[0]) / (xs[1] - xs[0])) * (W - L - R);
  const y = (v) => H - B - ((v - ys[0]) / (ys[1] - ys[0])) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot", role: "img", "aria-label": title });
  root.append(svg("text", { x: W / 2, y: 18, "text-anchor": "middle", "font-size": 14, "font-weight": 600 }, title));
  legend.forEach(([colour, text], k) => {
    root.append(svg("rect", { x: L, y: 28 + 16 * k, width: 10, height: 10, fill: colour }),
      svg("text", { x: L + 15, y: 37 + 16 * k, "font-size": 12 }, text));
  });
  const ticks = narrow ? 4 : 5;
  const [yValues, yStep] = roundTicks(...(axes.yTicks || ys), ticks);
  for (const yv of yValues) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(yv), y2: y(yv), stroke: "#e5e7eb" }));
    root.append(svg("text", { class: "tick-y", x: L - 5, y: y(yv) + 4, "text-anchor": "end", "font-size": 12 }, yText(yv, yStep)));
  }
  const [xValues, xStep] = roundTicks(...(axes.xTicks || xs), ticks);
  for (const xv of xValues) {
    root.append(svg("text", { class: "tick-x", x: x(xv), y: H - B + 17, "text-anchor": "middle", "font-size": 12 }, xText(xv, xStep)));
  }
  root.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#333" }), svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#333" }));
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", "font-size": 12 }, xLabel));
  root.append(svg("text", { x: 13, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12, transform: `rotate(-90 13 ${(T + H - B) / 2})` }, yLabel));
  return { root, x, y, W, H, T, B, L, R };
}

// A tick in percent, with as many decimals as its axis's step needs (whole percents mostly).
const asPercent = (v, step = 0.01) => (100 * v).toFixed(decimalsFor(100 * step)) + "%";

function histogramPlot(quality) {
  const { edges, genuine, impostor } = quality.histogram;
  const share = (counts) => { const total = counts.reduce((a, b) => a + b, 0) || 1; return counts.map((c) => c / total); };
  const g = share(genuine), i = share(impostor);
  const top = Math.max(0.01, ...g, ...i) * 1.1;
  const plot = plotFrame("Similarity of enrolled photos", "cosine similarity", "share of photos",
    { x: [edges[0], edges[edges.length - 1]], y: [0, top] },
    { xText: (v, step) => v.toFixed(Math.max(2, decimalsFor(step))), yText: asPercent, legend: [["#2a9d5c", "own person, held out"], ["#d1495b", "best other person"]] });
  for (const [shares, colour] of [[i, "#d1495b"], [g, "#2a9d5c"]]) {
    shares.forEach((s, k) => {
      if (s > 0) plot.root.append(svg("rect", { x: plot.x(edges[k]), y: plot.y(s), width: plot.x(edges[k + 1]) - plot.x(edges[k]), height: plot.y(0) - plot.y(s), fill: colour, "fill-opacity": 0.6 }));
    });
  }
  const tx = plot.x(quality.threshold);
  const leftSide = tx > (plot.L + plot.W) / 2;  // the label goes where there is room
  plot.root.append(svg("line", { x1: tx, x2: tx, y1: plot.T, y2: plot.H - plot.B, stroke: "#1d3557", "stroke-width": 2 }));
  plot.root.append(svg("text", { x: leftSide ? tx - 4 : tx + 4, y: plot.T + 12, "text-anchor": leftSide ? "end" : "start", "font-size": 12 }, `threshold ${quality.threshold.toFixed(3)}`));
  return plot.root;
}

// The axes span the data (with a margin, so a curve along 100 % is not hidden under the frame):
// when known people and strangers separate well the whole curve sits near 100 %.
function curveAxis(values) {
  const low = Math.max(0, Math.floor(Math.min(...values) * 20) / 20);
  const high = Math.min(1, Math.ceil(Math.max(...values) * 20) / 20);
  const [from, to] = high - low < 0.05 ? [Math.max(0, high - 0.05), high] : [low, high];
  const margin = (to - from) * 0.04;
  return { drawn: [from - margin, to + margin], ticks: [from, to] };
}

// `metrics`: the version's own held-out figures, which its dot and words are (the curve's point
// nearest its threshold said 87.4 % where the Versions page said 86.4 %: a tester's).
function curvePlot(quality, metrics = {}) {
  const points = quality.curve.filter((p) => p.known_accept !== null && p.unknown_reject !== null);
  const xAxis = curveAxis(points.length ? points.map((p) => p.unknown_reject) : [0, 1]);
  const yAxis = curveAxis(points.length ? points.map((p) => p.known_accept) : [0, 1]);
  const plot = plotFrame("Known accepted vs strangers rejected", "strangers rejected (estimated)", "known accepted",
    { x: xAxis.drawn, y: yAxis.drawn, xTicks: xAxis.ticks, yTicks: yAxis.ticks }, { xText: asPercent, yText: asPercent });
  if (!points.length) return plot.root;
  plot.root.append(svg("polyline", { class: "curve", points: points.map((p) => `${plot.x(p.unknown_reject)},${plot.y(p.known_accept)}`).join(" "), fill: "none", stroke: "#1d3557", "stroke-width": 2 }));
  const nearest = points.reduce((a, b) => (Math.abs(b.threshold - quality.threshold) < Math.abs(a.threshold - quality.threshold) ? b : a));
  const own = (key, fallback) => (typeof metrics[key] === "number" ? metrics[key] : fallback);
  const chosen = { known_accept: own("accept_rate", nearest.known_accept), unknown_reject: own("estimated_unknown_reject", nearest.unknown_reject) };
  const [cx, cy] = [plot.x(chosen.unknown_reject), plot.y(chosen.known_accept)];
  plot.root.append(svg("circle", { cx, cy, r: 5, fill: "#d1495b" }));
  const below = cy < (plot.T + plot.H - plot.B) / 2;
  const [first, second] = below ? [cy + 20, cy + 35] : [cy - 25, cy - 10];
  plot.root.append(svg("text", { x: cx - 8, y: first, "text-anchor": "end", "font-size": 12 }, `this version: ${percent(chosen.known_accept)} known,`),
    svg("text", { x: cx - 8, y: second, "text-anchor": "end", "font-size": 12 }, `${percent(chosen.unknown_reject)} strangers rejected`));
  return plot.root;
}

// The person registered later (higher id) is merged into the one registered first.
function mergeIntoFirst(duplicate) {
  const [first, second] = [0, 1].map((k) => ({ id: duplicate.people[k], name: duplicate.names[k] })).sort((a, b) => a.id - b.id);
  return mergeButton(first, second);
}

async function qualityPage(match, view) {
  const v = await api(`/api/v1/models/${Number(match[1])}`);
  if (v.status !== "ready") {
    // Pruned, failed or still building: no figures, and why (a pruned version's page said it was
    // "built by an older release" and listed no suspected duplicates, where it had three: a tester's).
    return [el("p", {}, el("a", { href: "#/versions", text: "← Versions" })), el("h1", { text: `Quality of version ${v.version}` }),
      el("p", { id: "no-figures", class: "message", text: (v.status_message ? `Version ${v.version}: ${v.status_message}` : `Version ${v.version} is ${v.status}`).replace(/\.?$/, ".") + " It has no quality figures to show." })];
  }
  const quality = (v.metrics || {}).quality;
  const labelId = (label) => { const m = /\((\d+)\)$/.exec(label); return m ? Number(m[1]) : null; };
  const duplicates = (v.metrics || {}).suspected_duplicates || [];
  // The plots are drawn for the page's width: draw them again when it changes much (a phone turned).
  const width = plotWidth();
  const redraw = () => { if (Math.abs(plotWidth() - width) > 40) route(); };
  window.addEventListener("resize", redraw);
  view.onStop(() => window.removeEventListener("resize", redraw));
  // The pairs are the version's; people merged or deleted since are no longer there to open or merge
  // (a tester's merge button answered "person 3 not found" after the merge it offered).
  const ids = [...new Set(duplicates.flatMap((d) => d.people))];
  // Only a 404 says gone: any other failure (a busy server) leaves the pair as the version lists it,
  // rather than the whole page, histograms included, as an error.
  const present = new Map(await Promise.all(ids.map((id) => api(`/api/v1/people/${id}`).then(() => [id, true],
    (error) => [id, !(error instanceof ApiError && error.status === 404)]))));
  const person = (id, name) => (present.get(id) ? el("a", { href: `#/people/${id}`, text: name }) : el("span", { text: name }));
  // By number: the server no longer names people deleted or merged since ("a deleted person").
  const gone = (d) => d.people.filter((id) => !present.get(id)).map((id) => `person ${id}`);
  return [el("p", {}, el("a", { href: "#/versions", text: "← Versions" })), el("h1", { text: `Quality of version ${v.version}` }),
    quality ? el("div", { class: "plots" }, histogramPlot(quality), curvePlot(quality, v.metrics),
      el("h2", { text: "People whose photos agree least" }),
      el("p", { class: "muted", text: "Lowest mean similarity of a person's photos to their other photos: candidates for better photos." }),
      el("ol", { id: "worst" }, quality.people.map((p) => el("li", {},
        labelId(p.label) ? el("a", { href: `#/people/${labelId(p.label)}`, text: p.label }) : p.label,
        ` · ${p.photos} photos · mean ${number(p.genuine_mean)} · lowest ${number(p.genuine_min)}`))))
      : el("p", { text: "This version has no quality figures (built by an older release)." }),
    el("h2", { text: "Suspected duplicates" }),
    duplicates.length ? el("ul", { id: "duplicates", class: "choices" }, duplicates.map((d) => el("li", {},
      el("span", {}, person(d.people[0], d.names[0]), " / ", person(d.people[1], d.names[1]),
        ` · similarity ${number(d.similarity)} · ${DUPLICATE_KINDS[d.kind] || d.kind}`,
        gone(d).length ? ` · ${gone(d).join(" and ")} no longer registered (merged or deleted)` : ""),
      admin() && d.kind === "person" && !gone(d).length ? mergeIntoFirst(d) : null)))
      : el("p", { text: "none" })];
}

// -- router ---------------------------------------------------------------------------------------
// What a page kept in a module of its own needs of this one (it gets them as one object).
const ui = { el, api, blobImage, show, say, go, fail, describe, errorBox, admin, ApiError, verdictList, face, plural,
  number, when, boxOverlay, addPhotos, offsetOf, pageAt, PHOTO_SIZE, filePicker, dropArea, needsLogin, FACES_FOR_ADMINS, route: () => route() };

// One entry per page: the hash it answers, the navigation section it belongs to, its function
// `(match, view) => nodes`: the router shows the nodes (a page that called `show` itself returns
// nothing); `view.onStop(f)` runs f when another page opens; `view.alive()` says whether it is still open.
const pages = [
  { pattern: /^#\/people\/(\d+)$/, section: "people", render: personPage },
  { pattern: /^#\/people(?:\?(.*))?$/, section: "people", render: peoplePage },
  { pattern: /^#\/strangers\/(\d+)$/, section: "strangers", render: (match) => strangerPage(ui, match) },
  { pattern: /^#\/strangers(?:\?(.*))?$/, section: "strangers", render: (match) => strangersPage(ui, match) },
  { pattern: /^#\/try$/, section: "try", render: tryPage },
  { pattern: /^#\/training$/, section: "training", render: trainingPage },
  { pattern: /^#\/versions\/(\d+)$/, section: "versions", render: qualityPage },
  { pattern: /^#\/versions(?:\?(.*))?$/, section: "versions", render: versionsPage },
  // Anything else (a mistyped or outdated link) says so where it was asked, rather than quietly
  // showing People as if the link had worked.
  { pattern: /^[\s\S]*$/, section: null, render: notFoundPage },
];

function notFoundPage(match) {
  let address = match[0];
  try { address = decodeURIComponent(address); } catch { /* a malformed escape: shown as typed */ }
  // The way back leads to the list of the section the address names (#/strangers/abc: Strangers).
  const named = /^#\/([a-z]+)/.exec(match[0]);
  const section = named && Object.hasOwn(SECTION_TITLES, named[1]) ? named[1] : "people";
  return [el("h1", { text: "Not found" }), el("p", {}, "There is no page at ", el("code", { text: address }), "."),
    el("p", {}, el("a", { href: `#/${section}`, text: `← ${SECTION_TITLES[section]}` }))];
}

const SECTION_TITLES = { people: "People", strangers: "Strangers", try: "Try it", training: "Training", versions: "Versions" };

// `section`: the navigation section of the page that failed, whose list the way back leads to.
function errorPage(error, section = "people") {
  const missing = error instanceof ApiError && error.status === 404;
  const back = SECTION_TITLES[section] ? section : "people";
  return [el("h1", { text: missing ? "Not found" : "Something went wrong" }), errorBox(error),
    el("p", {}, el("a", { href: `#/${back}`, text: `← ${SECTION_TITLES[back]}` }))];
}

async function route() {
  stopView();
  const ticket = ++routeTicket;
  const stops = [];
  stopView = () => stops.forEach((stop) => stop());
  const view = { alive: () => ticket === routeTicket, onStop: (stop) => stops.push(stop) };
  const hash = location.hash || "#/people";
  delete main.dataset.route;
  if (hash === "#/login") {
    main.removeAttribute("aria-busy");  // a page that needed a login led here while loading
    hideHeldBack();
    loginPage();
    return;
  }
  if (session.access === null && !(await checkAccess().catch(fail))) {
    toLogin();
    return;
  }
  if (hash === "#/") {  // the dashboard's bare address, written with its slash (no history entry)
    location.replace("#/people");
    return;
  }
  const page = pages.find((candidate) => candidate.pattern.test(hash));
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === page.section);
    if (link.dataset.nav === page.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // The previous page goes at once (nothing stale under a new page or an error); "Loading…" shows
  // when the new one takes a moment.
  main.setAttribute("aria-busy", "true");
  clearTimeout(loadingTimer);
  loadingTimer = setTimeout(() => view.alive() && show(el("p", { class: "loading", text: "Loading…" })), LOADING_DELAY_MS);
  let nodes;
  try {
    nodes = await page.render(page.pattern.exec(hash), view);
  } catch (error) {
    if (needsLogin(error)) {
      clearTimeout(loadingTimer);
      main.removeAttribute("aria-busy");
      fail(error);
      return;
    }
    nodes = errorPage(error, page.section);
  }
  if (!view.alive()) return;  // another navigation began meanwhile; its page is the one to show
  clearTimeout(loadingTimer);
  main.removeAttribute("aria-busy");
  main.dataset.route = hash;  // which page is drawn (tests wait for it)
  if (nodes !== undefined) show(...present([nodes]));
  // Another page opens at its top: the window kept the previous page's scroll, so a person registered
  // from the bottom of People opened at "Delete person", their photos' verdicts out of view (a
  // tester's). The same page drawn again after an action stays where the visitor was.
  if (hash !== drawnHash) window.scrollTo(0, 0);
  drawnHash = hash;
  showHeldBack();
  // Keyboard and screen-reader users start at the new page's content, not at a removed element.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", () => {
  if (!keepNotice) say("");
  keepNotice = false;
  route();
});
route();
