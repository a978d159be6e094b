// The camera page's service worker (scope /live): the page and the client's code, network first,
// answered from this cache when faceforge cannot be reached, so /live reloads offline. The model files
// are the client's own (Cache Storage, by sha256); API calls pass through untouched.
const CACHE = "faceforge-live-shell";
const SHELL = [
  "/live", "/client/live.js", "/client/faceforge.js", "/client/contract.js", "/ui/favicon.svg",
  "/client/ort/ort.wasm.min.mjs", "/client/ort/ort-wasm-simd-threaded.mjs", "/client/ort/ort-wasm-simd-threaded.wasm",
];

// A proxy's answers while faceforge restarts behind it (faceforge.js treats them the same way).
const PASSING_STATUSES = new Set([502, 503, 504]);

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

// faceforge serves this worker with the runtime's paths naming its tag: after an upgrade, the
// previous runtime's files are dropped from the cache.
self.addEventListener("activate", (event) => event.waitUntil((async () => {
  const cache = await caches.open(CACHE);
  for (const request of await cache.keys()) {
    if (!SHELL.includes(new URL(request.url).pathname)) await cache.delete(request);
  }
  await self.clients.claim();
})()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(event.request);
      if (response.ok) {
        const copy = response.clone();
        event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
      } else if (PASSING_STATUSES.has(response.status)) {
        // A reverse proxy's error page while faceforge is away: out of reach, as a network error is.
        const cached = await caches.match(url.pathname);
        if (cached) return cached;
      }
      return response;
    } catch (error) {
      const cached = await caches.match(url.pathname);
      if (cached) return cached;
      throw error;
    }
  })());
});
