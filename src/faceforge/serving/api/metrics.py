"""Prometheus metrics at ``/metrics``.

Per process (request counts and latency by route, faces identified) and, read from the database at
scrape time so that every API process reports the same numbers whichever worker process or machine
trained, the deployment's training figures (trainings by outcome and their durations, the current
version, the queue depth).

With several API processes (``faceforge serve --workers N``) each process writes its counters into
``PROMETHEUS_MULTIPROC_DIR`` (which ``serve`` sets before the processes start) and ``/metrics``
sums them, whichever process answers the scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceforge.core.trainer_health import TrainerHealth
from faceforge.serving.services.models import ModelService

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; identify on two cores takes 50-150 ms, model info well under 1 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """This process's request and identify metrics, in a registry owned by the app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "faceforge_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faceforge_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.identified_faces = Counter(
            "faceforge_identify_faces",
            "Faces found in identify requests: recognised as a person, or unknown.",
            ["result"],
            registry=self.registry,
        )

    def count_faces(self, known: int, unknown: int) -> None:
        if known:
            self.identified_faces.labels(result="known").inc(known)
        if unknown:
            self.identified_faces.labels(result="unknown").inc(unknown)

    def exposition(self, models: ModelService, *, trainer: TrainerHealth | None = None) -> bytes:
        """The text exposition format: this process's (or all processes') metrics, the database's, and
        the state of the trainer this process embeds (if any)."""
        registry = CollectorRegistry()
        if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Registered(self.registry))
        registry.register(TrainingCollector(models))
        if trainer is not None:
            registry.register(TrainerCollector(trainer))
        return generate_latest(registry)


class TrainerCollector(Collector):
    """The embedded trainer: whether it runs, and how often it stopped on an error and was restarted."""

    def __init__(self, trainer: TrainerHealth) -> None:
        self.trainer = trainer

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("faceforge_trainer_up", "1 while this process's embedded trainer runs.")
        up.add_metric([], 1 if self.trainer.running else 0)
        restarts = CounterMetricFamily(
            "faceforge_trainer_restarts", "Times the embedded trainer stopped on an error and was restarted."
        )
        restarts.add_metric([], self.trainer.restarts)
        return [up, restarts]


class _Registered(Collector):
    """One registry's metrics, as a collector of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class TrainingCollector(Collector):
    """The training queue and versions, as the database holds them (the worker may run elsewhere)."""

    def __init__(self, models: ModelService) -> None:
        self.models = models

    def collect(self) -> Iterable[Metric]:
        status, outcomes = self.models.training_figures()
        current = GaugeMetricFamily("faceforge_current_model_version", "The served model version (0: none).")
        current.add_metric([], status.current_version or 0)
        queued = GaugeMetricFamily(
            "faceforge_training_queue_depth", "Changes recorded that no finished version covers yet."
        )
        queued.add_metric([], max(0, status.requested - status.built))
        trainings = CounterMetricFamily(
            "faceforge_trainings", "Trainings finished, by outcome.", labels=["outcome"]
        )
        durations = SummaryMetricFamily(
            "faceforge_training_duration_seconds",
            "Time from a training's claim to its outcome, by outcome.",
            labels=["outcome"],
        )
        for outcome, (count, seconds) in sorted(outcomes.items()):
            trainings.add_metric([outcome], count)
            durations.add_metric([outcome], count_value=count, sum_value=seconds)
        return [current, queued, trainings, durations]


class MetricsMiddleware:
    """Counts and times every request by its route template (``/api/v1/people/{person_id}``, not the
    path, so a label never holds an id)."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler ends as a 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = _route_template(scope)
            method = scope.get("method", "")
            method = method if method in KNOWN_METHODS else "OTHER"
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route, method=method).observe(time.perf_counter() - started)


# The HTTP parser takes any token as a method, and refused requests are counted too: a label per method
# a client made up would grow the metrics (and this process) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
