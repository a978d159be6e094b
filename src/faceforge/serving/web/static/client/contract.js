// The app-side contract in JavaScript, pixel for pixel as the server runs it (no dependencies):
// - `resize`, `crop`: Pillow's bilinear resampling (separable, area-averaging when shrinking, 22-bit
//   fixed-point coefficients, each pass rounded to 8 bits) and crops that are black beyond the photo;
// - the MTCNN detector's arithmetic around its networks (`serving/vision/mtcnn.py`: pyramid, float32
//   box maths, non-maximum suppression) and the pipeline's framing (`serving/vision/pipeline.py`);
// - refine (`serving/vision/refine.py`), crop (`crop.py`) and align (`align.py`: the least-squares
//   similarity onto the chip template, sampled as Pillow's affine transform does).
// A picture is `{width, height, data}`: `data` a Uint8Array of width * height * 3 RGB bytes, rows top
// to bottom. Boxes are `{x, y, width, height}` in pixels of the picture, origin top left.

export const CROP_SIZE = 160;
export const CROP_MARGIN = 0.05;
export const PATCH_SIZE = 48;
export const CHIP_SIZE = 150;
export const CHIP_TEMPLATE = [[47.0, 44.8], [102.3, 44.9], [73.8, 77.8], [50.5, 104.6], [98.2, 104.7]];
// MTCNN as the server runs it (`core/config.py` DetectorSettings, `vision/pipeline.py`).
export const DETECTOR = {
  minFaceSize: 20, thresholds: [0.6, 0.7, 0.8], scaleFactor: 0.709, maxSide: 1280, minScore: 0.95,
  chipPadding: 0.3,
};
const PNET_STRIDE = 2;
const PNET_CELL = 12;
const PRECISION_BITS = 22;
const f32 = Math.fround;

/** Python's round(): halves to even (NumPy's np.round too). */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export function picture(width, height, data = new Uint8Array(width * height * 3)) {
  return { width, height, data };
}

/** RGBA bytes (ImageData) -> RGB picture. */
export function fromRgba(rgba, width, height) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
    data[i] = rgba[j]; data[i + 1] = rgba[j + 1]; data[i + 2] = rgba[j + 2];
  }
  return picture(width, height, data);
}

