"""``contract_vectors.json``: the app-side contract worked through, step by step, on a few real faces.

For up to ``VECTOR_PHOTOS`` enrolled photos (the first photo of the first people, by id), what the
server computes for the largest confident face, so that an app developer (Swift, Kotlin, the browser
client) checks each step of their own implementation against ours:

- ``photo``: the person, the photo's id, sha256 and size (download it with an admin key from
  ``/api/v1/people/{person_id}/photos/{photo_id}/file``);
- ``detector``: MTCNN's box ``[x, y, width, height]``, score and five points (the server's detector,
  also the browser client's);
- ``refiner``: the 48 x 48 ``patch``'s square and sha256, the refiner's face probability, and the
  refined box and five points (``serving.vision.refine``);
- ``face`` and ``chip``: the sha256 of each image's bytes (``(160, 160, 3)`` and ``(150, 150, 3)``
  uint8 RGB, rows top to bottom; ``serving.vision.crop`` and ``serving.vision.align``);
- ``embedding`` (640 floats) and ``probabilities`` (people + 1, ``unknown`` last) from the server's
  networks, to compare within a tolerance (another runtime's float arithmetic differs slightly):
  ``tolerance`` states it per backbone file (int8 weights and float16 compute move embeddings more).

Coordinates are pixels of the upright photo, origin top left. Checksums are exact: the crop and chip
depend only on the photo, the refined box and points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.building.export.device_backbones import TFLITE_INT8_COSINE
from faceforge.core.faces import Box
from faceforge.core.model.head import RecognitionHead
from faceforge.serving.vision.align import align_face, chip_reduction, chip_transform, similarity_to_template
from faceforge.serving.vision.crop import crop_face, crop_square
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.refine import refine_faces, refiner_patch

CONTRACT_VECTORS_FILE = "contract_vectors.json"
VECTOR_PHOTOS = 3
FORMAT = "faceforge-contract-vectors/1"
# What a client in another runtime is held to: boxes and points (pixels), and per backbone file the
# embedding's cosine with ours (the float graph's) and the largest difference of a probability (a fused
# model, ``model.*``, is held to its backbone's). Measured on real faces (bench/export_parity: 124
# faces of krasserm_lfw10 and two stranger folders, a ten-person head); the int8 files are held to
# about three times the worst error seen, which tests/export/test_device_exports.py asserts:
# - float graphs (ONNX Runtime, also in Chromium; LiteRT on the CPU): cosine 0.99999994, probabilities
#   within 7e-6, held to 0.9999 and 0.002 (room for another runtime's float arithmetic);
# - ``backbone_int8.onnx`` (the server's int8 graph's twin with 7-bit weights, whose products no
#   runtime's integer kernels saturate): cosine 0.9986 at worst on real faces, the same in ONNX
#   Runtime's fast and exact x86 kernels (the 8-bit graph it replaced: 0.853 where the fast ones
#   saturate, AVX2 without VNNI), probabilities within 0.026 (faces near a decision move the most);
# - ``backbone_int8.tflite`` (int8 weights): cosine 0.99972, probabilities within 0.024;
# - float16 compute (Core ML on the Neural Engine or GPU, a GPU delegate): Core ML cannot run where
#   versions are built, so this is the tests' emulation (float16 weights and activations) and its
#   budget: cosine error 2e-3, where recognition starts to change; probabilities within 0.0045.
FLOAT_GRAPH = {"embedding_cosine": 0.9999, "probability": 0.002}
TOLERANCE: dict[str, Any] = {
    "pixels": 0.05,
    "backbone.onnx": FLOAT_GRAPH,
    "backbone.tflite": FLOAT_GRAPH,
    "backbone_int8.onnx": {"embedding_cosine": 1 - 3 * (1 - 0.9984), "probability": 0.15},
    "backbone_int8.tflite": {"embedding_cosine": TFLITE_INT8_COSINE, "probability": 0.07},
    "backbone.mlmodel": {"embedding_cosine": 0.998, "probability": 0.015},
    # The pixel checksums hold for Pillow's arithmetic only; drawn with a platform's bilinear filter
    # (no averaging when shrinking, as the README's Swift and Kotlin samples draw) the embedding of
    # the float graph stays at 0.9896 or above on real faces (0.9988 median; the refined box moves
    # 1.5 px at the median, up to 11 px on large photos): held to about twice that worst error
    # (tests/vision/test_platform_scaler.py).
    "platform_scaler": {"embedding_cosine": 0.98},
}


Geometry = tuple[int, int, str, dict[str, Any], list[list[float]], int, int]


def coverage_photos(
    geometry: Sequence[Geometry], chosen: set[int]
) -> list[tuple[int, int, str, dict[str, Any]]]:
    """Beside the first people's first photos (``chosen``), up to two enrolled photos that take the
    contract's other paths, so an app's implementation is checked on them too: the face whose chip is
    sampled after the largest whole-factor reduction (a phone's photo), when there is one, and the
    face whose crop reaches furthest beyond its photo (black fill). ``geometry`` is
    ``(person_id, photo_id, stored_name, box, landmarks, width, height)`` per photo, as stored (box
    ``{x, y, width, height}``, five ``[x, y]`` points); each pick is ``(person_id, photo_id,
    stored_name, box)``, the box saying which face of the photo is meant."""
    candidates = [row for row in geometry if row[1] not in chosen]

    def reduction(row: Geometry) -> int:
        try:
            return chip_reduction((row[5], row[6]), similarity_to_template(row[4]))
        except ValueError:  # points that make no transform: the chip takes the template in the box
            return 1

    def beyond(row: Geometry) -> int:
        box = row[3]
        left, top, right, bottom = crop_square(Box(box["x"], box["y"], box["width"], box["height"]))
        return max(0, -left, -top, right - row[5], bottom - row[6])

    picked: list[Geometry] = []
    reduced = max(candidates, key=reduction, default=None)
    if reduced is not None and reduction(reduced) > 1:
        picked.append(reduced)
    edge = max((row for row in candidates if row not in picked), key=beyond, default=None)
    if edge is not None and beyond(edge) > 0:
        picked.append(edge)
    return [(row[0], row[1], row[2], row[3]) for row in picked]


@dataclass(frozen=True, slots=True)
class VectorPhoto:
    person_id: int
    photo_id: int
    data: bytes
    # The enrolled face's box as stored ({x, y, width, height}): which face of a group photo is
    # meant (the vector is worked through on the detected face nearest it); None: the largest.
    box: dict[str, Any] | None = None


def _apart(box: Box, stored: dict[str, Any]) -> float:
    """How far apart two boxes' centres are, in pixels."""
    return float(
        np.hypot(
            box.x + box.width / 2 - stored["x"] - stored["width"] / 2,
            box.y + box.height / 2 - stored["y"] - stored["height"] / 2,
        )
    )


def _sha256(pixels: npt.NDArray[np.uint8]) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()).hexdigest()


