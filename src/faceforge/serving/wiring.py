"""The services, built in one place: for the API (created by the app's lifespan and owned by it, no
module-level state), for the CLI's local imports and for ``faceforge build``. Not part of the HTTP layer:
whoever needs the services imports this module, never ``serving.api``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.config import Settings
from faceforge.core.errors import FaceforgeError
from faceforge.core.trainer_health import TrainerHealth
from faceforge.serving.api.metrics import ServiceMetrics
from faceforge.serving.api.version_answers import VersionAnswers
from faceforge.serving.awake_cores import AwakeCores
from faceforge.serving.services.compat import CompatService
from faceforge.serving.services.identify import IdentifyService
from faceforge.serving.services.models import ModelService
from faceforge.serving.services.people import PeopleService
from faceforge.serving.services.strangers import StrangersService
from faceforge.serving.services.vision_gate import VisionGate
from faceforge.serving.vision.embedder import torch_installed
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database

NO_EMBEDDED_WORKER = (
    "this install has no PyTorch (pip install 'faceforge[serve]'), so `serve` cannot run its embedded "
    "training worker: set FACEFORGE_WORKER__EMBEDDED=false and run `faceforge worker` from the worker "
    "install (pip install 'faceforge[worker]') on the same home and database"
)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    pipeline: FacePipeline
    people: PeopleService
    models: ModelService
    identify: IdentifyService
    compat: CompatService
    metrics: ServiceMetrics
    strangers: StrangersService
    answers: VersionAnswers = field(default_factory=VersionAnswers)
    stop_worker: Callable[[], None] | None = None
    trainer: TrainerHealth | None = None  # the embedded trainer's, if this process runs one
    awake: AwakeCores | None = None  # keeps the cores awake through streams of photos

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        embedded_worker: bool,
        metrics: ServiceMetrics | None = None,
        keep_cores_awake: bool = True,
    ) -> Services:
        """``keep_cores_awake``: between the photos of a stream of requests (``AwakeCores``); a batch
        import keeps its cores busy itself."""
        metrics = metrics or ServiceMetrics()
        if embedded_worker and not torch_installed():
            raise FaceforgeError(NO_EMBEDDED_WORKER)
        engine = make_engine(settings.resolved_database_url)
        upgrade_database(engine)
        sessions = make_sessionmaker(engine)
        pipeline = FacePipeline(settings, threads_per_photo=settings.inference_threads)
        if settings.preload_models or embedded_worker:
            # With the trainer in this process, before it starts: both would export graphs with
            # torch.export, which is not thread-safe. Otherwise on the first photo, so an API process
            # stays small and starts fast.
            pipeline.load()
        models = ModelService(settings, sessions)
        worker = None
        if embedded_worker:
            # The one import up the layers (an import-linter contract names it): the trainer brings
            # PyTorch and the conversion tools, which an API process without its own worker never loads.
            # Injecting it from the CLI would not do: uvicorn's factory and the tests build the app alone.
            from faceforge.building.worker.trainer import TrainingWorker

            worker = TrainingWorker(settings, sessions, pipeline=pipeline)
        limits = settings.limits
        awake = AwakeCores(settings.idle_poll_ms) if keep_cores_awake else None
        gate = VisionGate(
            concurrency=limits.vision_concurrency,
            queue=limits.vision_queue,
            pixels=limits.vision_pixels,
            awake=awake,
        )
        people = PeopleService(
            settings,
            sessions,
            pipeline,
            gate,
            on_change=worker.wake.set if worker else lambda: None,
            current_model=models.current_recognising,
        )
        strangers = StrangersService(people, sessions, on_change=people.on_change)
        identify = IdentifyService(pipeline, models, gate, on_faces=metrics.count_faces)
        compat = CompatService(people, models, identify)
        services = cls(
            settings, engine, sessions, pipeline, people, models, identify, compat, metrics, strangers
        )
        services.awake = awake
        if worker is not None:
            services.stop_worker = worker.start_in_thread()
            services.trainer = worker.health
        return services

    def close(self) -> None:
        if self.stop_worker is not None:
            self.stop_worker()
        if self.awake is not None:
            self.awake.close()
        self.engine.dispose()
