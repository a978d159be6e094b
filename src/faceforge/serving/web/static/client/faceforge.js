// faceforge's browser client: recognition on the device with a version's exported files.
//
//   import { connect } from "http://faceforge-host:8000/client/faceforge.js";
//   const client = await connect("http://faceforge-host:8000", { apiKey: "<read key>" });
//   const faces = await client.recognize(imageBitmapOrVideoOrCanvas);  // [{box, name, personId, probability}]
//
// What it runs: the version's `browser` variant (manifest.json, `variants.browser.files`): MTCNN's
// P-Net and R-Net (`detector_pnet.onnx`, `detector_rnet.onnx`), the refiner (O-Net, `refiner.onnx`,
// MTCNN's third stage too), the shared backbone and the version's head, on ONNX Runtime Web (WASM,
// served by faceforge under a path naming the installed runtime, which faceforge writes into the
// imports below as it serves this file: an upgrade never pairs this file with another runtime). Around the networks it follows the server step by step
// (`contract.js`), so its decisions are the server's. Files live in Cache Storage under their sha256
// and are verified on download; `update()` fetches only the files whose sha256 it does not hold (the
// head for each new version), and a client whose server is gone starts from the version it used last.

import * as ort from "./ort/ort.wasm.min.mjs";
import * as contract from "./contract.js";

const API = "/api/v1";
const VARIANT = "browser";
const CURRENT = "current-manifest.json";

/** Every failure of the client: `code` says which (the server's own code when it answered one). */
export class FaceforgeError extends Error {
  constructor(code, message, status = null) {
    super(message);
    this.name = "FaceforgeError";
    this.code = code;
    this.status = status;
  }
}