def _box(box: Box) -> list[float]:
    return [box.x, box.y, box.width, box.height]


def _points(points: Sequence[tuple[float, float]]) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in points]


def contract_vectors(
    pipeline: FacePipeline, head: RecognitionHead, photos: Sequence[VectorPhoto]
) -> dict[str, Any]:
    """The vectors of ``photos`` (a photo without a confident face is left out)."""
    vectors = []
    for photo in photos:
        image = pipeline.decode(photo.data)
        faces = [f for f in pipeline.detect(image) if f.score >= pipeline.detector_settings.min_score]
        if not faces:
            continue
        stored = photo.box
        face = faces[0] if stored is None else min(faces, key=lambda found: _apart(found.box, stored))
        picture = Image.fromarray(image)
        height, width = image.shape[:2]
        patch, (left, top, side) = refiner_patch(picture, face.box)
        (refined,) = refine_faces(picture, [face.box], pipeline.detector.describe_patches)
        crop = crop_face(picture, refined.box)
        chip = align_face(picture, refined.landmarks, refined.box)
        cut = crop_square(refined.box)  # the face's square: (left, top, right, bottom)
        reduction = chip_reduction(picture.size, chip_transform(picture, refined.landmarks, refined.box))
        # The float graph: every device model is held to it (the server may run the int8 one).
        embedding = pipeline.reference_embedder().embed(FaceInputs(crop[None], chip[None]))
        probabilities = head.probabilities(embedding)[0]
        vectors.append(
            {
                "photo": {
                    "person_id": photo.person_id,
                    "photo_id": photo.photo_id,
                    "sha256": hashlib.sha256(photo.data).hexdigest(),
                    "width": width,
                    "height": height,
                },
                "detector": {
                    "box": _box(face.box),
                    "score": face.score,
                    "points": _points(face.landmarks.points),
                },
                "refiner": {
                    "square": {"left": left, "top": top, "side": side},
                    "patch_sha256": _sha256(patch),
                    "face_probability": refined.face_probability,
                    "box": _box(refined.box),
                    "points": _points(refined.landmarks.points),
                },
                # Which paths of the contract this photo takes: a crop beyond the photo (black
                # fill), a chip sampled after a whole-factor reduction.
                "face": {
                    "size": list(crop.shape),
                    "sha256": _sha256(crop),
                    "square": {"left": cut[0], "top": cut[1], "side": cut[2] - cut[0]},
                    "beyond_photo": cut[0] < 0 or cut[1] < 0 or cut[2] > width or cut[3] > height,
                },
                "chip": {"size": list(chip.shape), "sha256": _sha256(chip), "reduction": reduction},
                "embedding": [float(v) for v in embedding[0]],
                "probabilities": [float(p) for p in probabilities],
            }
        )
    return {
        "format": FORMAT,
        "pixels": "uint8 RGB, rows top to bottom; sha256 of the raw bytes",
        "tolerance": TOLERANCE,
        "vectors": vectors,
    }
