"""What an app that draws the contract's images with its platform's scaler gets, against the contract.

The contract vectors' pixel checksums hold for Pillow's arithmetic only (README, "Contract vectors").
The README's Swift and Kotlin samples draw with the platform's bilinear filter (Android's Canvas with
FILTER_BITMAP_FLAG, Core Graphics), which samples at pixel centres without averaging when it shrinks.
Emulated here with Pillow's affine transform (bilinear at pixel centres, no prefilter), on real
faces, large photos included: the embedding must stay within the vectors' stated
``tolerance["platform_scaler"]``, so an app built from the samples knows what "close enough" is."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.building.export.contract_vectors import TOLERANCE
from faceforge.core.dataset import image_files
from faceforge.core.faces import Box
from faceforge.serving.vision.align import align_face, similarity_to_template
from faceforge.serving.vision.crop import crop_face, crop_square
from faceforge.serving.vision.embedder import unit_rows
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.refine import PATCH_SIZE, refine_faces
from tests.conftest import FACES, LFW10


def _drawn(picture: Image.Image, size: int, inverse: tuple[float, ...]) -> npt.NDArray[np.uint8]:
    """A platform's bilinear draw: output pixel centre (x + 0.5, y + 0.5) samples the photo at the
    inverse map of it, bilinearly, black outside; nothing averaged when shrinking."""
    drawn = picture.transform((size, size), Image.Transform.AFFINE, inverse, Image.Resampling.BILINEAR)
    return np.asarray(drawn, np.uint8)


def _square(
    picture: Image.Image, box: Box, margin: float, size: int
) -> tuple[npt.NDArray[np.uint8], int, int, int]:
    left, top, right, _ = crop_square(box, margin=margin)
    side = right - left
    return _drawn(picture, size, (side / size, 0.0, left, 0.0, side / size, top)), left, top, side


def test_a_platform_bilinear_scaler_stays_within_the_stated_tolerance(pipeline: FacePipeline) -> None:
    exact, platform, patches_equal = [], [], 0
    for path in image_files(LFW10)[::4] + image_files(FACES / "azure_face_samples"):
        image = pipeline.decode(path.read_bytes())
        found = pipeline.detect(image)
        if not found:
            continue
        picture, box = Image.fromarray(image), found[0].box
        (refined,) = refine_faces(picture, [box], pipeline.detector.describe_patches)
        exact.append((crop_face(picture, refined.box), align_face(picture, refined.landmarks, refined.box)))

        patch, left, top, side = _square(picture, box, 0.0, PATCH_SIZE)
        patches_equal += int(np.array_equal(patch, crop_face(picture, box, margin=0.0, size=PATCH_SIZE)))
        _, offsets, points = pipeline.detector.describe_patches(patch[None])
        d, k = offsets[0], points[0]
        x1, y1 = left + float(d[0]) * side, top + float(d[1]) * side
        moved = Box(x1, y1, left + side + float(d[2]) * side - x1, top + side + float(d[3]) * side - y1)
        marks = [(left + float(k[i]) * side, top + float(k[i + 5]) * side) for i in range(5)]
        face, *_ = _square(picture, moved, 0.05, 160)
        inverse = np.linalg.inv(np.vstack([similarity_to_template(marks), [0.0, 0.0, 1.0]]))[:2]
        platform.append((face, _drawn(picture, 150, tuple(float(v) for v in inverse.ravel()))))

    assert len(exact) >= 40 and patches_equal < len(exact) / 2  # the emulation is not the contract's
    embedder = pipeline.reference_embedder()

    def embed(pairs: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]) -> npt.NDArray[np.float32]:
        return unit_rows(
            embedder.embed(FaceInputs(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])))
        )

    cosine = np.sum(embed(exact) * embed(platform), axis=1)
    assert float(cosine.min()) >= TOLERANCE["platform_scaler"]["embedding_cosine"], float(cosine.min())
    assert float(np.median(cosine)) >= 0.998, float(np.median(cosine))  # most faces come much closer
