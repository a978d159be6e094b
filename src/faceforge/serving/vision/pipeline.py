"""Photo bytes in, faces with verdicts and embeddings out: decode -> detect -> refine, crop and
align (``serving.vision.face_input``) -> embed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.config import DetectorSettings, Settings
from faceforge.core.errors import InvalidImageError, WeightsUnavailableError
from faceforge.core.faces import Box, DetectedFace, Face, Landmarks, PhotoFaces, RejectReason
from faceforge.serving.vision.decode import (
    DecodedPhoto,
    RgbImage,
    decode_photo,
    decode_reduced,
    display_budget,
    header_pixels,
)
from faceforge.serving.vision.embedder import (
    FaceEmbedder,
    GraphExport,
    GraphQuantization,
    Int8Check,
    embedding_onnx_path,
    int8_onnx_path,
)
from faceforge.serving.vision.face_input import FaceInputs, concatenate_inputs, face_inputs
from faceforge.serving.vision.mtcnn import (
    GraphRewrite,
    MtcnnConfig,
    MtcnnDetector,
    cached_graphs,
    prepare_split_graphs,
)

log = logging.getLogger(__name__)

# analyze_many's threads embed the faces of this many consecutive photos in one batch.
PHOTOS_PER_BATCH = 8

# Tight face chips (a face filling the whole photo) defeat MTCNN's proposal stage; when nothing is
# found, detection is retried once on the photo framed by this fraction of black border per side.
CHIP_PADDING = 0.3
# A photo with several usable faces still enrols its largest face when every other face's box side is
# below this fraction of the largest one (news photos often show small bystanders behind the subject).
DOMINANT_FACE_RATIO = 0.7


@dataclass(frozen=True, slots=True)
class PhotoError:
    """A photo that could not be analysed at all, with the reason code and message."""

    code: str
    message: str


def _scaled(face: DetectedFace, factor: float, shift: float = 0.0) -> DetectedFace:
    box = face.box
    return DetectedFace(
        box=Box((box.x - shift) * factor, (box.y - shift) * factor, box.width * factor, box.height * factor),
        score=face.score,
        landmarks=Landmarks(
            tuple(((x - shift) * factor, (y - shift) * factor) for x, y in face.landmarks.points)
        ),
    )


def _side(face: Face) -> float:
    return max(face.detection.box.width, face.detection.box.height)


def _dominates(largest: Face, runner_up: Face) -> bool:
    return _side(runner_up) < DOMINANT_FACE_RATIO * _side(largest)


@dataclass(slots=True)
class _Judged:
    """A photo's faces judged, waiting for the embeddings of ``to_embed`` (rows of ``inputs``)."""

    photo: PhotoFaces
    to_embed: list[Face]
    inputs: FaceInputs
    scale: float
    size: tuple[int, int] | None

    def finish(self, embeddings: npt.NDArray[np.float32]) -> PhotoFaces:
        for face, embedding in zip(self.to_embed, embeddings, strict=True):
            face.embedding = embedding
        photo = self.photo
        if self.scale != 1.0 or self.size is not None:
            photo.width, photo.height = self.size or (
                round(photo.width * self.scale),
                round(photo.height * self.scale),
            )
            for face in photo.faces:
                face.detection = _scaled(face.detection, self.scale)
        return photo


def prepare_networks(
    weights_dir: Path,
    *,
    export: GraphExport | None = None,
    quantize: GraphQuantization | None = None,
    split: GraphRewrite | None = None,
) -> None:
    """Put every network an API process runs into the weights cache without loading it: MTCNN's graphs
    and their split variants (written by ``split``), the embedding graph with the pointer naming it
    (exported by ``export`` if missing) and its int8 variants (quantised by ``quantize``: 8-bit, and the
    7-bit twin that CPUs without VNNI run; which one runs is measured when a process loads them). A
    serve-only install reads them from there; ``faceforge prepare`` and the worker's start call this."""
    prepare_split_graphs(cached_graphs(weights_dir), split=split)
    float_graph = embedding_onnx_path(weights_dir, export=export)
    try:
        check = Int8Check.load()
    except WeightsUnavailableError as error:  # the float graph serves; FaceEmbedder says so too
        log.warning("no int8 embedding graph: %s", error.message)
        return
    for variant, what in ((check, "int8 embedding graph"), (check.seven_bit, "7-bit twin")):
        if variant is None:
            continue
        try:
            int8_onnx_path(weights_dir, float_graph, quantize=quantize, check=variant)
        except WeightsUnavailableError as error:  # the float graph, or the exact kernels, serve
            log.warning("no %s: %s", what, error.message)


