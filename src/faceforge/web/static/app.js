// faceforge dashboard: one page, plain JavaScript modules, every datum from /api/v1 with the key the
// user logged in with (kept in this tab's sessionStorage). No build step, nothing fetched from elsewhere.

const KEY_STORAGE = "faceforge-api-key";
const PAGE_SIZE = 24;
const main = document.getElementById("main");
const notice = document.getElementById("notice");
const who = document.getElementById("who");
const logout = document.getElementById("logout");
const session = { key: sessionStorage.getItem(KEY_STORAGE), access: null, keysRequired: false };
let stopView = () => {};  // what the current view must stop when another one opens (polling timers)

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

function headers(extra = {}) {
  return session.key ? { "X-API-Key": session.key, ...extra } : extra;
}

async function api(path, { method = "GET", json, form } = {}) {
  const options = { method, headers: headers() };
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

// -- small DOM helpers ------------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function say(message, ok = false) {
  notice.textContent = message;
  notice.className = ok ? "notice ok" : "notice";
  notice.hidden = !message;
}

function fail(error) {
  if (error instanceof ApiError && (error.status === 401 || (error.status === 403 && error.code === "keys_required"))) {
    location.hash = "#/login";
    return;
  }
  say(error instanceof ApiError ? `${error.message} (${error.code})` : String(error));
}

const admin = () => session.access === "admin";
const percent = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %");
const number = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const bytes = (size) => (size >= 1e6 ? (size / 1e6).toFixed(1) + " MB" : (size / 1e3).toFixed(1) + " KB");
const when = (moment) => (moment ? new Date(moment).toLocaleString() : "–");
const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");

// A face box drawn over an image, in percent of the photo's own size.
function boxOverlay(box, width, height, label, unknown = false) {
  const style = `left:${(100 * box.x) / width}%;top:${(100 * box.y) / height}%;` +
    `width:${(100 * box.width) / width}%;height:${(100 * box.height) / height}%`;
  return el("div", { class: unknown ? "box unknown" : "box", style }, label ? el("span", { class: "tag", text: label }) : null);
}

// -- login ----------------------------------------------------------------------------------------
async function checkAccess() {
  const access = await api("/api/v1/access");
  session.keysRequired = access.keys_required;
  if (access.access === "none") {
    session.access = null;
    return false;
  }
  session.access = access.access;
  who.textContent = access.keys_required ? (admin() ? "admin key" : "read key") : "open on this computer";
  logout.hidden = !access.keys_required;
  return true;
}

function loginView() {
  const input = el("input", { type: "password", id: "key", name: "key", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    session.key = input.value.trim();
    sessionStorage.setItem(KEY_STORAGE, session.key);
    if (await checkAccess()) {
      say("");
      location.hash = "#/people";
    } else {
      say("That key was not accepted.");
    }
  } },
  el("h1", { text: "Log in" }),
  el("p", { class: "muted", text: "Enter an API key: a read key shows people, versions and recognition; an admin key can also change them." }),
  el("div", { class: "field" }, el("label", { for: "key", text: "API key" }), input),
  el("button", { class: "primary", type: "submit", text: "Log in" }));
  show(form);
  input.focus();
}

logout.addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  session.key = null;
  session.access = null;
  who.textContent = "";
  logout.hidden = true;
  location.hash = "#/login";
});

// -- people ---------------------------------------------------------------------------------------
async function personCard(person) {
  const picture = el("div", { class: "avatar", "aria-hidden": "true", text: initials(person.name) });
  const card = el("a", { class: "person", href: `#/people/${person.id}` }, picture,
    el("div", { class: "name", text: person.name }),
    el("div", { class: "muted", text: [person.position, `${person.photo_count} photo${person.photo_count === 1 ? "" : "s"}`].filter(Boolean).join(" · ") }));
  if (admin() && person.photo_count > 0) {
    blobUrl(`/api/v1/people/${person.id}/thumbnail`).then((url) => {
      picture.replaceWith(el("img", { class: "avatar", src: url, alt: "" }));
    }).catch(() => {});
  }
  return card;
}