// Pillow's precompute_coeffs for the bilinear (triangle) filter, normalised to 22-bit integers.
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = 1.0 * filterScale;
  const kSize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * kSize);
  const weights = new Float64Array(kSize);
  for (let xx = 0; xx < outSize; xx++) {
    const centre = (xx + 0.5) * scale;
    const ss = 1.0 / filterScale;
    let xmin = Math.trunc(centre - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(centre + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - centre + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      weights[x] = w;
      total += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = total !== 0.0 ? weights[x] / total : weights[x];
      kk[xx * kSize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, kSize };
}

function clip8(sum) {
  const v = Math.floor(sum / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontal(src, outWidth) {
  const { bounds, kk, kSize } = coefficients(src.width, outWidth);
  const out = picture(outWidth, src.height);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < src.height; y++) {
    const row = y * src.width * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * kSize;
      let r = half, g = half, b = half;
      for (let x = 0; x < xmax; x++) {
        const p = row + (xmin + x) * 3, w = kk[k + x];
        r += src.data[p] * w; g += src.data[p + 1] * w; b += src.data[p + 2] * w;
      }
      const o = (y * outWidth + xx) * 3;
      out.data[o] = clip8(r); out.data[o + 1] = clip8(g); out.data[o + 2] = clip8(b);
    }
  }
  return out;
}

function vertical(src, outHeight) {
  const { bounds, kk, kSize } = coefficients(src.height, outHeight);
  const out = picture(src.width, outHeight);
  const half = 1 << (PRECISION_BITS - 1);
  const stride = src.width * 3;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k = yy * kSize;
    for (let i = 0; i < stride; i++) {
      let sum = half;
      for (let y = 0; y < ymax; y++) sum += src.data[(ymin + y) * stride + i] * kk[k + y];
      out.data[yy * stride + i] = clip8(sum);
    }
  }
  return out;
}

/** Pillow's `Image.resize((width, height), BILINEAR)`: horizontal pass, then vertical. */
export function resize(src, width, height) {
  let out = src;
  if (width !== src.width) out = horizontal(out, width);
  if (height !== src.height) out = vertical(out, height);
  return out;
}

/** Pillow's `Image.crop((left, top, right, bottom))`: black beyond the picture. */
export function crop(src, left, top, right, bottom) {
  const width = Math.max(0, right - left), height = Math.max(0, bottom - top);
  const out = picture(width, height);
  const x0 = Math.max(left, 0), x1 = Math.min(right, src.width);
  if (x1 <= x0) return out;
  for (let y = Math.max(top, 0); y < Math.min(bottom, src.height); y++) {
    const from = (y * src.width + x0) * 3;
    out.data.set(src.data.subarray(from, from + (x1 - x0) * 3), ((y - top) * width + (x0 - left)) * 3);
  }
  return out;
}

/** The crop contract's square `[left, top, right, bottom]` around a box (`vision/crop.py`). */
export function cropSquare(box, margin = CROP_MARGIN) {
  const side = Math.max(box.width, box.height) * (1.0 + 2.0 * margin);
  const cx = box.x + box.width / 2.0, cy = box.y + box.height / 2.0;
  const left = Math.floor(cx - side / 2.0 + 0.5), top = Math.floor(cy - side / 2.0 + 0.5);
  const whole = Math.max(1, Math.floor(side + 0.5));
  return [left, top, left + whole, top + whole];
}

/** `face`: the crop contract on a (refined) box, `size` x `size` RGB. */
export function cropFace(src, box, margin = CROP_MARGIN, size = CROP_SIZE) {
  const [l, t, r, b] = cropSquare(box, margin);
  return resize(crop(src, l, t, r, b), size, size);
}

// ---- the chip contract (vision/align.py) ----

/** The 2 x 3 similarity `[a, -b, tx, b, a, ty]` sending the five points closest to the template. */
export function similarityToTemplate(points, size = CHIP_SIZE) {
  const k = size / CHIP_SIZE;
  let pmx = 0, pmy = 0, qmx = 0, qmy = 0;
  for (let i = 0; i < 5; i++) {
    const [px, py] = points[i];
    if (!Number.isFinite(px) || !Number.isFinite(py)) throw new Error("the five points are not finite");
    pmx += px; pmy += py; qmx += CHIP_TEMPLATE[i][0] * k; qmy += CHIP_TEMPLATE[i][1] * k;
  }
  pmx /= 5; pmy /= 5; qmx /= 5; qmy /= 5;
  let norm = 0, dot = 0, cross = 0;
  for (let i = 0; i < 5; i++) {
    const sx = points[i][0] - pmx, sy = points[i][1] - pmy;
    const tx = CHIP_TEMPLATE[i][0] * k - qmx, ty = CHIP_TEMPLATE[i][1] * k - qmy;
    norm += sx * sx + sy * sy; dot += sx * tx + sy * ty; cross += sx * ty - sy * tx;
  }
  if (!(norm > 0)) throw new Error("the five points coincide");
  const a = dot / norm, b = cross / norm;
  if (a === 0 && b === 0) throw new Error("the five points determine no rotation or scale");
  return [a, -b, qmx - (a * pmx - b * pmy), b, a, qmy - (b * pmx + a * pmy)];
}

function templateInBox(box) {
  const w = Math.max(box.width, 1.0), h = Math.max(box.height, 1.0);
  return CHIP_TEMPLATE.map(([x, y]) => [box.x + x * w / CHIP_SIZE, box.y + y * h / CHIP_SIZE]);
}

function chipTransform(src, points, box, size) {
  let forward;
  try {
    forward = similarityToTemplate(points, size);
  } catch {
    return similarityToTemplate(templateInBox(box), size);
  }
  const scale = Math.hypot(forward[0], forward[3]);
  if (scale * Math.max(src.width, src.height) < 1.0) return similarityToTemplate(templateInBox(box), size);
  return forward;
}

/** Pillow's `Image.reduce(factor)`: box averages (the last row and column over what is left). */
export function reduce(src, factor) {
  const width = Math.ceil(src.width / factor), height = Math.ceil(src.height / factor);
  const out = picture(width, height);
  for (let y = 0; y < height; y++) {
    const y0 = y * factor, y1 = Math.min(y0 + factor, src.height);
    for (let x = 0; x < width; x++) {
      const x0 = x * factor, x1 = Math.min(x0 + factor, src.width);
      const area = (y1 - y0) * (x1 - x0);
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) sum += src.data[(yy * src.width + xx) * 3 + c];
        out.data[(y * width + x) * 3 + c] = Math.floor((sum + area / 2) / area);
      }
    }
  }
  return out;
}

/** Pillow's `Image.transform(size, AFFINE, inverse, BILINEAR)`: black where the source point leaves
 * the picture, edge pixels repeated within it, each channel truncated to 8 bits. */
