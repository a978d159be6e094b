"""The first start's backbone conversion is reported for as long as it lasts: a conversion longer
than the staleness limit must not make the stage vanish (``stage: null, progress: 0``) midway."""

from __future__ import annotations

import time
from pathlib import Path

from faceforge.building.export.device_backbones import DeviceBackboneCache
from faceforge.building.worker.trainer import PREPARING_STAGE
from faceforge.core.config import Settings, WorkerSettings
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, service_settings

# Shorter than converting the refiner into three formats (seconds; asserted below), and longer than
# the heartbeat's gaps while the conversion holds the GIL and a second test process shares the two
# cores: at 1.0 one beat came late on a slower CPU and the stage vanished once.
STALE_AFTER = 2.0


def test_the_backbone_conversion_is_reported_until_it_ends(tmp_path: Path, settings: Settings) -> None:
    # A weights cache holding every network but the on-device ones: the worker converts the refiner
    # (the only device backbone ONNX-only versions need) when it starts, in earnest.
    weights = tmp_path / "weights"
    weights.mkdir()
    for entry in settings.weights_dir.iterdir():
        if entry.name != "device":
            (weights / entry.name).symlink_to(entry)
    refiner = DeviceBackboneCache(weights).refiner_directory / "refiner.mlmodel"
    worker = WorkerSettings(
        poll_seconds=0.1,
        heartbeat_seconds=0.1,
        stale_after_seconds=STALE_AFTER,
        quiet_seconds=0,
        formats="onnx",
    )
    app_settings = service_settings(
        tmp_path, f"sqlite:///{tmp_path / 'faceforge.db'}", settings, weights_cache=weights, worker=worker
    )
    seen: list[tuple[str | None, float, bool]] = []  # stage, progress, converted yet
    times: list[float] = []
    with local_client(create_app(app_settings)) as client:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            # The status first, then the file: read the other way round, a conversion that ends
            # between the two reads looks like a stage cleared before its files existed.
            status = client.get("/api/v1/training").json()
            converted = refiner.exists()
            seen.append((status["stage"], status["progress"], converted))
            times.append(time.monotonic())
            if converted and status["stage"] is None:
                break
            time.sleep(0.05)
    preparing = [index for index, (stage, _, _) in enumerate(seen) if stage == PREPARING_STAGE]
    assert preparing, seen[:5]
    # From the first report until the files exist, every answer names the stage.
    during = [sample for sample in seen[preparing[0] :] if not sample[2]]
    assert len(during) >= 10 and all(stage == PREPARING_STAGE for stage, _, _ in during), [
        sample for sample in during if sample[0] != PREPARING_STAGE
    ][:3]
    assert seen[-1][0] is None  # and it ends
    # It was reported for longer than a stale status lasts, or the test would prove nothing.
    assert times[-1] - times[preparing[0]] > STALE_AFTER, times[-1] - times[preparing[0]]
