"""A request that may carry photos counts as a photo for ``serving.awake_cores`` from its arrival to
its answer, not only while the photo is analysed.

The pollers never spin during a photo (each wake-up of a thread on a core a spinner holds costs more),
but until now they spun on while the request was parsed, its upload read, its version looked up and
its answer written: the event loop, the pool thread and the detector's threads all woke onto spinning
cores. Measured in one API process, identify requests at 10/s alternating between the two ways
(the benchmark's probe, AMD EPYC Zen 4 KVM guest, two runs of 600): p50 32.2 / 32.3 ms stopping the
pollers as the request arrives, 34.8 / 36.0 stopping them as the analysis begins.

Every request with a body (POST, PUT, PATCH) counts: those are the photo uploads, and the few others
(a rename, a merge) cost the pollers nothing but a pause. Downloads and model info, which phones ask
for far more often, are left alone.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class PhotoRequestMiddleware:
    """Tells the process's ``AwakeCores`` (``Services.awake``, once the app has started) that a photo
    request began and ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        awake = None
        if scope["type"] == "http" and scope.get("method") in BODY_METHODS:
            services = getattr(scope["app"].state, "services", None)  # None before the lifespan's start
            awake = getattr(services, "awake", None)
        if awake is None:
            await self.app(scope, receive, send)
            return
        awake.working()
        try:
            await self.app(scope, receive, send)
        finally:
            awake.resting()
