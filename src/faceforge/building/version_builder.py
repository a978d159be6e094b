"""Build one model version: fit the head, evaluate it, export and verify every format, stage the files.

Worker-only: the exporters bring the converters of the formats asked for (coremltools and PyTorch
for Core ML, the TFLite runtime for TFLite; ONNX alone needs neither). The result is a complete version
directory in the store, not yet current; the worker then publishes it in the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.building.export.contract_vectors import CONTRACT_VECTORS_FILE
from faceforge.building.export.version_exports import UNKNOWN_LABEL, VersionExporter
from faceforge.building.head_fitting import fit_and_evaluate
from faceforge.core.config import Settings
from faceforge.core.embedding_space import DLIB_WEIGHT, EMBEDDER_NAME, EMBEDDING_SIZE
from faceforge.core.errors import TrainingError
from faceforge.core.model.head import RecognitionHead
from faceforge.core.model.head_files import head_bytes
from faceforge.core.model.manifest import HEAD_FILE, EmbedderInfo, RosterEntry, VersionManifest
from faceforge.core.records import Person
from faceforge.serving.vision.align import chip_contract
from faceforge.serving.vision.crop import crop_contract
from faceforge.serving.vision.refine import refine_contract
from faceforge.storage.version_store import VersionStore

# The margins are 0 but for people a collected stranger came close to (head.safetensors' `margins`,
# the models' class biases): an app that computes the decision itself needs them too.
DECISION = "softmax(scale * [cosine(embedding, prototype_i) - margin_i..., threshold]); last = unknown"
# (progress 0-1, stage name), reported as the training's progress
StageReport = Callable[[float, str], None]
# The version's head -> contract_vectors.json's content (``building.export.contract_vectors``)
VectorMaker = Callable[[RecognitionHead], dict[str, Any]]


def person_label(person_id: int, name: str) -> str:
    """Class label: the person's name made unique by their id."""
    return f"{name} ({person_id})"


def bench_people(count: int) -> dict[int, Person]:
    """People 1..count named "person <id>", for benchmarks that build versions of made-up galleries."""
    now = datetime.now(UTC)
    return {i: Person(i, f"person {i}", None, None, now, now, 0) for i in range(1, count + 1)}


@dataclass(frozen=True, slots=True)
class StagedVersion:
    manifest: VersionManifest  # as written, listing every file
    head: RecognitionHead
    metrics: dict[str, Any]


def version_manifest(
    version: int,
    head: RecognitionHead,
    people: Mapping[int, Person],
    metrics: dict[str, Any],
    export_manifest: dict[str, Any],
) -> VersionManifest:
    """The manifest of a version of ``head`` (without its files listing, which the store adds)."""
    by_label = {person_label(p.id, p.name): p for p in people.values()}
    roster = [
        RosterEntry(
            id=by_label[label].id,
            name=by_label[label].name,
            position=by_label[label].position,
            label=label,
            photos=head.counts[i],
        )
        for i, label in enumerate(head.labels)
    ]
    return VersionManifest.model_validate(
        {
            "version": version,
            "created_at": datetime.now(UTC),
            "embedder": EmbedderInfo(name=EMBEDDER_NAME, dimension=EMBEDDING_SIZE, dlib_weight=DLIB_WEIGHT),
            "refiner": refine_contract(),
            "crop": crop_contract(),
            "chip": chip_contract(),
            "labels": head.labels,
            "unknown_label": UNKNOWN_LABEL,
            "people": roster,
            "threshold": head.threshold,
            "scale": head.scale,
            "decision": DECISION,
            "calibration": head.calibration.as_dict(),
            "metrics": metrics,
            "head_file": HEAD_FILE,
            **export_manifest,
        }
    )


class VersionBuilder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exporter = VersionExporter(settings.weights_dir, settings.worker.export_formats)
        self.store = VersionStore(settings.models_dir)

    def prepare(self, on_step: Callable[[int, int], None] = lambda done, total: None) -> None:
        """Convert the on-device backbones now (once per machine), so the first version is quick;
        ``on_step(done, total)`` reports progress."""
        self.exporter.prepare(on_step)

    def build(
        self,
        version: int,
        embeddings: npt.NDArray[np.float32],
        person_ids: Sequence[int],
        people: Mapping[int, Person],
        stage: StageReport,
        *,
        strangers: Sequence[npt.NDArray[np.float32]] = (),
        started: float | None = None,
        vectors: VectorMaker | None = None,
    ) -> StagedVersion:
        """Version ``version`` from one ``(N, 640)`` embedding per enrolled photo and whose it is.
        ``strangers``: one ``(k_i, 640)`` array of unit embeddings per stranger (``k_i >= 1``), faces
        the head must answer "unknown" for; they are never a class, label or roster entry.
        ``started``: ``time.perf_counter()`` when the training began (the caller loads the photos
        first; default: now), for the manifest's ``train_seconds``. ``vectors`` writes
        ``contract_vectors.json`` from the fitted head (the trainer's, from real enrolled photos)."""
        started = time.perf_counter() if started is None else started
        if len(embeddings) != len(person_ids) or not len(embeddings):
            raise TrainingError("one person id per embedding, and at least one embedding, are needed")
        labels = [person_label(pid, people[pid].name) for pid in person_ids]
        stage(0.3, "fitting")
        head, metrics, quality = fit_and_evaluate(
            embeddings,
            labels,
            target_unknown_reject=self.settings.target_unknown_reject,
            strangers=strangers,
        )
        metrics = {
            **metrics,
            "quality": quality,
            "suspected_duplicates": _named(metrics, people),
            # How many, never who: a stranger has no name, and none reaches the roster or labels.
            "strangers": {"count": len(strangers), "photos": sum(len(s) for s in strangers)},
        }
        stage(0.6, "exporting")
        with self.store.stage(version) as staging:
            staging.add(HEAD_FILE, head_bytes(head))
            if vectors is not None:
                staging.add(CONTRACT_VECTORS_FILE, json.dumps(vectors(head), indent=1).encode())
            exports = self.exporter.export(head, sink=staging, samples=embeddings)
            metrics["export_seconds"] = exports.seconds
            stage(0.7, "writing")
            staging.written()  # every file on disk, so the duration below covers writing them
            # The manifest is the one record of the version's figures (the database keeps none), so
            # the training's duration goes into it too.
            metrics["train_seconds"] = round(time.perf_counter() - started, 3)
            manifest = version_manifest(version, head, people, metrics, exports.manifest)
            written = staging.publish(manifest)
        return StagedVersion(written, head, metrics)


def _named(metrics: dict[str, Any], people: Mapping[int, Person]) -> list[dict[str, Any]]:
    """The suspected duplicates with people's ids and names instead of class labels."""
    by_label = {person_label(p.id, p.name): p for p in people.values()}
    return [
        {
            "people": [by_label[label].id for label in suspect["labels"]],
            "names": [by_label[label].name for label in suspect["labels"]],
            "similarity": round(suspect["similarity"], 4),
            "kind": suspect["kind"],  # "person": registered twice; "photo": one photo filed wrongly
        }
        for suspect in metrics["suspected_duplicates"]
    ]