export function affine(src, size, inv) {
  const out = picture(size, size);
  const { width: W, height: H, data } = src;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let xin = inv[0] * (x + 0.5) + inv[1] * (y + 0.5) + inv[2];
      let yin = inv[3] * (x + 0.5) + inv[4] * (y + 0.5) + inv[5];
      if (xin < 0 || xin >= W || yin < 0 || yin >= H) continue;
      xin -= 0.5; yin -= 0.5;
      const xi = Math.floor(xin), yi = Math.floor(yin), dx = xin - xi, dy = yin - yi;
      const x0 = Math.min(Math.max(xi, 0), W - 1) * 3, x1 = Math.min(Math.max(xi + 1, 0), W - 1) * 3;
      const row = Math.min(Math.max(yi, 0), H - 1) * W * 3;
      const next = yi + 1 >= 0 && yi + 1 < H ? (yi + 1) * W * 3 : -1;
      const o = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) {
        const v1 = data[row + x0 + c] + (data[row + x1 + c] - data[row + x0 + c]) * dx;
        const v2 = next < 0 ? v1 : data[next + x0 + c] + (data[next + x1 + c] - data[next + x0 + c]) * dx;
        out.data[o + c] = Math.trunc(v1 + (v2 - v1) * dy);
      }
    }
  }
  return out;
}

/** `chip`: the face aligned from its five points onto the template, `size` x `size` RGB. */
export function alignFace(src, points, box, size = CHIP_SIZE) {
  let m = chipTransform(src, points, box, size);
  const scale = Math.hypot(m[0], m[3]);
  let source = src;
  if (scale < 0.5) {
    const reduction = Math.min(Math.max(1, Math.trunc(0.5 / scale)), src.width, src.height);
    if (reduction > 1) {
      source = reduce(src, reduction);
      m = [m[0] * reduction, m[1] * reduction, m[2], m[3] * reduction, m[4] * reduction, m[5]];
    }
  }
  const det = m[0] * m[4] - m[1] * m[3];
  const inv = [m[4] / det, -m[1] / det, 0, -m[3] / det, m[0] / det, 0];
  inv[2] = -(inv[0] * m[2] + inv[1] * m[5]);
  inv[5] = -(inv[3] * m[2] + inv[4] * m[5]);
  return affine(source, size, inv);
}

// ---- refine (vision/refine.py) ----

/** Steps 1-2: the 48 x 48 patch and its square `{left, top, side}`. */
export function refinerPatch(src, box) {
  const [left, top, right] = cropSquare(box, 0.0);
  return { patch: cropFace(src, box, 0.0, PATCH_SIZE), left, top, side: right - left };
}

/** Step 4 from the refiner's answer for one face (offsets and landmarks fractions of the side). */
export function refinedFace(square, probability, offsets, landmarks) {
  const { left, top, side } = square;
  const x1 = left + offsets[0] * side, y1 = top + offsets[1] * side;
  const x2 = left + side + offsets[2] * side, y2 = top + side + offsets[3] * side;
  const points = [0, 1, 2, 3, 4].map((i) => [left + landmarks[i] * side, top + landmarks[i + 5] * side]);
  return { box: { x: x1, y: y1, width: x2 - x1, height: y2 - y1 }, points, probability };
}

// ---- MTCNN (vision/mtcnn.py), in float32 where the server computes in float32 ----

/** `(v - 127.5) / 128`, laid out `(1, width, height, 3)` as MTCNN's transposed networks take it. */
export function transposedInput(src) {
  const { width: W, height: H, data } = src;
  const out = new Float32Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3, o = (x * H + y) * 3;
      out[o] = (data[i] - 127.5) * 0.0078125;
      out[o + 1] = (data[i + 1] - 127.5) * 0.0078125;
      out[o + 2] = (data[i + 2] - 127.5) * 0.0078125;
    }
  }
  return out;
}

/** Rows of 0-255 RGB patches as NCHW float32 (the refiner's `patch`, the backbone's inputs). */
export function planar(pictures) {
  const n = pictures.length;
  if (!n) return new Float32Array(0);
  const { width: W, height: H } = pictures[0];
  const plane = W * H, out = new Float32Array(n * 3 * plane);
  pictures.forEach((p, k) => {
    const base = k * 3 * plane;
    for (let i = 0; i < plane; i++) {
      out[base + i] = p.data[i * 3];
      out[base + plane + i] = p.data[i * 3 + 1];
      out[base + 2 * plane + i] = p.data[i * 3 + 2];
    }
  });
  return out;
}