async function peopleView(params) {
  const offset = Math.max(0, Number(params.get("offset") || 0));
  const query = params.get("q") || "";
  const search = el("input", { type: "search", id: "search", value: query, placeholder: "Search by name", "aria-label": "Search people by name" });
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { location.hash = `#/people?q=${encodeURIComponent(search.value)}`; }, 300);
  });
  const page = await api(`/api/v1/people?offset=${offset}&limit=${PAGE_SIZE}` + (query ? `&q=${encodeURIComponent(query)}` : ""));
  const cards = await Promise.all(page.items.map(personCard));
  const link = (start) => `#/people?offset=${start}` + (query ? `&q=${encodeURIComponent(query)}` : "");
  const pager = el("div", { class: "pager" },
    el("span", { class: "muted", text: page.total ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "nobody yet" }),
    offset > 0 ? el("a", { class: "button", href: link(Math.max(0, offset - PAGE_SIZE)), text: "Previous" }) : null,
    offset + page.items.length < page.total ? el("a", { class: "button", href: link(offset + PAGE_SIZE), text: "Next" }) : null);
  show(el("h1", { text: "People" }), el("div", { class: "field" }, search), el("div", { class: "grid", id: "people" }, cards), pager,
    admin() ? registerForm() : null);
  if (query) {
    search.focus();
    search.setSelectionRange(query.length, query.length);
  }
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
    try {
      const person = await api("/api/v1/people", { method: "POST", form: data });
      say(`${person.name} registered: ${person.photos.filter((p) => p.verdict === "accepted").length} photos accepted.`, true);
      location.hash = `#/people/${person.id}`;
    } catch (error) {
      if (error instanceof ApiError && error.body && error.body.error && error.body.error.photos) {
        result.replaceChildren(verdictList(error.body.error.photos));
      }
      fail(error);
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

function uploadPhoto(personId, file, row) {
  // One photo per request, so each gets its own progress bar and verdict.
  return new Promise((resolve) => {
    const bar = el("progress", { max: 100, value: 0, "aria-label": `uploading ${file.name}` });
    const verdict = el("span", { text: "uploading" });
    row.replaceChildren(el("span", { text: file.name }), bar, verdict);
    const request = new XMLHttpRequest();
    request.open("POST", `/api/v1/people/${personId}/photos`);
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
      if (first) {
        verdict.className = first.verdict === "accepted" ? "accepted" : "rejected";
        verdict.textContent = first.verdict + (first.message ? `: ${first.message}` : "");
      } else {
        verdict.className = "rejected";
        verdict.textContent = body && body.error ? body.error.message : `failed (${request.status})`;
      }
      resolve();
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

function dropZone(personId, onDone) {
  const list = el("ul", { class: "uploads", "aria-live": "polite" });
  const input = el("input", { type: "file", id: "add-photos", accept: "image/*", multiple: true });
  async function send(files) {
    const rows = [...files].map((file) => [file, el("li")]);
    list.replaceChildren(...rows.map(([, row]) => row));
    for (const [file, row] of rows) await uploadPhoto(personId, file, row);
    onDone();
  }
  input.addEventListener("change", () => send(input.files));
  const zone = el("div", { class: "drop", id: "drop" },
    el("p", { text: "Drop photos here, or " }), el("label", { for: "add-photos", class: "button", text: "choose photos" }), input);
  input.style.position = "absolute";
  input.style.opacity = "0";
  input.style.width = "1px";
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    send(event.dataTransfer.files);
  });
  return el("section", { class: "card" }, el("h2", { text: "Add photos" }), zone, list);
}

async function photoTile(person, photo) {
  const frame = el("div", { class: "frame" });
  const tile = el("figure", { class: "photo" }, frame,
    el("figcaption", { class: "muted" }, `accepted · face ${Math.round(photo.box.width)}×${Math.round(photo.box.height)} px · score ${number(photo.score, 2)}`));
  if (admin()) {
    const url = await blobUrl(`/api/v1/people/${person.id}/photos/${photo.id}/file`);
    frame.append(el("img", { src: url, alt: `photo ${photo.id} of ${person.name}` }), boxOverlay(photo.box, photo.width, photo.height, null));
    tile.append(el("button", { class: "danger", type: "button", text: "Delete photo", onclick: async () => {
      if (!confirm("Delete this photo?")) return;
      try {
        await api(`/api/v1/people/${person.id}/photos/${photo.id}`, { method: "DELETE" });
        say("Photo deleted; a new version is being trained.", true);
        route();
      } catch (error) { fail(error); }
    } }));
  } else {
    frame.append(el("div", { class: "avatar", text: initials(person.name) }));
  }
  return tile;
}

async function personView(id) {
  const person = await api(`/api/v1/people/${id}`);
  const summary = el("p", { class: "muted" });
  const grid = el("div", { class: "photos", id: "photos" });
  async function refreshPhotos() {
    // After uploads only the photos change: the upload list keeps its verdicts.
    const [current, photos] = await Promise.all([api(`/api/v1/people/${id}`), api(`/api/v1/people/${id}/photos`)]);
    summary.textContent = [current.position, current.external_id ? `external id ${current.external_id}` : null,
      `${current.photo_count} photos`].filter(Boolean).join(" · ");
    grid.replaceChildren(...(await Promise.all(photos.map((p) => photoTile(current, p)))));
  }
  const parts = [el("p", {}, el("a", { href: "#/people", text: "← People" })), el("h1", { text: person.name }), summary];
  if (person.suspected_duplicates && person.suspected_duplicates.length) {
    parts.push(el("section", { class: "card" }, el("h2", { text: "Maybe the same person" }),
      el("ul", {}, person.suspected_duplicates.map((d) => el("li", {},
        `${d.names.join(" / ")} (similarity ${number(d.similarity)}, ${d.kind}) `,
        ...d.people.filter((other) => other !== person.id).map((other) => el("a", { href: `#/people/${other}`, text: `open ${other}` })))))));
  }
  if (admin()) parts.push(editForm(person), dropZone(id, () => refreshPhotos().catch(fail)));
  parts.push(el("h2", { text: "Photos" }), grid);
  await refreshPhotos();
  show(...parts);
}

function editForm(person) {
  const name = el("input", { type: "text", id: "edit-name", value: person.name, required: true, maxlength: 200 });
  const position = el("input", { type: "text", id: "edit-position", value: person.position || "", maxlength: 200 });
  const other = el("input", { type: "number", id: "merge-id", min: 1, inputmode: "numeric" });
  const save = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api(`/api/v1/people/${person.id}`, { method: "PATCH", json: { name: name.value, position: position.value || null } });
      say("Saved.", true);
      route();
    } catch (error) { fail(error); }
  } },
  el("div", { class: "field" }, el("label", { for: "edit-name", text: "Name" }), name),
  el("div", { class: "field" }, el("label", { for: "edit-position", text: "Position" }), position),
  el("button", { class: "primary", type: "submit", text: "Save" }));
  const merge = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    if (!confirm(`Move every photo of person ${other.value} to ${person.name} and delete person ${other.value}?`)) return;
    try {
      await api(`/api/v1/people/${person.id}/merge`, { method: "POST", json: { other_id: Number(other.value) } });
      say("Merged; a new version is being trained.", true);
      route();
    } catch (error) { fail(error); }
  } },
  el("div", { class: "field" }, el("label", { for: "merge-id", text: "Merge another person into this one (their id)" }), other),
  el("button", { type: "submit", text: "Merge" }));
  const remove = el("button", { class: "danger", type: "button", id: "delete-person", text: "Delete person", onclick: async () => {
    if (!confirm(`Delete ${person.name} and every photo of them?`)) return;
    try {
      await api(`/api/v1/people/${person.id}`, { method: "DELETE" });
      say(`${person.name} deleted; a new version is being trained.`, true);
      location.hash = "#/people";
    } catch (error) { fail(error); }
  } });
  return el("section", { class: "card" }, el("h2", { text: "Edit" }), save, merge, el("p", {}, remove));
}

