// GET /live: the camera, boxes and names, one decision per face track (as the camera agent,
// `edge/tracking.py`: tracks matched by overlap, a face that disagrees with its track's latest one is
// someone else and starts a new track, a track decided once from the mean probabilities of its first
// SAMPLES frames), the version and whether the server is reachable. `?kiosk=1`: no bar.
import { connect } from "./faceforge.js";

const params = new URLSearchParams(location.search);
const KEY_STORAGE = "faceforge-api-key";  // the dashboard's (this tab), or this device's for a kiosk
const MATCH_IOU = 0.3;
const MAX_MISSED = 5;
const SAMPLES = 3;
// edge/tracking.py's rule: a face unlike each of its track's latest REFERENCES faces (cosine below
// SAME_FACE_COSINE, which two photos of one person fall below one time in 1,000) DOUBTS frames in a
// row is someone else, and so is a face that agrees but that the head names as another enrolled
// person than the track's samples do, as surely or more surely than not (two people can agree that
// well). This page embeds every face
// on every frame, so it checks every frame.
const SAME_FACE_COSINE = 0.79;
const REFERENCES = 8;
const DOUBTS = 2;
const MORE_LIKELY_THAN_NOT = 0.5;
const UPDATE_SECONDS = 30;
// Faces smaller than this many pixels of the camera's frame are not looked for: someone at a door or
// a desk fills more, and each halving of the size searched for costs P-Net about four times the work.
// `?min_face=N` changes it; one the page cannot use is said on the page (`?min_face=abc` was ignored,
// `-5` named the client's own option, a size over the frame found nobody without a word).
const MIN_FACE_SIZE = params.get("min_face") ? Number(params.get("min_face")) : 60;
const MIN_FACE_ASKED = !(Number.isFinite(MIN_FACE_SIZE) && MIN_FACE_SIZE >= 12)
  ? `?min_face= is a number of pixels, 12 or more (such as ?min_face=40), not "${params.get("min_face")}"`
  : "";

const $ = (id) => document.getElementById(id);
const kiosk = params.has("kiosk");
if (kiosk) document.body.classList.add("kiosk");

