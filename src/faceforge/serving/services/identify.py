"""Identify: who is in this photo, according to a model version (default: the current one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceforge.core.errors import RequestRejectedError
from faceforge.serving.services.models import ModelService
from faceforge.serving.services.vision_gate import VisionGate
from faceforge.serving.vision.pipeline import FacePipeline

MAX_TOP_K = 20


@dataclass(frozen=True, slots=True)
class IdentifiedFace:
    box: dict[str, float]
    score: float
    match: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    landmarks: list[tuple[float, float]]
    embedding: list[float]  # the face's unit embedding (CompreFace's "calculator" plugin gives it)


class IdentifyService:
    def __init__(
        self,
        pipeline: FacePipeline,
        models: ModelService,
        gate: VisionGate,
        *,
        on_faces: Callable[[int, int], None] = lambda known, unknown: None,
    ) -> None:
        self.pipeline = pipeline
        self.models = models
        self.gate = gate
        self.on_faces = on_faces  # (recognised, unknown) per request, for the metrics

    def identify(
        self, data: bytes, *, threshold: float | None, top_k: int, version: int | None
    ) -> tuple[int, list[IdentifiedFace]]:
        """Recognise every face (largest first). ``threshold`` overrides the version's calibrated one."""
        used, found, _ = self.identify_timed(data, threshold=threshold, top_k=top_k, version=version)
        return used, found

    def identify_timed(
        self, data: bytes, *, threshold: float | None, top_k: int, version: int | None
    ) -> tuple[int, list[IdentifiedFace], dict[str, float]]:
        """``identify``, and the seconds each stage of the photo's analysis took (``PhotoFaces.seconds``)."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise RequestRejectedError("invalid_top_k", f"top_k must be between 1 and {MAX_TOP_K}")
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise RequestRejectedError("invalid_threshold", "threshold is a cosine similarity in [-1, 1]")
        model = self.models.recognising(version)
        with self.gate.slot(self.pipeline.pixels_at_once([data])):
            photo = self.pipeline.analyze(data, single_face=False)
        faces = [face for face in photo.faces if face.embedding is not None]
        if not faces:
            return model.version, [], photo.seconds
        embeddings = np.stack([face.embedding for face in faces if face.embedding is not None])
        head = model.head
        similarities = head.similarities(embeddings)
        decision_scores = head.decision_scores(embeddings)
        probabilities = head.probabilities(embeddings)
        matches = head.predict(embeddings, threshold=threshold)
        found = []
        for face, embedding, sims, scores, probs, match in zip(
            faces, embeddings, similarities, decision_scores, probabilities, matches, strict=True
        ):
            ranked = np.argsort(-scores)[:top_k]  # the named person first, as the models rank them
            candidates = [
                {**model.people[i], "similarity": float(sims[i]), "confidence": float(probs[i])}
                for i in ranked
            ]
            best = None if match.index is None else candidates[0]
            box = face.detection.box
            found.append(
                IdentifiedFace(
                    box={"x": box.x, "y": box.y, "width": box.width, "height": box.height},
                    score=face.detection.score,
                    match=best,
                    candidates=candidates,
                    landmarks=list(face.detection.landmarks.points),
                    embedding=[float(v) for v in embedding],
                )
            )
        known = sum(face.match is not None for face in found)
        self.on_faces(known, len(found) - known)
        return model.version, found, photo.seconds
