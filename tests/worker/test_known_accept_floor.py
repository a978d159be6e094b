"""The known-accept floor (``FACEFORGE_WORKER__MIN_KNOWN_ACCEPT``) judges a version as its own doing,
not its collected strangers': with margins raised, by the better of its figures with and without
them."""

from __future__ import annotations

from pathlib import Path

from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from tests.api.fixtures import service_settings


def _worker(tmp_path: Path, settings: Settings) -> TrainingWorker:
    app_settings = service_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'faceforge.db'}",
        settings,
        worker=WorkerSettings(embedded=False, formats="onnx", min_known_accept=0.85),
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    return TrainingWorker(app_settings, make_sessionmaker(engine))


def test_the_floor_reads_the_better_figure_once_margins_are_raised(
    tmp_path: Path, settings: Settings
) -> None:
    """Margins mostly cost photos, but a neighbour's margin can keep a photo on its own person, so
    the figure without margins may be the lower: 0.84 beside 0.90 held back a version that accepts
    0.90 (a reviewer's synthetic gallery)."""
    worker = _worker(tmp_path, settings)
    kept_by_a_margin = {"raised_people": 2, "accept_rate": 0.90, "accept_rate_without_margins": 0.84}
    assert worker._below_floor(kept_by_a_margin) is None
    cost_by_margins = {"raised_people": 2, "accept_rate": 0.60, "accept_rate_without_margins": 0.90}
    assert worker._below_floor(cost_by_margins) is None  # the strangers' doing, on purpose
    both_low = {"raised_people": 2, "accept_rate": 0.60, "accept_rate_without_margins": 0.70}
    reason = worker._below_floor(both_low)
    assert reason is not None and "accepted 0.700 < floor 0.850" in reason
    assert worker._below_floor({"raised_people": 0, "accept_rate": 0.80}) is not None