export function scales(width, height, minFaceSize, factor = DETECTOR.scaleFactor) {
  let scale = PNET_CELL / minFaceSize;
  let side = Math.min(width, height) * scale;
  const found = [];
  while (side >= PNET_CELL) {
    found.push(scale);
    scale *= factor;
    side *= factor;
  }
  return found;
}

function descendingByScore(rows) {
  // np.argsort(scores)[::-1]: ascending, then reversed
  const order = rows.map((_, i) => i).sort((a, b) => rows[a].score - rows[b].score || a - b);
  return order.reverse();
}

/** Greedy non-maximum suppression over rows `{x1, y1, x2, y2, score}` (float32 maths). */
export function nms(rows, threshold, byMin = false) {
  const t = f32(threshold);
  const area = rows.map((r) => f32(f32(f32(r.x2 - r.x1) + 1) * f32(f32(r.y2 - r.y1) + 1)));
  let order = descendingByScore(rows);
  const keep = [];
  while (order.length) {
    const best = order[0];
    keep.push(best);
    const b = rows[best];
    order = order.slice(1).filter((i) => {
      const r = rows[i];
      const w = Math.max(0, f32(f32(Math.min(b.x2, r.x2) - Math.max(b.x1, r.x1)) + 1));
      const h = Math.max(0, f32(f32(Math.min(b.y2, r.y2) - Math.max(b.y1, r.y1)) + 1));
      const inter = f32(w * h);
      const denominator = byMin ? Math.min(area[best], area[i]) : f32(f32(area[best] + area[i]) - inter);
      return f32(inter / denominator) <= t;
    });
  }
  return keep;
}

function regress(r, d) {
  const w = f32(f32(r.x2 - r.x1) + 1), h = f32(f32(r.y2 - r.y1) + 1);
  return {
    ...r,
    x1: f32(r.x1 + f32(d[0] * w)), y1: f32(r.y1 + f32(d[1] * h)),
    x2: f32(r.x2 + f32(d[2] * w)), y2: f32(r.y2 + f32(d[3] * h)),
  };
}

function square(r) {
  const w = f32(r.x2 - r.x1), h = f32(r.y2 - r.y1), side = Math.max(w, h);
  const x1 = f32(f32(r.x1 + f32(w * 0.5)) - f32(side * 0.5));
  const y1 = f32(f32(r.y1 + f32(h * 0.5)) - f32(side * 0.5));
  return { ...r, x1, y1, x2: f32(x1 + side), y2: f32(y1 + side) };
}

/** MTCNN's patches: each box cut (black beyond the border) and resized to `size`, transposed. */
function stagePatches(src, rows, size) {
  const out = new Float32Array(rows.length * size * size * 3);
  rows.forEach((r, i) => {
    const left = Math.floor(r.x1), top = Math.floor(r.y1);
    const right = Math.max(Math.floor(r.x2) + 1, left + 1), bottom = Math.max(Math.floor(r.y2) + 1, top + 1);
    out.set(transposedInput(resize(crop(src, left, top, right, bottom), size, size)), i * size * size * 3);
  });
  return out;
}

/**
 * MTCNN on one RGB picture. `nets` runs the networks (async):
 * `pnet(input Float32Array, width, height)` -> `{offsets, probabilities}` laid out `(1, X, Y, 4 | 2)`;
 * `rnet(input, n)` -> `{offsets (n, 4), probabilities (n, 2)}`;
 * `onet(patches)` -> refiner answers `{probability (n), offsets (n, 4), landmarks (n, 10)}` for
 * 48 x 48 RGB pictures. Returns faces `{box, score, points}`, highest score first.
 */
