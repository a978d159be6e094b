// The CompreFace JavaScript SDK (npm @exadel/compreface-js-sdk 1.0.0, unmodified) against faceforge:
// node compreface_js.mjs URL KEY FACES_DIR. Prints one JSON object of what it saw; the Python test
// (tests/compat/test_clients.py) judges it.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { CompreFace } from "@exadel/compreface-js-sdk";

const [url, key, faces] = process.argv.slice(2);
const PEOPLE = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Vladimir_Putin"];
// The SDK reads a file only when its path is relative and starts with "." (otherwise it takes the
// string for a URL or a blob), as its README's examples write them.
const local = (path) => { const r = relative(process.cwd(), path); return r.startsWith(".") ? r : `./${r}`; };
const photos = (folder) => readdirSync(folder).sort().map((name) => local(join(folder, name)));
const address = new URL(url);
// No det_prob_threshold among the options: the SDK appends it to "faces?subject=..." with a second
// "?", which would become part of the subject's name.
const compreFace = new CompreFace(`${address.protocol}//${address.hostname}`, address.port, {
  limit: 0, prediction_count: 1, status: "true",
});
const recognition = compreFace.initFaceRecognitionService(key);
const seen = { added: [], probes: {}, strangers: [] };
const lfw10 = join(faces, "krasserm_lfw10");
for (const folder of PEOPLE) {
  for (const photo of photos(join(lfw10, folder)).slice(0, 5)) {
    // A fresh collection object per call: the SDK's collection mutates its own URL on deletes.
    seen.added.push(await recognition.getFaceCollection().add(photo, folder.replace("_", " ")));
  }
}
const deadline = Date.now() + 300_000;
while (Date.now() < deadline) {
  const status = await (await fetch(`${url}/api/v1/training`, { headers: { "x-api-key": key } })).json();
  if (status.state === "idle" && status.built === status.requested && status.current_version) break;
  await new Promise((resolve) => setTimeout(resolve, 500));
}
for (const folder of PEOPLE) {
  const name = folder.replace("_", " ");
  seen.probes[name] = [];
  for (const photo of photos(join(lfw10, folder)).slice(5, 10)) seen.probes[name].push(await recognition.recognize(photo, { prediction_count: 2 }));
}
for (const photo of photos(join(faces, "unknown_singles"))) seen.strangers.push(await recognition.recognize(photo, { prediction_count: 2 }));
try {
  seen.no_face = await recognition.recognize(photos(join(faces, "negatives"))[0], {});
} catch (error) {
  seen.no_face = error.response ? error.response.data : String(error);
}
// Given a base64 string, the SDK sends CompreFace's JSON body ({"file": ...}; verification's
// {"source_image": ..., "target_image": ...}) where a path goes as a multipart form.
const base64 = (path) => readFileSync(path).toString("base64");
const colin = photos(join(lfw10, "Colin_Powell"));
seen.base64_probe = await recognition.recognize(base64(colin[5]), { prediction_count: 2 });
seen.base64_added = await recognition.getFaceCollection().add(base64(colin[9]), "Colin Powell");
const verification = compreFace.initFaceVerificationService(key);
seen.verify_same = await verification.verify(base64(colin[0]), base64(colin[6]), {});
seen.verify_other = await verification.verify(base64(colin[0]), base64(photos(join(lfw10, "Hugo_Chavez"))[6]), {});
seen.rename = await recognition.getSubjects().rename("Tony Blair", "Anthony Blair");
seen.deleted = await recognition.getSubjects().delete("Vladimir Putin");
seen.subjects = await recognition.getSubjects().list();
seen.faces = await recognition.getFaceCollection().list();
process.stdout.write(JSON.stringify(seen) + "\n");
