// faceforge dashboard: the strangers collection (people never to be named) and the Try-it face actions
// that feed it ("Not <name>: add as a stranger", "Add to <person>"). The page's helpers come from app.js
// as one `ui` object, so this module depends on nothing else. A page returns its nodes (app.js's shape).

const PAGE_SIZE = 24;
const NAME_PAGE = 500;  // the API's largest page: finding everyone under one name
// Around a face cut out of a photo with several faces: enough of the head that the detector finds it
// again on its own (the server analyses every upload afresh).
const CROP_MARGIN = 0.6;

const labelOf = (stranger) => stranger.note || `stranger ${stranger.id}`;
// Where a stranger came from. One imported from a loose photo is found again by its sha256, whose
// 64 digits say nothing to a person and ran over five lines on a phone: shortened, whole on hover.
const fromText = (source) => (!source ? null
  : /^[0-9a-f]{64}$/.test(source) ? `from a photo (sha256 ${source.slice(0, 12)}…)` : `from ${source}`);

// Deletes the stranger after asking; `then` runs once they are gone.
// Its accessible name holds its visible text (a screen reader user says what they see) and whom it deletes.
function deleteButton(ui, stranger, text, then) {
  const { el, api, fail } = ui;
  const label = labelOf(stranger);
  const name = text === "Delete" ? `Delete ${label}` : `${text}: ${label}`;
  return el("button", { class: "danger", type: "button", text, "aria-label": name, onclick: async () => {
    if (!confirm(`Delete ${label} and their photos? The next version no longer knows their face.`)) return;
    try {
      await api(`/api/v1/strangers/${stranger.id}`, { method: "DELETE" });
      then(`${label} deleted; a new version is being trained.`);
    } catch (error) { fail(error); }
  } });
}

function strangerCard(ui, stranger) {
  const { el, blobImage, go, plural } = ui;
  const label = labelOf(stranger);
  const picture = el("div", { class: "avatar", "aria-hidden": "true", text: "?" });
  const card = el("div", { class: "person stranger", id: `stranger-${stranger.id}` }, picture,
    // A long note is cut to two lines (whole on hover and on the stranger's page): shown whole, a
    // 200-letter note made its card three times its neighbours' height.
    el("a", { class: "name", href: `#/strangers/${stranger.id}`, text: label, title: label }),
    el("div", { class: "muted", title: stranger.source || "", text: [plural(stranger.photo_count, "photo"), fromText(stranger.source)].filter(Boolean).join(" · ") }));
  if (stranger.thumbnail_url) {
    blobImage(stranger.thumbnail_url, { class: "avatar", alt: "" }).then((image) => picture.replaceWith(image)).catch(() => {});
  }
  if (ui.admin()) card.append(deleteButton(ui, stranger, "Delete", (message) => go(location.hash, message)));
  return card;
}

// One stored photo: the face the server found in it, boxed (admins only: it is a face). `onDelete`:
// how the photo goes (absent for a stranger's only photo, which goes with the stranger).
function strangerPhoto(ui, label, photo, position, onDelete) {
  const { el, blobImage, boxOverlay, number } = ui;
  const frame = el("div", { class: "frame" });
  const tile = el("figure", { class: "photo", "data-photo-id": photo.id }, frame,
    el("figcaption", { class: "muted", text: `face ${Math.round(photo.box.width)}×${Math.round(photo.box.height)} px · score ${number(photo.score, 2)}` }));
  if (!photo.file_url) {
    frame.append(el("div", { class: "avatar", "aria-hidden": "true", text: "?" }));
    return tile;
  }
  // A copy sized for the tile, not the original (megabytes, fetched again after every upload).
  blobImage(`${photo.file_url}?size=${ui.PHOTO_SIZE}`, { alt: `photo ${position} of ${label}` })
    .then((image) => frame.prepend(image))
    .catch(() => frame.prepend(el("p", { class: "muted", text: "could not load the photo" })));
  frame.append(boxOverlay(photo.box, photo.width, photo.height, null));
  if (onDelete) {
    tile.append(el("button", { class: "danger", type: "button", text: "Delete photo", "aria-label": `Delete photo ${position} of ${label}`,
      onclick: () => confirm(`Delete photo ${position} of ${label}? The next version no longer uses this face.`) && onDelete() }));
  }
  return tile;
}