export async function mtcnn(src, nets, minFaceSize = DETECTOR.minFaceSize) {
  const [t1, t2, t3] = DETECTOR.thresholds.map(f32);
  let found = [];
  for (const scale of scales(src.width, src.height, minFaceSize)) {
    const w = Math.ceil(src.width * scale), h = Math.ceil(src.height * scale);
    const scaled = resize(src, w, h);
    const { offsets, probabilities, X, Y } = await nets.pnet(transposedInput(scaled), w, h);
    const rows = [];
    for (let x = 0; x < X; x++) {
      for (let y = 0; y < Y; y++) {
        const score = probabilities[(x * Y + y) * 2 + 1];
        if (!(score > t1)) continue;
        const o = (x * Y + y) * 4;
        rows.push({
          x1: roundHalfEven((PNET_STRIDE * x + 1) / scale), y1: roundHalfEven((PNET_STRIDE * y + 1) / scale),
          x2: roundHalfEven((PNET_STRIDE * x + PNET_CELL) / scale), y2: roundHalfEven((PNET_STRIDE * y + PNET_CELL) / scale),
          score, d: [offsets[o], offsets[o + 1], offsets[o + 2], offsets[o + 3]],
        });
      }
    }
    if (rows.length) found = found.concat(nms(rows, 0.5).map((i) => rows[i]));
  }
  if (!found.length) return [];
  let candidates = nms(found, 0.7).map((i) => square(regress(found[i], found[i].d)));
  // stage 2: R-Net
  const second = await nets.rnet(stagePatches(src, candidates, 24), candidates.length);
  const kept = [];
  candidates.forEach((r, i) => {
    const score = second.probabilities[i * 2 + 1];
    if (score > t2) kept.push({ x1: r.x1, y1: r.y1, x2: r.x2, y2: r.y2, score, d: Array.from(second.offsets.subarray(i * 4, i * 4 + 4)) });
  });
  if (!kept.length) return [];
  candidates = nms(kept, 0.7).map((i) => square(regress(kept[i], kept[i].d)));
  // stage 3: O-Net (the refiner file: the same network, rows top to bottom)
  const patches = candidates.map((r) => {
    const left = Math.floor(r.x1), top = Math.floor(r.y1);
    const right = Math.max(Math.floor(r.x2) + 1, left + 1), bottom = Math.max(Math.floor(r.y2) + 1, top + 1);
    return resize(crop(src, left, top, right, bottom), PATCH_SIZE, PATCH_SIZE);
  });
  const third = await nets.onet(patches);
  const last = [];
  candidates.forEach((r, i) => {
    const score = third.probability[i];
    if (!(score > t3)) return;
    const w = f32(f32(r.x2 - r.x1) + 1), h = f32(f32(r.y2 - r.y1) + 1);
    const l = third.landmarks.subarray(i * 10, i * 10 + 10);
    const points = [0, 1, 2, 3, 4].map((k) => [f32(r.x1 + f32(w * l[k])), f32(r.y1 + f32(h * l[k + 5]))]);
    last.push({ ...regress(r, third.offsets.subarray(i * 4, i * 4 + 4)), score, points });
  });
  const faces = nms(last, 0.7, true).map((i) => last[i]);
  faces.sort((a, b) => b.score - a.score);
  return faces.map((r) => ({
    box: { x: r.x1, y: r.y1, width: f32(r.x2 - r.x1), height: f32(r.y2 - r.y1) }, score: r.score, points: r.points,
  }));
}

function scaledFace(face, factor, shift = 0) {
  const b = face.box;
  return {
    box: { x: (b.x - shift) * factor, y: (b.y - shift) * factor, width: b.width * factor, height: b.height * factor },
    score: face.score,
    points: face.points.map(([x, y]) => [(x - shift) * factor, (y - shift) * factor]),
  };
}

function padded(src, pad) {
  const out = picture(src.width + 2 * pad, src.height + 2 * pad);
  for (let y = 0; y < src.height; y++) {
    out.data.set(src.data.subarray(y * src.width * 3, (y + 1) * src.width * 3), ((y + pad) * out.width + pad) * 3);
  }
  return out;
}

/** The server's `FacePipeline.detect` for identify: large pictures detected downscaled, a tight chip
 * retried framed in black, confident faces (`minScore`) only, largest first. */
export async function detectFaces(src, nets, options = DETECTOR) {
  const factor = Math.min(1.0, options.maxSide / Math.max(src.width, src.height));
  let small = src;
  if (factor < 1.0) {
    small = resize(src, Math.max(1, roundHalfEven(src.width * factor)), Math.max(1, roundHalfEven(src.height * factor)));
  }
  const smallest = Math.max(12, roundHalfEven(options.minFaceSize * factor));
  let faces = (await mtcnn(small, nets, smallest)).map((f) => scaledFace(f, 1.0 / factor));
  if (!faces.length) {
    const pad = roundHalfEven(options.chipPadding * Math.max(small.width, small.height));
    faces = (await mtcnn(padded(small, pad), nets, smallest)).map((f) => scaledFace(f, 1.0 / factor, pad));
  }
  faces = faces.filter((f) => f.score >= options.minScore);
  const area = (f) => f.box.width * f.box.height;
  return faces.sort((a, b) => area(b) - area(a));
}