// -- try it ---------------------------------------------------------------------------------------
function tryView() {
  const result = el("div", { id: "result", "aria-live": "polite" });
  const input = el("input", { type: "file", id: "probe", accept: "image/*" });
  async function identify(file) {
    result.replaceChildren(el("p", { text: "Looking…" }));
    const form = new FormData();
    form.append("photo", file, file.name);
    form.append("top_k", "3");
    try {
      const answer = await api("/api/v1/identify", { method: "POST", form });
      const image = el("img", { src: URL.createObjectURL(file), alt: "the photo" });
      await image.decode();
      const frame = el("div", { class: "frame" }, image);
      const rows = [];
      for (const face of answer.faces) {
        const best = face.candidates[0];
        const label = face.match
          ? `${face.match.name} · similarity ${number(face.match.similarity)} · confidence ${percent(face.match.confidence)}`
          : `unknown · nearest ${face.candidates.map((c) => `${c.name} ${number(c.similarity)}`).join(", ")}`;
        frame.append(boxOverlay(face.box, image.naturalWidth, image.naturalHeight, face.match ? face.match.name : "unknown", !face.match));
        rows.push(el("li", { class: "face" }, label, best ? null : " (nobody enrolled)"));
      }
      result.replaceChildren(
        el("p", { class: "muted", text: `model version ${answer.version}: ${answer.faces.length} face${answer.faces.length === 1 ? "" : "s"}` }),
        el("div", { style: "max-width:40rem" }, frame), el("ul", { id: "faces" }, rows));
    } catch (error) {
      result.replaceChildren();
      fail(error);
    }
  }
  input.addEventListener("change", () => input.files[0] && identify(input.files[0]));
  const zone = el("div", { class: "drop" }, el("p", { text: "Drop a photo here, or choose one:" }), input);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files[0]) identify(event.dataTransfer.files[0]);
  });
  show(el("h1", { text: "Try it" }), el("p", { class: "muted", text: "Who is in this photo, according to the current version?" }), zone, result);
}

