"""The agent's loop in process (``edge.agent.Agent``): the exported TFLite int8 files and MTCNN on
frames of real photos, with model versions handed over as ``ModelUpdates`` hands them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from faceforge.edge.agent import Agent, ModelUpdates, make_detector
from faceforge.edge.choices import DetectorName, ModelChoice
from faceforge.edge.models import CachedVersion, ModelStore
from faceforge.edge.publish import Decision
from faceforge.edge.runtime import EdgeModel
from faceforge.edge.tracking import MAX_MISSED, SAMPLES
from tests.watch.conftest import FRAME, PEOPLE, probes

Frame = np.ndarray


def frame_of(photo: Path | None) -> Frame:
    """``photo`` centred on a grey frame, as the test videos show it (None: the grey frame alone)."""
    frame = Image.new("RGB", FRAME, (90, 90, 90))
    if photo is not None:
        picture = Image.open(photo).convert("RGB")
        frame.paste(picture, ((FRAME[0] - picture.width) // 2, (FRAME[1] - picture.height) // 2))
    return np.asarray(frame)


class Handover:
    """``ModelUpdates.take`` with a version the test sets at the frame it chooses."""

    def __init__(self) -> None:
        self.ready: CachedVersion | None = None

    def take(self) -> CachedVersion | None:
        version, self.ready = self.ready, None
        return version


def test_a_track_that_ends_after_a_new_version_arrived_is_decided_with_its_own(warm_cache: Path) -> None:
    """A face seen for fewer than ``SAMPLES`` frames, gone when a new version is swapped in: its
    samples are the old version's (other outputs), and it was never reported at all. It is decided,
    as any track that ends sooner, on the frames it has, with the version they came from."""
    version = ModelStore(warm_cache, ModelChoice.TFLITE_INT8).cached()
    assert version is not None
    newer = dataclasses.replace(version, version=version.version + 1)
    handover = Handover()
    decisions: list[Decision] = []
    agent = Agent(
        EdgeModel(version),
        make_detector(DetectorName.MTCNN),
        "hall",
        [decisions.append],
        updates=cast(ModelUpdates, handover),
    )
    shown = SAMPLES - 1

    def frames() -> Iterator[Frame]:
        for index in range(shown + MAX_MISSED + 2):  # the track closes before the source ends
            if index == shown:
                handover.ready = newer  # swapped in before the first frame without the face
            yield frame_of(probes(PEOPLE[0])[0] if index < shown else None)

    agent.run(frames())
    assert agent.model.version.version == newer.version
    assert [(d.name, d.version) for d in decisions] == [(PEOPLE[0], version.version)]
