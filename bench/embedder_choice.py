"""Which embedder: FaceNet, dlib's descriptor, or both concatenated, through the same eval harness.

Usage: .venv/bin/python -m bench.embedder_choice [--dataset DIR] [--enroll K] [--unknown DIR]
       [--dlib-weights 0.5,0.7,0.85] [--home DIR]
Prints one JSON object: ``faceforge eval``'s figures (top-1, own threshold's known accepted and
unknown rejected, the calibration's estimates, the oracle points) for FaceNet alone, dlib alone and
each fusion weight. A fusion with dlib weight ``w`` embeds a face as
``[sqrt(1 - w) * facenet, sqrt(w) * dlib]`` (each part L2-normalised, so the whole is a unit vector
and its cosine is ``(1 - w) * cos_facenet + w * cos_dlib``). FaceNet crops follow the crop contract
(box); dlib chips are aligned from MTCNN's five points (``vision.align``). Each photo is detected and
embedded once; every variant reuses those embeddings.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceforge.config import Settings
from faceforge.domain.faces import PhotoFaces
from faceforge.evaluation.harness import EvalOptions, evaluate
from faceforge.vision.align import align_face
from faceforge.vision.decode import RgbImage
from faceforge.vision.dlib_embedder import DlibEmbedder
from faceforge.vision.facenet import EMBEDDING_SIZE as FACENET_SIZE
from faceforge.vision.pipeline import FacePipeline, PhotoError

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
REPORTED = (
    "top1",
    "known_accept_rate",
    "unknown_reject_rate",
    "known_accept_at_unknown_reject",
    "rejected_enrolment_photos",
    "threshold",
)


class BothEmbeddingsPipeline(FacePipeline):
    """The service's pipeline, with each embedded face also described by dlib; results are
    memoised per photo so that every variant sees the same detections."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dlib = DlibEmbedder(settings.weights_dir)
        self.dlib_weight: float | None = None  # None: FaceNet alone
        self._memo: dict[tuple[Path | bytes, bool], PhotoFaces | PhotoError] = {}

    def analyze_image(self, image: RgbImage, *, single_face: bool) -> PhotoFaces:
        photo = super().analyze_image(image, single_face=single_face)
        faces = [face for face in photo.faces if face.embedding is not None]
        if faces:
            picture = Image.fromarray(image)
            chips = np.stack([align_face(picture, face.detection.landmarks) for face in faces])
            for face, described in zip(faces, self.dlib.embed(chips), strict=True):
                assert face.embedding is not None
                face.embedding = np.concatenate([face.embedding, described])
        return photo

    def analyze_many(
        self, photos: Sequence[Path | bytes], *, single_face: bool, workers: int | None = None
    ) -> list[PhotoFaces | PhotoError]:
        missing = [photo for photo in photos if (photo, single_face) not in self._memo]
        for photo, result in zip(
            missing, super().analyze_many(missing, single_face=single_face), strict=True
        ):
            self._memo[(photo, single_face)] = result
        return [self._variant(self._memo[(photo, single_face)]) for photo in photos]

    def _variant(self, result: PhotoFaces | PhotoError) -> PhotoFaces | PhotoError:
        if isinstance(result, PhotoError):
            return result
        result = copy.deepcopy(result)
        for face in result.faces:
            if face.embedding is not None:
                facenet, described = face.embedding[:FACENET_SIZE], face.embedding[FACENET_SIZE:]
                w = self.dlib_weight
                face.embedding = (
                    facenet
                    if w is None
                    else np.concatenate([np.sqrt(1.0 - w) * facenet, np.sqrt(w) * described]).astype(
                        np.float32
                    )
                )
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument(
        "--dlib-weights", default="0.5,0.7,0.85", help="fusion weights of dlib, comma-separated"
    )
    parser.add_argument(
        "--home", type=Path, default=None, help="faceforge home (its weights cache is reused)"
    )
    args = parser.parse_args(argv)
    settings = Settings(home=args.home or Path(tempfile.gettempdir()) / "faceforge-bench")
    pipeline = BothEmbeddingsPipeline(settings)
    pipeline.dlib.load()
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
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