class FacePipeline:
    """Analyses photos; detector and embedder load lazily on first use and are safe to share by threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: FaceEmbedder | None = None,
        threads_per_photo: int = 1,
        export: GraphExport | None = None,
        quantize: GraphQuantization | None = None,
    ) -> None:
        """``threads_per_photo``: threads ONNX Runtime may use inside one photo's networks. Batch work
        (enrolment of a folder, re-embedding) parallelises across photos and keeps 1; an API process,
        which sees one photo per request, gives each photo its cores. ``export`` and ``quantize``: how
        a building process makes a missing embedding graph itself (``FaceEmbedder``)."""
        self.settings = settings
        self.detector_settings: DetectorSettings = settings.detector
        self.threads_per_photo = threads_per_photo
        self._detector: MtcnnDetector | None = None
        self._detector_lock = threading.Lock()
        self._reference: FaceEmbedder | None = None
        self.embedder = embedder or FaceEmbedder(
            settings.weights_dir,
            threads=threads_per_photo,
            export=export,
            precision=settings.embedder_precision,
            quantize=quantize,
        )

    @property
    def detector(self) -> MtcnnDetector:
        if self._detector is None:
            with self._detector_lock:  # the first photos may arrive on several threads at once
                if self._detector is None:
                    config = self.detector_settings
                    graphs = cached_graphs(self.settings.weights_dir)
                    prepare_split_graphs(graphs)  # made once per cache; prepare and workers do it first
                    self._detector = MtcnnDetector(
                        MtcnnConfig(config.min_face_size, config.thresholds, config.scale_factor),
                        threads=self.threads_per_photo,
                        graphs=graphs,
                    )
        return self._detector

    def reference_embedder(self) -> FaceEmbedder:
        """The float graph's embedder, the reference every exported model is held to (contract
        vectors): this pipeline's own when it runs the float graph, else one loaded on first use."""
        self.embedder.load()
        if self.embedder.precision == "float":
            return self.embedder
        with self._detector_lock:
            if self._reference is None:
                self._reference = FaceEmbedder(
                    self.settings.weights_dir,
                    threads=self.threads_per_photo,
                    export=self.embedder.export,
                    precision="float",
                )
        return self._reference

    def load(self) -> None:
        """Load every model now (servers call this at start-up so the first request is not slow)."""
        _ = self.detector
        self.embedder.load()

    def decode(self, data: bytes) -> RgbImage:
        return decode_photo(
            data, max_pixels=self.settings.max_pixels, min_side=self.detector_settings.min_face_size
        )

    def decode_for_display(self, data: bytes, *, longer_side: int) -> DecodedPhoto:
        """``data`` decoded for a picture ``longer_side`` px long: reduced by a whole factor while
        decoded, so a 40 MP photo is never held at full size (~690 MB) to show a few hundred pixels."""
        return decode_reduced(
            data,
            max_pixels=self.settings.max_pixels,
            min_side=self.detector_settings.min_face_size,
            budget=display_budget(longer_side),
        )

    def detect(self, image: RgbImage, *, min_face_size: float | None = None) -> list[DetectedFace]:
        """All faces in the photo, largest first; large photos are detected on a downscaled copy.

        ``min_face_size`` (pixels of ``image``) overrides the detector setting's smallest face.
        """
        height, width = image.shape[:2]
        factor = min(1.0, self.detector_settings.max_side / max(height, width))
        small = image
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        smallest = max(12, round((min_face_size or self.detector_settings.min_face_size) * factor))
        faces = [_scaled(face, 1.0 / factor) for face in self.detector.detect(small, min_face_size=smallest)]
        if not faces:
            pad = round(CHIP_PADDING * max(small.shape[:2]))
            framed = np.pad(small, ((pad, pad), (pad, pad), (0, 0)))
            found = self.detector.detect(framed, min_face_size=smallest)
            faces = [_scaled(face, 1.0 / factor, shift=pad) for face in found]
        return sorted(faces, key=lambda face: face.box.area, reverse=True)

    def _quality(self, face: DetectedFace, scale: float = 1.0) -> list[RejectReason]:
        """Why ``face`` is unusable for enrolment; ``scale`` photo pixels per pixel of its box."""
        reasons = []
        if min(face.box.width, face.box.height) * scale < self.detector_settings.min_usable_face:
            reasons.append(RejectReason.FACE_TOO_SMALL)
        if face.score < self.detector_settings.min_score:
            reasons.append(RejectReason.LOW_DETECTION_SCORE)
        return reasons

    def analyze_image(
        self, image: RgbImage, *, single_face: bool, scale: float = 1.0, size: tuple[int, int] | None = None
    ) -> PhotoFaces:
        """Detect, judge and embed the faces of a decoded photo. A photo reduced on decode gives
        ``scale`` (photo pixels per pixel of ``image``) and its own ``size`` (width, height): face sizes
        are judged, and boxes and landmarks returned, in the photo's pixels.

        With ``single_face`` (enrolment) the photo is accepted only when one face passes the quality
        checks and dominates every other confidently detected face (``DOMINANT_FACE_RATIO``); only
        that face is embedded. A photo refused as ``multiple_faces`` has every usable face embedded,
        so that ``face_choice`` can pick the person's face by agreement with their other photos.
        Otherwise (identification) faces scoring below the detector's ``min_score`` are dropped, every
        other face is embedded, and the photo is rejected only when no face remains.
        """
        judged = self._judge(image, single_face=single_face, scale=scale, size=size)
        return judged.finish(self.embedder.embed(judged.inputs))

    def _judge(
        self,
        image: RgbImage,
        *,
        single_face: bool,
        scale: float = 1.0,
        size: tuple[int, int] | None = None,
        embed: bool = True,
    ) -> _Judged:
        """``analyze_image`` up to the embedding: the faces found and judged, and the embedder's inputs
        for those to embed (so that several photos' faces can be embedded in one batch); without
        ``embed``, none (no refining, cropping or aligning: detection only)."""
        # Enrolment rejects faces below min_usable_face anyway, so it need not search for them.
        config = self.detector_settings
        smallest = (config.min_usable_face if single_face else config.min_face_size) / scale
        faces = [Face(d, self._quality(d, scale)) for d in self.detect(image, min_face_size=smallest)]
        if not single_face:
            faces = [face for face in faces if RejectReason.LOW_DETECTION_SCORE not in face.reasons]
        height, width = image.shape[:2]
        photo = PhotoFaces(width=width, height=height, faces=faces, reasons=[])
        good = [face for face in faces if not face.reasons]
        # Dominance is judged against every confident face, usable or not: a 41 px face among 36 px
        # faces is still a group photo.
        rivals = [f for f in faces if RejectReason.LOW_DETECTION_SCORE not in f.reasons]
        if not faces:
            photo.reasons = [RejectReason.NO_FACE]
        elif (
            single_face
            and good
            and any(not _dominates(good[0], rival) for rival in rivals if rival is not good[0])
        ):
            photo.reasons = [RejectReason.MULTIPLE_FACES]
        elif single_face and not good:
            photo.reasons = list(faces[0].reasons)
        if not single_face:
            to_embed = faces
        elif photo.reasons == [RejectReason.MULTIPLE_FACES]:
            # Every usable face is a candidate: the person's other photos may say which one is theirs.
            to_embed = good
        else:
            to_embed = good[:1] if not photo.reasons else []
        if not embed:
            to_embed = []
        inputs = self.inputs(image, [face.detection.box for face in to_embed])
        return _Judged(photo, to_embed, inputs, scale, size)

    def inputs(self, image: RgbImage, boxes: list[Box]) -> FaceInputs:
        """The embedder's inputs for faces found at ``boxes`` by any detector
        (``serving.vision.face_input``)."""
        inputs, _ = face_inputs(Image.fromarray(image), boxes, self.detector.describe_patches)
        return inputs

    def embed_boxes(self, image: RgbImage, boxes: list[Box]) -> npt.NDArray[np.float32]:
        """``(len(boxes), 640)`` embeddings of the faces found at ``boxes`` in ``image``."""
        return self.embedder.embed(self.inputs(image, boxes))

    def pixels_at_once(self, photos: Sequence[bytes]) -> int:
        """The most header pixels ``analyze_many`` decodes at once for ``photos`` (its threads each
        decode one photo): what a request holds of the vision gate's pixel budget."""
        sizes = sorted((header_pixels(data) for data in photos), reverse=True)
        return sum(sizes[: max(1, self.settings.workers)])

    def analyze(self, data: bytes, *, single_face: bool, embed: bool = True) -> PhotoFaces:
        """Decode and analyse one photo; raises ``InvalidImageError`` for unusable bytes. A photo of
        more than ``Settings.decode_pixels`` is analysed reduced (``decode_reduced``); its boxes and
        landmarks are still in the photo's pixels. Without ``embed``, the faces are found and judged
        only (detection alone: the embedder is most of a group photo's time)."""
        started = time.perf_counter()
        judged = self._decode_and_judge(data, single_face=single_face, embed=embed)
        judged_at = time.perf_counter()
        if not embed:
            photo = judged.finish(np.empty((0, 0), np.float32))
            photo.seconds = {"detector": judged_at - started, "calculator": 0.0}
            return photo
        photo = judged.finish(self.embedder.embed(judged.inputs))
        photo.seconds = {"detector": judged_at - started, "calculator": time.perf_counter() - judged_at}
        return photo

    def _decode_and_judge(self, data: bytes, *, single_face: bool, embed: bool = True) -> _Judged:
        decoded = decode_reduced(
            data,
            max_pixels=self.settings.max_pixels,
            min_side=self.detector_settings.min_face_size,
            budget=self.settings.decode_pixels,
        )
        return self._judge(
            decoded.image,
            single_face=single_face,
            scale=decoded.scale,
            size=(decoded.width, decoded.height),
            embed=embed,
        )

    def analyze_many(
        self, photos: Sequence[Path | bytes], *, single_face: bool, workers: int | None = None
    ) -> list[PhotoFaces | PhotoError]:
        """Analyse many photos on ``workers`` threads (default: settings), results in input order.

        Each thread takes a run of consecutive photos, decodes and judges them one at a time (so it
        holds one decoded photo at a time, as ``pixels_at_once`` counts), then embeds all their faces
        in one batch: a batch of 8 faces costs 20-25 % less per face than one at a time (int8 graph,
        one core, measured)."""

        def judge(photo: Path | bytes) -> _Judged | PhotoError:
            try:
                data = photo.read_bytes() if isinstance(photo, Path) else photo
                return self._decode_and_judge(data, single_face=single_face)
            except InvalidImageError as error:
                return PhotoError(error.code, error.message)
            except OSError as error:  # reading a file (bytes were read already): name the file only
                where = str(photo) if isinstance(photo, Path) else "the photo"
                return PhotoError("unreadable_file", f"{where}: {error.strerror or error}")

        def run(batch: Sequence[Path | bytes]) -> list[PhotoFaces | PhotoError]:
            judged = [judge(photo) for photo in batch]
            pending = [item for item in judged if isinstance(item, _Judged)]
            embeddings = self.embedder.embed(concatenate_inputs([item.inputs for item in pending]))
            done: list[PhotoFaces | PhotoError] = []
            start = 0
            for item in judged:
                if isinstance(item, PhotoError):
                    done.append(item)
                    continue
                stop = start + len(item.inputs)
                done.append(item.finish(embeddings[start:stop]))
                start = stop
            return done

        self.load()
        count = max(1, min(workers or self.settings.workers, len(photos)))
        size = max(1, min(PHOTOS_PER_BATCH, -(-len(photos) // count)))
        batches = [photos[start : start + size] for start in range(0, len(photos), size)]
        if count == 1:
            return [result for batch in batches for result in run(batch)]
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="faceforge-vision") as pool:
            return [result for results in pool.map(run, batches) for result in results]
