"""Which embedder: FaceNet, dlib's descriptor, or fusions of both, through the same eval harness.

Usage: .venv/bin/python -m bench.embedder_choice [--dataset DIR] [--enroll K] [--unknown DIR]
       [--dlib-weights 0.5,0.7,0.8,0.85] [--home DIR]
Prints one JSON object: ``faceforge eval``'s figures (top-1, own threshold's known accepted and
unknown rejected, the calibration's estimates, the oracle points) for FaceNet alone, dlib alone and
each fusion weight. A fusion with dlib weight ``w`` embeds a face as
``[sqrt(1 - w) * facenet, sqrt(w) * dlib]`` (each part L2-normalised, so the whole is a unit vector
and its cosine is ``(1 - w) * cos_facenet + w * cos_dlib``). The service's own embedder is such a
fusion (``core.embedding_space.DLIB_WEIGHT``); each photo is detected, refined and embedded once, its
two parts are recovered from that embedding, and every variant recombines them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.memo import MemoPipeline
from faceforge.building.evaluation.harness import EvalOptions, evaluate
from faceforge.building.networks.facenet import EMBEDDING_SIZE as FACENET_SIZE
from faceforge.core.config import Settings
from faceforge.core.embedding_space import DLIB_WEIGHT
from faceforge.core.faces import PhotoFaces
from faceforge.serving.vision.pipeline import PhotoError

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
REPORTED = (
    "top1",
    "known_accept_rate",
    "unknown_reject_rate",
    "known_accept_at_unknown_reject",
    "rejected_enrolment_photos",
    "threshold",
)


class RecombiningPipeline(MemoPipeline):
    """The service's pipeline, its results memoised per photo so every variant sees the same faces,
    with each embedding recombined at ``dlib_weight`` (``None``: FaceNet alone)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dlib_weight: float | None = None

    def _variant(self, result: PhotoFaces | PhotoError) -> PhotoFaces | PhotoError:
        if isinstance(result, PhotoError):
            return result
        result = copy.deepcopy(result)
        for face in result.faces:
            if face.embedding is not None:
                face.embedding = self.recombine(face.embedding)
        return result

    def recombine(self, embedding: np.ndarray) -> np.ndarray:
        facenet = embedding[:FACENET_SIZE] / math.sqrt(1.0 - DLIB_WEIGHT)
        described = embedding[FACENET_SIZE:] / math.sqrt(DLIB_WEIGHT)
        w = self.dlib_weight
        if w is None:
            return facenet.astype(np.float32)
        return np.concatenate([math.sqrt(1.0 - w) * facenet, math.sqrt(w) * described]).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument(
        "--dlib-weights", default="0.5,0.7,0.8,0.85", help="fusion weights of dlib, comma-separated"
    )
    parser.add_argument(
        "--home", type=Path, default=None, help="faceforge home (its weights cache is reused)"
    )
    args = parser.parse_args(argv)
    settings = Settings(home=args.home or Path(tempfile.gettempdir()) / "faceforge-bench")
    pipeline = RecombiningPipeline(settings)
    options = EvalOptions(dataset=args.dataset, enroll=args.enroll, unknown=args.unknown)
    figures: dict[str, Any] = {}
    variants: list[tuple[str, float | None]] = [("facenet", None), ("dlib", 1.0)]
    variants += [(f"fusion_dlib_{w}", float(w)) for w in args.dlib_weights.split(",")]
    for name, weight in variants:
        pipeline.dlib_weight = weight
        result = evaluate(pipeline, options)
        figures[name] = {key: result[key] for key in REPORTED} | {
            "estimated_known_accept": result["calibration"].get("estimated_known_accept"),
            "estimated_unknown_reject": result["calibration"].get("estimated_unknown_reject"),
        }
    figures["dataset"] = str(args.dataset)
    figures["service_dlib_weight"] = DLIB_WEIGHT
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