// -- training -------------------------------------------------------------------------------------
function trainingView() {
  const panel = el("div", { id: "training", "aria-live": "polite" });
  async function refresh() {
    try {
      const t = await api("/api/v1/training");
      panel.replaceChildren(
        el("div", { class: "figures" },
          el("div", { class: "figure" }, "state", el("b", { id: "training-state", text: t.state })),
          el("div", { class: "figure" }, "stage", el("b", { text: t.stage || "–" })),
          el("div", { class: "figure" }, "building version", el("b", { text: t.building_version ?? "–" })),
          el("div", { class: "figure" }, "current version", el("b", { id: "current-version", text: t.current_version ?? "none yet" })),
          el("div", { class: "figure" }, "changes built", el("b", { text: `${t.built} / ${t.requested}` }))),
        t.state === "running" ? el("p", {}, el("progress", { max: 1, value: t.progress, "aria-label": "training progress" }), ` ${percent(t.progress)}`) : null,
        el("h2", { text: "Last success" }),
        el("p", { text: t.last_success ? `version ${t.last_success.version} at ${when(t.last_success.at)}` : "none yet" }),
        el("h2", { text: "Last failure" }),
        el("p", { text: t.last_failure ? `version ${t.last_failure.version} at ${when(t.last_failure.at)}: ${t.last_failure.message}` : "none" }));
    } catch (error) { fail(error); }
  }
  show(el("h1", { text: "Training" }), el("p", { class: "muted", text: "Every change to people or photos trains a new version; this page follows it live." }), panel);
  refresh();
  const timer = setInterval(refresh, 1000);
  stopView = () => clearInterval(timer);
}

// -- versions -------------------------------------------------------------------------------------
async function download(version, name) {
  try {
    const url = await blobUrl(`/api/v1/models/${version}/files/${encodeURIComponent(name)}`);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) { fail(error); }
}

function versionCard(v) {
  const metrics = v.metrics || {};
  const files = Object.entries(v.files || {}).sort(([a], [b]) => a.localeCompare(b));
  return el("section", { class: "card version", id: `version-${v.version}` },
    el("div", { class: "row" },
      el("h2", { text: `Version ${v.version}` }),
      el("span", { class: `status-${v.status}`, text: v.status }),
      v.is_current ? el("span", { class: "badge", text: "current" }) : null,
      admin() && v.status === "ready" && !v.is_current ? el("button", { type: "button", class: "activate", text: "Make current", onclick: async () => {
        try {
          await api(`/api/v1/models/${v.version}/activate`, { method: "POST" });
          say(`Version ${v.version} is now current.`, true);
          route();
        } catch (error) { fail(error); }
      } }) : null,
      v.status === "ready" ? el("a", { href: `#/versions/${v.version}`, text: "Quality" }) : null),
    v.status_message ? el("p", { class: "muted", text: v.status_message }) : null,
    el("div", { class: "figures" },
      el("div", { class: "figure" }, "people", el("b", { text: v.people.length })),
      el("div", { class: "figure" }, "threshold", el("b", { text: number(v.threshold) })),
      el("div", { class: "figure" }, "held-out accepted", el("b", { text: percent(metrics.accept_rate) })),
      el("div", { class: "figure" }, "held-out top-1", el("b", { text: percent(metrics.top1) })),
      el("div", { class: "figure" }, "built", el("b", { text: when(v.finished_at || v.created_at) }))),
    files.length ? el("details", {}, el("summary", { text: `${files.length} files` }),
      el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", { text: "file" }), el("th", { text: "size" }), el("th", { text: "sha256" }), el("th", {}))),
        el("tbody", {}, files.map(([name, info]) => el("tr", {},
          el("td", {}, el("code", { text: name })), el("td", { text: bytes(info.size) }), el("td", {}, el("code", { text: info.sha256 })),
          el("td", {}, el("button", { type: "button", text: "Download", "aria-label": `Download ${name}`, onclick: () => download(v.version, name) })))))))) : null);
}

