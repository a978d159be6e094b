"""Everything a request needs, created by the app's lifespan and owned by it (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.config import Settings
from faceforge.db.engine import make_engine, make_sessionmaker, upgrade_database
from faceforge.services.compat import CompatService
from faceforge.services.identify import IdentifyService
from faceforge.services.models import ModelService
from faceforge.services.people import PeopleService
from faceforge.services.vision_gate import VisionGate
from faceforge.vision.pipeline import FacePipeline
from faceforge.worker.trainer import TrainingWorker, start_embedded_worker


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
    stop_worker: Callable[[], None] | None = None

    @classmethod
    def start(cls, settings: Settings, *, embedded_worker: bool) -> Services:
        engine = make_engine(settings.resolved_database_url)
        upgrade_database(engine)
        sessions = make_sessionmaker(engine)
        pipeline = FacePipeline(settings)
        pipeline.load()
        models = ModelService(settings, sessions)
        worker = TrainingWorker(settings, sessions) if embedded_worker else None
        limits = settings.limits
        gate = VisionGate(concurrency=limits.vision_concurrency, queue=limits.vision_queue)
        people = PeopleService(
            settings, sessions, pipeline, gate, on_change=worker.wake.set if worker else lambda: None
        )
        identify = IdentifyService(pipeline, models, gate)
        compat = CompatService(people, models, identify)
        services = cls(settings, engine, sessions, pipeline, people, models, identify, compat)
        if worker is not None:
            services.stop_worker = start_embedded_worker(worker)
        return services

    def close(self) -> None:
        if self.stop_worker is not None:
            self.stop_worker()
        self.engine.dispose()