// One stranger: their photos, more of them, and deleting them.
export async function strangerPage(ui, match) {
  const { el, api, go, fail, say, plural, when, admin } = ui;
  const id = Number(match[1]);
  let stranger = await api(`/api/v1/strangers/${id}`);
  const label = labelOf(stranger);
  const summary = el("p", { class: "muted stranger", id: "stranger-summary" });
  const grid = el("div", { class: "photos", id: "photos" });
  const onlyPhoto = el("p", { class: "muted", id: "only-photo", text: "Their only photo goes with them: delete the stranger to forget them." });
  const draw = () => {
    onlyPhoto.hidden = !(admin() && stranger.photos.length === 1);
    summary.title = stranger.source || "";
    summary.textContent = [plural(stranger.photo_count, "photo"), fromText(stranger.source),
      `added ${when(stranger.created_at)}`].filter(Boolean).join(" · ");
    const deletable = admin() && stranger.photos.length > 1;
    grid.replaceChildren(...stranger.photos.map((photo, k) => strangerPhoto(ui, label, photo, k + 1,
      deletable ? () => deletePhoto(photo, k + 1) : null)));
  };
  const refresh = async () => { stranger = await api(`/api/v1/strangers/${id}`); draw(); };
  const deletePhoto = async (photo, position) => {
    try {
      await api(`/api/v1/strangers/${id}/photos/${photo.id}`, { method: "DELETE" });
      say(`Photo ${position} of ${label} deleted; a new version is being trained.`, true);
    } catch (error) { fail(error); }
    // Redrawn either way: after a 404 or 409 (another admin got there first) the grid was stale.
    await refresh().catch(fail);
    // The button that had focus is gone: keyboard users continue from the photos' heading.
    photosHeading.focus({ preventScroll: true });
  };
  const photosHeading = el("h2", { text: "Photos", tabindex: "-1" });
  draw();
  return [el("p", {}, el("a", { href: "#/strangers", text: "← Strangers" })), el("h1", { class: "stranger", text: label }), summary,
    el("p", { class: "muted", text: "Never named by any model: their faces teach each version to answer “unknown” for them." }),
    admin() ? [ui.addPhotos(`/api/v1/strangers/${id}/photos`, () => refresh().catch(fail)),
      el("p", { class: "stranger" }, deleteButton(ui, stranger, "Delete this stranger", (message) => go("#/strangers", message)))] : null,
    photosHeading, admin() ? null : el("p", { class: "muted", id: "faces-note", text: ui.FACES_FOR_ADMINS }), onlyPhoto, grid];
}