async function versionsView() {
  const list = await api("/api/v1/models");
  show(el("h1", { text: "Versions" }), list.items.length ? el("div", { id: "versions" }, list.items.map(versionCard)) : el("p", { text: "No version yet: register people with photos." }));
}

// Plots drawn as SVG from the version's stored quality figures.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function plotFrame(title, xLabel, yLabel, xs, ys) {
  const [W, H, L, R, T, B] = [640, 360, 60, 16, 32, 48];
  const x = (v) => L + ((v - xs[0]) / (xs[1] - xs[0])) * (W - L - R);
  const y = (v) => H - B - ((v - ys[0]) / (ys[1] - ys[0])) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "aria-label": title });
  root.append(svg("text", { x: W / 2, y: 20, "text-anchor": "middle", "font-size": 15 }, title));
  for (let i = 0; i <= 5; i++) {
    const yv = ys[0] + ((ys[1] - ys[0]) * i) / 5;
    const xv = xs[0] + ((xs[1] - xs[0]) * i) / 5;
    root.append(svg("line", { x1: L, x2: W - R, y1: y(yv), y2: y(yv), stroke: "#e5e7eb" }));
    root.append(svg("text", { x: L - 6, y: y(yv) + 4, "text-anchor": "end", "font-size": 11 }, (100 * yv).toFixed(0) + "%"));
    root.append(svg("text", { x: x(xv), y: H - B + 16, "text-anchor": "middle", "font-size": 11 }, xv.toFixed(2)));
  }
  root.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#333" }), svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#333" }));
  root.append(svg("text", { x: W / 2, y: H - 8, "text-anchor": "middle", "font-size": 12 }, xLabel));
  root.append(svg("text", { x: 14, y: H / 2, "text-anchor": "middle", "font-size": 12, transform: `rotate(-90 14 ${H / 2})` }, yLabel));
  return { root, x, y, W, H, T, B };
}

function histogramPlot(quality) {
  const { edges, genuine, impostor } = quality.histogram;
  const share = (counts) => { const total = counts.reduce((a, b) => a + b, 0) || 1; return counts.map((c) => c / total); };
  const g = share(genuine), i = share(impostor);
  const top = Math.max(0.01, ...g, ...i) * 1.1;
  const plot = plotFrame("Similarity of enrolled photos", "cosine similarity", "share of photos", [edges[0], edges[edges.length - 1]], [0, top]);
  for (const [shares, colour] of [[i, "#d1495b"], [g, "#2a9d5c"]]) {
    shares.forEach((s, k) => {
      if (s > 0) plot.root.append(svg("rect", { x: plot.x(edges[k]), y: plot.y(s), width: plot.x(edges[k + 1]) - plot.x(edges[k]), height: plot.y(0) - plot.y(s), fill: colour, "fill-opacity": 0.6 }));
    });
  }
  const tx = plot.x(quality.threshold);
  plot.root.append(svg("line", { x1: tx, x2: tx, y1: plot.T, y2: plot.H - plot.B, stroke: "#1d3557", "stroke-width": 2 }));
  plot.root.append(svg("text", { x: tx + 4, y: plot.T + 12, "font-size": 11 }, `threshold ${quality.threshold.toFixed(3)}`));
  plot.root.append(svg("rect", { x: plot.W - 200, y: plot.T + 4, width: 10, height: 10, fill: "#2a9d5c" }), svg("text", { x: plot.W - 185, y: plot.T + 13, "font-size": 11 }, "own person, held out"));
  plot.root.append(svg("rect", { x: plot.W - 200, y: plot.T + 20, width: 10, height: 10, fill: "#d1495b" }), svg("text", { x: plot.W - 185, y: plot.T + 29, "font-size": 11 }, "best other person"));
  return plot.root;
}