let runtimeReady = null;
function runtime() {
  if (!runtimeReady) {
    ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
    // Threads need a cross-origin isolated page (COOP + COEP); otherwise one.
    ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    runtimeReady = Promise.resolve(ort);
  }
  return runtimeReady;
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Answers of a reverse proxy while faceforge restarts behind it, or faceforge's own 503 while its
// database is away: the server is out of reach for now, as when the network is down.
const PASSING_STATUSES = new Set([502, 503, 504]);
const outOfReach = (error) => error.code === "server_unreachable" || PASSING_STATUSES.has(error.status);

async function serverError(response) {
  let code = `http_${response.status}`, message = `the server answered ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch { /* not JSON */ }
  return new FaceforgeError(code, message, response.status);
}

/** The backbone's rows scaled to length 1, as the server scales them: the int8 graph's own final
 * division runs on requantised norms and misses by up to half a percent, which every similarity the
 * head computes would carry. */
function unitRows(tensor) {
  const [n, size] = tensor.dims, data = new Float32Array(tensor.data);
  for (let i = 0; i < n; i++) {
    const row = data.subarray(i * size, (i + 1) * size);
    let sum = 0;
    for (const v of row) sum += v * v;
    const norm = Math.max(Math.sqrt(sum), 1e-12);
    for (let k = 0; k < size; k++) row[k] /= norm;
  }
  return new ort.Tensor("float32", data, tensor.dims);
}

/** An RGB picture (`contract.picture`) from an ImageBitmap, image, video, video frame, canvas,
 * ImageData or `{width, height, data}` RGB. */
export function toPicture(image) {
  if (!image) throw new FaceforgeError("invalid_image", "recognize() needs an image, video frame or canvas");
  if (image.data instanceof Uint8Array && image.width && image.height && image.data.length === image.width * image.height * 3) {
    return contract.picture(image.width, image.height, image.data);
  }
  if (typeof ImageData !== "undefined" && image instanceof ImageData) return contract.fromRgba(image.data, image.width, image.height);
  const width = image.videoWidth || image.naturalWidth || image.displayWidth || image.width;
  const height = image.videoHeight || image.naturalHeight || image.displayHeight || image.height;
  const drawable = (typeof ImageBitmap !== "undefined" && image instanceof ImageBitmap)
    || (typeof HTMLImageElement !== "undefined" && image instanceof HTMLImageElement)
    || (typeof HTMLVideoElement !== "undefined" && image instanceof HTMLVideoElement)
    || (typeof HTMLCanvasElement !== "undefined" && image instanceof HTMLCanvasElement)
    || (typeof OffscreenCanvas !== "undefined" && image instanceof OffscreenCanvas)
    || (typeof VideoFrame !== "undefined" && image instanceof VideoFrame);
  if (!drawable) throw new FaceforgeError("invalid_image", "recognize() takes an ImageBitmap, image, video, video frame, canvas or ImageData");
  if (!width || !height) throw new FaceforgeError("invalid_image", "the image has no pixels (not loaded yet?)");
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0, width, height);
  return contract.fromRgba(context.getImageData(0, 0, width, height).data, width, height);
}

class Client {
  constructor(baseUrl, apiKey) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.apiKey = apiKey || null;
    this.version = null;
    this.manifest = null;
    this.offline = false;
    this.people = {};  // label -> {id, name}
    this.lastDownload = { downloaded: [], reused: [] };
    this._sessions = new Map();  // sha256 -> InferenceSession
    this._nets = null;
    this._queue = Promise.resolve();
    this._cacheName = `faceforge ${this.baseUrl}`;
  }

  _blobKey(sha) { return `${this.baseUrl}/client-cache/${sha}`; }

  async _fetch(path) {
    const headers = this.apiKey ? { "X-API-Key": this.apiKey } : {};
    let response;
    try {
      response = await fetch(this.baseUrl + path, { headers, cache: "no-store" });
    } catch (error) {
      throw new FaceforgeError("server_unreachable", `faceforge at ${this.baseUrl} could not be reached (${error.message})`);
    }
    if (!response.ok) throw await serverError(response);
    return response;
  }

  /** Fetch the current version if it is not the one in use: only files whose sha256 is not cached
   * are downloaded (and verified). Resolves to `{version, changed, downloaded, reused, offline}`;
   * without a server (unreachable, or a proxy's 502, 503 or 504 for it) it keeps the version in use
   * (`offline: true`). */
  async update() {
    return this._serialised(() => this._update());
  }

  async _update() {
    let current;
    try {
      current = await (await this._fetch(`${API}/models/current`)).json();
    } catch (error) {
      if (outOfReach(error) && this._nets) {
        this.offline = true;
        return { version: this.version, changed: false, downloaded: [], reused: [], offline: true };
      }
      throw error;
    }
    this.offline = false;
    if (current.version === this.version) {
      return { version: this.version, changed: false, downloaded: [], reused: [], offline: false };
    }
    const manifestBytes = await (await this._fetch(`${API}/models/${current.version}/files/manifest.json`)).arrayBuffer();
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    const names = this._files(manifest);
    const cache = await caches.open(this._cacheName);
    const downloaded = [], reused = [];
    for (const name of names) {
      const { sha256: expected } = manifest.files[name];
      if (this._sessions.has(expected) || await cache.match(this._blobKey(expected))) {
        reused.push(name);
        continue;
      }
      const bytes = await (await this._fetch(`${API}/models/${manifest.version}/files/${encodeURIComponent(name)}`)).arrayBuffer();
      const actual = await sha256(bytes);
      if (actual !== expected) {
        throw new FaceforgeError("checksum_mismatch", `${name} of version ${manifest.version} does not match its sha256 in the manifest`);
      }
      await cache.put(this._blobKey(expected), new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
      downloaded.push(name);
    }
    await this._load(manifest, cache);
    await cache.put(this._blobKey(CURRENT), new Response(manifestBytes, { headers: { "Content-Type": "application/json" } }));
    await this._prune(cache, manifest);
    this.lastDownload = { downloaded, reused };
    return { version: this.version, changed: true, downloaded, reused, offline: false };
  }

  _files(manifest) {
    const variant = (manifest.variants || {})[VARIANT];
    if (!variant) {
      throw new FaceforgeError("no_browser_files", `version ${manifest.version} has no ${VARIANT} files (its worker predates the browser client, or FACEFORGE_WORKER__FORMATS lacks onnx)`);
    }
    return variant.files;
  }

  /** Start from the version used last (Cache Storage), without the server. */
  async _loadCached() {
    const cache = await caches.open(this._cacheName);
    const stored = await cache.match(this._blobKey(CURRENT));
    if (!stored) return false;
    await this._load(await stored.json(), cache);
    this.offline = true;
    return true;
  }

  async _session(cache, sha) {
    if (this._sessions.has(sha)) return this._sessions.get(sha);
    const stored = await cache.match(this._blobKey(sha));
    if (!stored) throw new FaceforgeError("cache_incomplete", `model file ${sha} is missing from the browser's cache`);
    const bytes = new Uint8Array(await stored.arrayBuffer());
    if (await sha256(bytes) !== sha) throw new FaceforgeError("checksum_mismatch", `the cached model file ${sha} is damaged`);
    // The backbone is the server's int8 graph with 7-bit weights (QuantizeLinear/DequantizeLinear
    // pairs): ONNX Runtime fuses them into its integer kernels, twice as fast in WASM as the float32 graph.
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    this._sessions.set(sha, session);
    return session;
  }

  async _load(manifest, cache) {
    await runtime();
    const roles = manifest.variants[VARIANT].roles;
    const session = (role) => this._session(cache, manifest.files[roles[role]].sha256);
    const [pnet, rnet, refiner, backbone, head] = await Promise.all(
      ["pnet", "rnet", "refiner", "backbone", "head"].map(session));
    const used = new Set(Object.values(roles).map((name) => manifest.files[name].sha256));
    for (const sha of [...this._sessions.keys()]) {
      if (!used.has(sha)) { this._sessions.get(sha).release?.(); this._sessions.delete(sha); }
    }
    this._nets = { pnet, rnet, refiner, backbone, head };
    this.manifest = manifest;
    this.version = manifest.version;
    this.labels = manifest.labels;
    this.people = Object.fromEntries(manifest.people.map((p) => [p.label, { id: p.id, name: p.name }]));
  }

  async _prune(cache, manifest) {
    const kept = new Set(this._files(manifest).map((name) => this._blobKey(manifest.files[name].sha256)));
    kept.add(this._blobKey(CURRENT));
    for (const request of await cache.keys()) {
      if (!kept.has(request.url)) await cache.delete(request);
    }
  }

  _serialised(work) {
    const run = this._queue.then(work, work);
    this._queue = run.catch(() => undefined);
    return run;
  }

  /** Every face in `image`, largest first: `{box, name, personId, probability, label, refinedBox,
   * points, probabilities}`; `name` and `personId` are null for a stranger (the head's `unknown`
   * output wins), `probability` is the winning output's. `minFaceSize`: the smallest face side
   * searched for, in pixels (default the server's, 20; a camera watching a doorway may take 60,
   * which finds faces several times faster). */
  async recognize(image, { minFaceSize = contract.DETECTOR.minFaceSize } = {}) {
    if (!(Number.isFinite(minFaceSize) && minFaceSize >= 12)) {
      throw new FaceforgeError("invalid_min_face_size", "minFaceSize is a number of pixels, at least 12");
    }
    const picture = toPicture(image);
    return this._serialised(() => this._recognize(picture, { ...contract.DETECTOR, minFaceSize }));
  }

  /** The steps of `recognize` for an RGB picture, each kept: detections, refined faces, face crops
   * and chips, embeddings and probabilities (what contract_vectors.json lists). */
  async analyse(picture, options = contract.DETECTOR) {
    return this._serialised(() => this._analyse(picture, options));
  }

  async _analyse(picture, options = contract.DETECTOR) {
    if (!this._nets) throw new FaceforgeError("not_loaded", "no model version is loaded");
    const nets = this._nets;
    const run = async (session, feeds) => session.run(feeds);
    const detectors = {
      pnet: async (input, width, height) => {
        const answer = await run(nets.pnet, { [nets.pnet.inputNames[0]]: new ort.Tensor("float32", input, [1, width, height, 3]) });
        const offsets = answer[nets.pnet.outputNames[0]], probabilities = answer[nets.pnet.outputNames[1]];
        return { offsets: offsets.data, probabilities: probabilities.data, X: probabilities.dims[1], Y: probabilities.dims[2] };
      },
      rnet: async (input, n) => {
        const answer = await run(nets.rnet, { [nets.rnet.inputNames[0]]: new ort.Tensor("float32", input, [n, 24, 24, 3]) });
        return { offsets: answer[nets.rnet.outputNames[0]].data, probabilities: answer[nets.rnet.outputNames[1]].data };
      },
      onet: (patches) => this._refine(patches),
    };
    const detections = await contract.detectFaces(picture, detectors, options);
    if (!detections.length) return { detections, refined: [], crops: [], chips: [], embeddings: [], probabilities: [] };
    const squares = detections.map((face) => contract.refinerPatch(picture, face.box));
    const answer = await this._refine(squares.map((s) => s.patch));
    const refined = squares.map((s, i) => contract.refinedFace(s, answer.probability[i],
      answer.offsets.subarray(i * 4, i * 4 + 4), answer.landmarks.subarray(i * 10, i * 10 + 10)));
    const crops = refined.map((face) => contract.cropFace(picture, face.box));
    const chips = refined.map((face) => contract.alignFace(picture, face.points, face.box));
    const n = refined.length;
    const embedded = await run(nets.backbone, {
      face: new ort.Tensor("float32", contract.planar(crops), [n, 3, contract.CROP_SIZE, contract.CROP_SIZE]),
      chip: new ort.Tensor("float32", contract.planar(chips), [n, 3, contract.CHIP_SIZE, contract.CHIP_SIZE]),
    });
    const embedding = unitRows(embedded.embedding);
    const classes = await run(nets.head, { embedding });
    const size = embedding.dims[1], outputs = this.labels.length + 1;
    const embeddings = [], probabilities = [];
    for (let i = 0; i < n; i++) {
      embeddings.push(embedding.data.slice(i * size, (i + 1) * size));
      probabilities.push(classes.probabilities.data.slice(i * outputs, (i + 1) * outputs));
    }
    return { detections, refined, crops, chips, embeddings, probabilities };
  }

  async _refine(patches) {
    const nets = this._nets;
    const answer = await nets.refiner.run({
      patch: new ort.Tensor("float32", contract.planar(patches), [patches.length, 3, contract.PATCH_SIZE, contract.PATCH_SIZE]),
    });
    return { probability: answer.face_probability.data, offsets: answer.box_offsets.data, landmarks: answer.landmarks.data };
  }

  async _recognize(picture, options) {
    const steps = await this._analyse(picture, options);
    return steps.detections.map((detection, i) => {
      const probabilities = steps.probabilities[i];
      let best = 0;
      for (let k = 1; k < probabilities.length; k++) if (probabilities[k] > probabilities[best]) best = k;
      const label = best < this.labels.length ? this.labels[best] : null;
      const person = label ? this.people[label] : null;
      return {
        box: detection.box, name: person ? person.name : null, personId: person ? person.id : null,
        probability: probabilities[best], label, score: detection.score, refinedBox: steps.refined[i].box,
        points: steps.refined[i].points, probabilities, embedding: steps.embeddings[i],
      };
    });
  }

  /** The person of a head output index (`null` for the last, `unknown`). */
  personAt(index) {
    const label = this.labels[index];
    return label ? this.people[label] : null;
  }
}

/** A client of the faceforge server at `baseUrl` with the current version loaded (downloaded, or
 * from the browser's cache when the server cannot be reached or a proxy answers 502, 503 or 504 for
 * it). `apiKey`: a read key, if the server has keys. */
export async function connect(baseUrl, { apiKey } = {}) {
  if (typeof baseUrl !== "string" || !/^https?:\/\//.test(baseUrl)) {
    throw new FaceforgeError("invalid_url", "connect() needs the server's http(s) URL, e.g. \"http://127.0.0.1:8000\"");
  }
  const client = new Client(baseUrl, apiKey);
  try {
    await client.update();
  } catch (error) {
    if (!outOfReach(error)) throw error;
    if (!(await client._loadCached())) {
      const why = error.code === "server_unreachable" ? "could not be reached" : `answered ${error.status}`;
      throw new FaceforgeError("offline_without_model", `faceforge at ${client.baseUrl} ${why} and this browser holds no model of it yet`);
    }
  }
  return client;
}

export { contract };