function addStrangerForm(ui) {
  const { el, api, go, fail, needsLogin, errorBox, ApiError, verdictList, plural } = ui;
  const result = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "card", id: "add-stranger", onsubmit: async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    result.replaceChildren();
    try {
      const stranger = await api("/api/v1/strangers", { method: "POST", form: new FormData(form) });
      const accepted = stranger.photos.filter((p) => p.verdict === "accepted").length;
      // What the server says about accepted photos too (a face that looks like an enrolled person's),
      // and each refused photo with why: a photo refused beside accepted ones was not named at all.
      const said = stranger.photos.filter((p) => p.verdict !== "accepted" || p.message)
        .map((p) => ` ${p.filename || `Photo ${p.index + 1}`}: ${p.verdict === "accepted" ? "" : `${p.verdict}: `}${p.message || p.reasons.join(", ")}.`)
        .join("");
      // After a photo's own sentence, the next starts with a capital ("…if it is them. a new version").
      const training = said ? " A new version is being trained." : " a new version is being trained.";
      go("#/strangers", `Stranger added: ${accepted} of ${plural(stranger.photos.length, "photo")} accepted;${said}${training}`, !said);
    } catch (error) {
      if (needsLogin(error)) return fail(error);
      const verdicts = error instanceof ApiError && error.body && error.body.error && error.body.error.photos;
      result.replaceChildren(errorBox(error), ...(verdicts ? [verdictList(verdicts)] : []));  // a null child is printed "null"
    } finally {
      button.disabled = false;
    }
  } },
  el("h2", { text: "Add a stranger" }),
  el("p", { class: "muted", text: "Photos of one person who must never be named (one face each): models learn to answer “unknown” for them." }),
  el("div", { class: "field" }, el("label", { for: "stranger-note", text: "Note (optional, never in a model)" }),
    el("input", { type: "text", id: "stranger-note", name: "note", maxlength: 200 })),
  el("div", { class: "field" }, el("label", { for: "stranger-photos", text: "Photos of the stranger" }),
    el("input", { type: "file", id: "stranger-photos", name: "photos", accept: "image/*", multiple: true, required: true })),
  el("button", { class: "primary", type: "submit", text: "Add stranger" }), result);
  return form;
}

export async function strangersPage(ui, match) {
  const { el, api } = ui;
  const params = new URLSearchParams(match[1] || "");
  const link = (start) => `#/strangers?offset=${start}`;
  const [page, offset] = await ui.pageAt(ui.offsetOf(params), PAGE_SIZE,
    (start) => api(`/api/v1/strangers?offset=${start}&limit=${PAGE_SIZE}`), link);
  const pager = el("div", { class: "pager" },
    el("span", { class: "muted", text: page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "no strangers yet" }),
    offset > 0 ? el("a", { class: "button", href: link(Math.max(0, offset - PAGE_SIZE)), text: "Previous" }) : null,
    offset + page.items.length < page.total ? el("a", { class: "button", href: link(offset + PAGE_SIZE), text: "Next" }) : null);
  return [el("h1", { text: "Strangers" }),
    el("p", { class: "muted", text: "Faces that are never named by any model: the mailman, a neighbour, visitors. Each change trains a new version." }),
    ui.admin() ? null : el("p", { class: "muted", id: "faces-note", text: ui.FACES_FOR_ADMINS }),
    el("div", { class: "grid", id: "strangers" }, page.items.map((s) => strangerCard(ui, s))), pager,
    ui.admin() ? addStrangerForm(ui) : null];
}