function curvePlot(quality) {
  const low = 0.8;
  const points = quality.curve.filter((p) => p.known_accept !== null)
    .map((p) => ({ ...p, ur: Math.max(low, p.unknown_reject), ka: Math.max(low, p.known_accept) }));
  const plot = plotFrame("Known accepted vs strangers rejected (estimated)", "strangers rejected", "known accepted", [low, 1], [low, 1]);
  if (points.length > 1) {
    plot.root.append(svg("polyline", { points: points.map((p) => `${plot.x(p.ur)},${plot.y(p.ka)}`).join(" "), fill: "none", stroke: "#1d3557", "stroke-width": 2 }));
    const chosen = points.reduce((a, b) => (Math.abs(b.threshold - quality.threshold) < Math.abs(a.threshold - quality.threshold) ? b : a));
    plot.root.append(svg("circle", { cx: plot.x(chosen.ur), cy: plot.y(chosen.ka), r: 5, fill: "#d1495b" }));
    plot.root.append(svg("text", { x: plot.x(chosen.ur) - 8, y: plot.y(chosen.ka) + 18, "text-anchor": "end", "font-size": 11 }, `this version: ${percent(chosen.known_accept)} known, ${percent(chosen.unknown_reject)} strangers rejected`));
  }
  return plot.root;
}

async function qualityView(versionNumber) {
  const v = await api(`/api/v1/models/${versionNumber}`);
  const quality = (v.metrics || {}).quality;
  const labelId = (label) => { const m = /\((\d+)\)$/.exec(label); return m ? Number(m[1]) : null; };
  const duplicates = (v.metrics || {}).suspected_duplicates || [];
  show(el("p", {}, el("a", { href: "#/versions", text: "← Versions" })), el("h1", { text: `Quality of version ${v.version}` }),
    quality ? el("div", {}, histogramPlot(quality), curvePlot(quality),
      el("h2", { text: "People whose photos agree least" }),
      el("p", { class: "muted", text: "Lowest mean similarity of a person's photos to their other photos: candidates for better photos." }),
      el("ol", { id: "worst" }, quality.people.map((p) => el("li", {},
        labelId(p.label) ? el("a", { href: `#/people/${labelId(p.label)}`, text: p.label }) : p.label,
        ` · ${p.photos} photos · mean ${number(p.genuine_mean)} · lowest ${number(p.genuine_min)}`))))
      : el("p", { text: "This version has no quality figures (built by an older release)." }),
    el("h2", { text: "Suspected duplicates" }),
    duplicates.length ? el("ul", { id: "duplicates" }, duplicates.map((d) => el("li", {},
      `${d.names.join(" / ")} · similarity ${number(d.similarity)} · ${d.kind} `,
      el("a", { href: `#/people/${d.people[0]}`, text: "open" })))) : el("p", { text: "none" }));
}

// -- router ---------------------------------------------------------------------------------------
const views = [
  [/^#\/people\/(\d+)$/, (m) => personView(Number(m[1])), "people"],
  [/^#\/people(?:\?(.*))?$/, (m) => peopleView(new URLSearchParams(m[1] || "")), "people"],
  [/^#\/try$/, () => tryView(), "try"],
  [/^#\/training$/, () => trainingView(), "training"],
  [/^#\/versions\/(\d+)$/, (m) => qualityView(Number(m[1])), "versions"],
  [/^#\/versions$/, () => versionsView(), "versions"],
];

async function route() {
  stopView();
  stopView = () => {};
  const hash = location.hash || "#/people";
  if (hash === "#/login") {
    loginView();
    return;
  }
  if (session.access === null && !(await checkAccess().catch(fail))) {
    location.hash = "#/login";
    return;
  }
  for (const [pattern, render, section] of views) {
    const match = pattern.exec(hash);
    if (!match) continue;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === section);
      if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    try {
      await render(match);
    } catch (error) {
      fail(error);
    }
    // Keyboard and screen-reader users start at the new page's content, not at a removed element.
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
    return;
  }
  location.hash = "#/people";
}

window.addEventListener("hashchange", () => { say(""); route(); });
route();