function iou(a, b) {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

function unit(vector) {
  let norm = 0;
  for (const v of vector) norm += v * v;
  norm = Math.sqrt(norm) || 1;
  return Float32Array.from(vector, (v) => v / norm);
}

function dot(a, b) {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** Whether the head names a face (its `probabilities`, from `version`) as an enrolled person other
 * than the one `track`'s SAMPLES name, at least as surely as they name theirs or more surely than not
 * (the probabilities saturate: a track at 0.99999 kept a newcomer named at 0.995); edge/tracking.py. */
function namesAnother(track, probabilities, version) {
  if (!probabilities || track.samples.length < SAMPLES || track.version !== version) return false;
  const unknown = probabilities.length - 1;
  let named = 0;
  for (let i = 1; i < probabilities.length; i++) if (probabilities[i] > probabilities[named]) named = i;
  const own = decide(track.samples);
  return named !== unknown && !own.unknown && named !== own.index
    && probabilities[named] >= Math.min(own.probability, MORE_LIKELY_THAN_NOT);
}

/** Take a face into `track`; true when it makes DOUBTS in a row unlike the track (edge/tracking.py). */
function someoneElse(track, face, version) {
  const embedding = unit(face.embedding);
  const unlike = track.references.length && (
    Math.max(...track.references.map((r) => dot(r, embedding))) < SAME_FACE_COSINE
    || namesAnother(track, face.probabilities, version));
  if (unlike) {
    track.doubts += 1;
    return track.doubts >= DOUBTS;
  }
  track.doubts = 0;
  track.references = [...track.references.slice(-(REFERENCES - 1)), embedding];
  return false;
}

/** One decision from frames' probabilities (`unknown` last): the argmax of their mean. */
export function decide(samples) {
  const n = samples[0].length, mean = new Float64Array(n);
  for (const s of samples) for (let i = 0; i < n; i++) mean[i] += s[i] / samples.length;
  let best = 0;
  for (let i = 1; i < n; i++) if (mean[i] > mean[best]) best = i;
  return { index: best, probability: mean[best], unknown: best === n - 1 };
}

class Tracker {
  constructor() { this.tracks = []; this.nextId = 1; }

  /** This frame's faces matched to tracks (each face's track, in order); `version`: the model's. */
  update(frame, faces, version) {
    const pairs = [];
    this.tracks.forEach((track, t) => faces.forEach((face, f) => pairs.push([iou(track.box, face.box), t, f])));
    pairs.sort((a, b) => b[0] - a[0]);
    const matched = new Map(), used = new Set();
    for (const [overlap, t, f] of pairs) {
      if (overlap < MATCH_IOU) break;
      if (used.has(t) || matched.has(f)) continue;
      used.add(t);
      matched.set(f, this.tracks[t]);
    }
    return faces.map((face, f) => {
      let track = matched.get(f);
      if (track && face.embedding && someoneElse(track, face, version)) {
        this.tracks = this.tracks.filter((t) => t !== track);  // someone else stepped into its place
        track = undefined;
      }
      if (!track) {
        track = { id: this.nextId++, samples: [], version: null, decision: null, references: [], doubts: 0 };
        if (face.embedding) someoneElse(track, face, version);
        this.tracks.push(track);
      }
      track.box = face.box;
      track.lastFrame = frame;
      return track;
    });
  }

  close(frame) {
    this.tracks = this.tracks.filter((t) => frame - t.lastFrame <= MAX_MISSED);
  }
}

// What the banner says and why (`kind`): a later success of that kind clears it ("Update failed"
// stood over a working page for good).
let shownKind = null;
function show(text, kind = null) {
  $("message").textContent = text;
  $("message").hidden = !text;
  shownKind = text ? kind : null;
}
function clear(kind) {
  if (shownKind === kind) show("");
}

// Starting again after a failure (the server restarting behind a proxy, no version yet): 2 s, then
// twice as long each time up to a minute. Only a refused key waits for the user.
const RETRY_FIRST_SECONDS = 2;
const RETRY_MOST_SECONDS = 60;
let retryDelay = RETRY_FIRST_SECONDS;
let retryTimer = null;
let starting = false, running = false;  // one start at a time, one recognition loop ever

async function start(key) {
  if (starting || running) return;  // Start pressed twice ran two loops
  clearTimeout(retryTimer);
  starting = true;
  $("start").disabled = true;
  let client;
  try {
    client = await connect(location.origin, { apiKey: key || undefined });
  } catch (error) {
    $("network").textContent = "Not connected";
    if (error.status === 401 || error.status === 403) {
      $("login").hidden = false;
      show(key ? "That key was refused." : "This server needs an API key.", "start");
      return;
    }
    const seconds = retryDelay;
    retryDelay = Math.min(RETRY_MOST_SECONDS, retryDelay * 2);
    show(`Cannot start: ${error.message.replace(/\.$/, "")}. Trying again in ${seconds} s.`, "start");
    retryTimer = setTimeout(() => start(key), seconds * 1000);
    return;
  } finally {
    starting = false;
    $("start").disabled = false;
  }
  running = true;
  retryDelay = RETRY_FIRST_SECONDS;
  $("login").hidden = true;
  show("");
  const status = () => {
    $("version").textContent = client.version;
    $("network").textContent = client.offline ? "Offline: recognising with the version held here" : "Online";
    $("network").classList.toggle("offline", client.offline);
  };
  status();
  setInterval(async () => {
    try {
      await client.update();
      clear("update");
    } catch (error) { show(`Update failed: ${error.message}`, "update"); }
    status();
  }, UPDATE_SECONDS * 1000);

  const video = $("camera");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (error) {
    show(`No camera: ${error.message}`, "camera");
    return;
  }
  await video.play();
  if (MIN_FACE_ASKED) { show(MIN_FACE_ASKED); return; }
  const overlay = $("overlay"), context = overlay.getContext("2d");
  const tracker = new Tracker();
  let frame = 0;
  window.faceforgeLive = { client, tracker, Tracker, label };  // for tests and debugging

  async function step() {
    if (!video.videoWidth) { requestAnimationFrame(step); return; }
    if (MIN_FACE_SIZE > Math.min(video.videoWidth, video.videoHeight)) {
      show(`?min_face=${MIN_FACE_SIZE} is larger than the camera's ${video.videoWidth}×${video.videoHeight} frame: no face can be found`, "frame");
      setTimeout(step, 1000);  // the camera may change its frame
      return;
    }
    clear("frame");
    const started = performance.now();
    let faces = [];
    try {
      faces = await client.recognize(video, { minFaceSize: MIN_FACE_SIZE });
      clear("recognition");
    } catch (error) {
      show(`Recognition failed: ${error.message}`, "recognition");
    }
    frame += 1;
    const tracks = tracker.update(frame, faces, client.version);
    tracker.close(frame);
    faces.forEach((face, i) => {
      const track = tracks[i];
      if (track.version !== client.version) { track.samples = []; track.version = client.version; track.decision = null; }
      if (!track.decision && !track.doubts) {
        track.samples.push(face.probabilities);
        if (track.samples.length >= SAMPLES) {
          const d = decide(track.samples);
          const person = d.unknown ? null : client.personAt(d.index);
          track.decision = { name: person ? person.name : null, probability: d.probability };
        }
      }
    });
    draw(context, overlay, video, faces, tracks);
    $("speed").textContent = `${Math.round(performance.now() - started)} ms a frame`;
    setTimeout(step, 0);
  }
  requestAnimationFrame(step);
}

/** The track's decision, unless its latest face is in doubt (unlike it: maybe someone else in its
 * place, named afresh if a second face agrees). A tester saw the previous person's name on the
 * newcomer's face for that frame at every swap. */
function shown(track) {
  return track.doubts ? null : track.decision;
}

function label(track) {
  const decision = shown(track);
  if (!decision) return "…";
  return decision.name ?? "Unknown";
}

function draw(context, overlay, video, faces, tracks) {
  overlay.width = video.videoWidth;
  overlay.height = video.videoHeight;
  context.clearRect(0, 0, overlay.width, overlay.height);
  context.lineWidth = Math.max(2, overlay.width / 320);
  context.font = `${Math.max(14, Math.round(overlay.width / 32))}px system-ui, sans-serif`;
  faces.forEach((face, i) => {
    const track = tracks[i], known = shown(track)?.name;
    const { x, y, width, height } = face.box;
    context.strokeStyle = known ? "#22c55e" : "#e5e7eb";
    context.strokeRect(x, y, width, height);
    const text = label(track);
    const w = context.measureText(text).width + 10, h = parseInt(context.font, 10) + 8;
    context.fillStyle = "rgba(17, 24, 39, 0.8)";
    context.fillRect(x, Math.max(0, y - h), w, h);
    context.fillStyle = "#fff";
    context.fillText(text, x + 5, Math.max(0, y - h) + h - 8);
  });
  const list = $("faces");
  const items = tracks.filter((t) => shown(t)).map((t) => {
    const li = document.createElement("li"), decision = shown(t);
    li.className = decision.name ? "known" : "unknown";
    li.textContent = decision.name ? `${decision.name} (${Math.round(decision.probability * 100)} %)` : "Unknown";
    return li;
  });
  const text = items.map((li) => li.textContent).join("|");
  if (list.dataset.shown !== text) { list.replaceChildren(...items); list.dataset.shown = text; }
}

// The page and its code reload without the server (the models are the client's own cache).
navigator.serviceWorker?.register("/live-sw.js", { scope: "/live" }).catch((error) => show(`Offline reloads are off: ${error.message}`));

$("fullscreen").addEventListener("click", () => document.documentElement.requestFullscreen?.());
if (kiosk) document.addEventListener("click", () => document.documentElement.requestFullscreen?.(), { once: true });
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  (kiosk ? localStorage : sessionStorage).setItem(KEY_STORAGE, key);
  start(key);
});
start(sessionStorage.getItem(KEY_STORAGE) || localStorage.getItem(KEY_STORAGE));