// The photo to upload for one face of a Try-it photo: the file itself when it shows one face, else a
// JPEG of that face with a margin (an upload must show one clear face).
async function facePhoto(file, image, face, count, faces) {
  if (count === 1) return file;
  const { x, y, width, height } = face.box;
  const margin = CROP_MARGIN * Math.max(width, height);
  const left = Math.max(0, Math.floor(x - margin));
  const top = Math.max(0, Math.floor(y - margin));
  const right = Math.min(image.naturalWidth, Math.ceil(x + width + margin));
  const bottom = Math.min(image.naturalHeight, Math.ceil(y + height + margin));
  const canvas = document.createElement("canvas");
  canvas.width = right - left;
  canvas.height = bottom - top;
  const context = canvas.getContext("2d");
  context.drawImage(image, left, top, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
  // The other faces inside the cut are greyed out, this face's own box drawn again over them: two
  // faces close together were both in the cut, and the upload was refused as several faces of
  // similar size (71 faces of lfw_dev's group photos: 40 accepted cut out as they were, 70 greyed).
  const others = faces.filter((other) => other !== face);
  if (others.length) {
    context.fillStyle = "rgb(128, 128, 128)";
    for (const { box } of others) context.fillRect(box.x - left, box.y - top, box.width, box.height);
    const [boxLeft, boxTop] = [Math.max(left, Math.floor(x)), Math.max(top, Math.floor(y))];
    const boxRight = Math.min(right, Math.ceil(x + width));
    const boxBottom = Math.min(bottom, Math.ceil(y + height));
    context.drawImage(image, boxLeft, boxTop, boxRight - boxLeft, boxBottom - boxTop,
      boxLeft - left, boxTop - top, boxRight - boxLeft, boxBottom - boxTop);
  }
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  return new File([blob], `face-${Math.round(x)}-${Math.round(y)}.jpg`, { type: "image/jpeg" });
}

// A suggestion in the "Add to" picker: the name and the person's number, which tells namesakes apart.
const choiceOf = (person) => `${person.name} (person ${person.id})`;
const CHOICE = /^(.*) \(person (\d+)\)$/;

// Everyone registered under exactly `name` (any case only when nobody is under it as written). The
// search finds names containing it, a page at a time: the exact one may lie past the first page.
async function everyoneNamed(api, name) {
  const found = [];
  for (let offset = 0; ; offset += NAME_PAGE) {
    const page = await api(`/api/v1/people?offset=${offset}&limit=${NAME_PAGE}&q=${encodeURIComponent(name)}`);
    found.push(...page.items);
    if (!page.items.length || offset + page.items.length >= page.total) break;
  }
  const exact = found.filter((p) => p.name === name);
  return exact.length ? exact : found.filter((p) => p.name.toLowerCase() === name.toLowerCase());
}
function firstVerdict(body) {
  return body && body.photos && body.photos[0];
}

function verdictText(verdict) {
  return verdict.verdict + (verdict.message ? `: ${verdict.message}` : "");
}

// Buttons under one recognised (or unknown) face on Try it: admins only, since both change the gallery.
export function faceActions(ui, { file, image, face, index, count, faces }) {
  const { el, api, ApiError } = ui;
  if (!ui.admin()) return null;
  const status = el("span", { class: "muted", "aria-live": "polite" });
  const controls = el("div", { class: "row face-actions" });

  // Once a face is stored (as a stranger or someone's photo) its buttons stay off: a second click stored
  // the same face again, as another stranger.
  let stored = false;
  let toStrangers = null;  // the "Not <name>" upload, whose answer is a stranger
  // `describe` says what was done ("Added as a stranger"), `refused` what was not: a refusal read
  // "Added as a stranger: rejected: ...".
  async function send(describe, refused, upload) {
    for (const button of controls.querySelectorAll("button")) button.disabled = true;
    status.className = "muted";
    status.textContent = "sending…";
    try {
      const photo = await facePhoto(file, image, face, count, faces);
      const form = new FormData();
      form.append("photos", photo, photo.name);
      const body = await upload(form);
      const verdict = firstVerdict(body);
      stored = Boolean(verdict && verdict.verdict === "accepted");
      // Accepted with a warning (a stranger who looks like an enrolled person) is not a plain success:
      // said as a problem, with the way to the stranger, whom deleting undoes it.
      const warned = stored && upload === toStrangers && Boolean(verdict.message);
      // Amber, not red: the face was stored, and what follows is a caution, not a failure.
      status.className = warned ? "warned" : stored ? "accepted" : "rejected";
      status.textContent = stored ? `${describe}: ${verdictText(verdict)}; a new version is being trained.`
        : `${refused}: ${verdict ? verdictText(verdict) : "no verdict came back"}.`;
      if (warned && body.id) {
        status.append(" ", el("a", { href: `#/strangers/${body.id}`, text: "Open the stranger" }));
      }
    } catch (error) {
      const verdict = error instanceof ApiError && error.body && error.body.error && error.body.error.photos && error.body.error.photos[0];
      status.className = "rejected";
      status.textContent = verdict ? `${refused}: ${verdictText(verdict)}` : `${refused}: ${error.message}`;
    } finally {
      // The name box too: editable beside disabled buttons, it looked as if another person could be picked.
      for (const control of controls.querySelectorAll("button, input")) control.disabled = stored;
    }
  }

  if (face.match) {
    const name = face.match.name;
    toStrangers = (form) => {
      form.append("note", `not ${name}`);
      return api("/api/v1/strangers", { method: "POST", form });
    };
    controls.append(el("button", { type: "button", class: "not-them", text: `Not ${name}: add as a stranger`, title: `Not ${name}: add as a stranger`, onclick: () =>
      send("Added as a stranger", "Not added as a stranger", toStrangers) }));
  }

  // "Add to <person>": the person the face was matched to (by id: two people may share a name), or a
  // name typed or picked from the people who match it. Suggestions carry the person's number, so
  // namesakes are told apart.
  const listId = `people-${index}`;
  const options = el("datalist", { id: listId });
  const picker = el("input", { type: "search", id: `add-to-${index}`, list: listId, placeholder: "Person's name", autocomplete: "off",
    "aria-label": `Add face ${index + 1} to a person (name)`, value: face.match ? face.match.name : "" });
  const suggest = (people) => options.replaceChildren(...people.map((p) => el("option", { value: choiceOf(p) })));
  let suggestion = 0;  // the newest look-up: an older one that answers late suggests nothing
  async function lookUp() {
    const ticket = ++suggestion;
    const query = picker.value.trim();
    const page = await api(`/api/v1/people?limit=20` + (query ? `&q=${encodeURIComponent(query)}` : ""));
    if (ticket === suggestion) suggest(page.items);
  }
  let timer = null;
  picker.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => lookUp().catch(() => {}), 250);
  });
  picker.addEventListener("focus", () => lookUp().catch(() => {}), { once: true });
  const refuse = (text) => {
    status.className = "rejected";
    status.textContent = text;
  };
  // The person `text` names: the matched one, a picked suggestion ("name (person 12)"), or the only
  // one registered under that name. Says why when there is none or several, and answers null.
  async function personFor(text) {
    if (face.match && text === face.match.name) return { id: face.match.person_id, name: face.match.name };
    const picked = CHOICE.exec(text);
    if (picked) {
      const [, name, id] = picked;
      const person = await api(`/api/v1/people/${id}`).catch((error) => {
        if (error instanceof ApiError && error.status === 404) return null;  // deleted meanwhile
        throw error;
      });
      if (person && person.name === name) return person;
      // Not that person (renamed or deleted meanwhile): the text may still be someone's whole name.
    }
    const named = await everyoneNamed(api, text);
    if (named.length === 1) return named[0];
    if (!named.length) refuse(`Nobody is registered as “${text}”.`);
    else {
      suggest(named);
      refuse(`${named.length} people are registered as “${text}”: pick one from the list (by person number).`);
    }
    return null;
  }
  const add = el("button", { type: "button", class: "add-to", text: "Add to person", onclick: async () => {
    const text = picker.value.trim();
    if (!text) return refuse("Type or pick a person's name first.");
    // This click's answer is the one the list shows (a look-up of the typing before would replace it).
    clearTimeout(timer);
    suggestion += 1;
    let person;
    add.disabled = true;  // one look-up, one upload per click
    try {
      person = await personFor(text);
    } catch (error) {
      return refuse(error.message);
    } finally {
      add.disabled = stored;
    }
    if (person) {
      send(`Added to ${person.name}`, `Not added to ${person.name}`,
        (form) => api(`/api/v1/people/${person.id}/photos`, { method: "POST", form }));
    }
  } });
  const label = (text) => { add.textContent = text; add.title = text; };
  label(face.match ? `Add to ${face.match.name}` : "Add to person");
  picker.addEventListener("input", () => label(picker.value.trim() ? `Add to ${picker.value.trim()}` : "Add to person"));
  controls.append(picker, options, add);
  return el("div", { class: "face-tools" }, controls, status);
}
