"""Stored photos scaled down for display (the dashboard's person page), kept in a small cache.

A person's page shows each photo a few hundred pixels wide; sending the originals cost 2.5 MB for
seven photos. ``SizedPhotos.jpeg`` decodes a stored photo the way enrolment does (orientation
applied, so face boxes in the photo's own pixels still fit in percent; reduced while decoded, so a
40 MP photo is never held at full size to show a few hundred pixels), scales it so its longer side
is at most ``size`` pixels, and encodes a JPEG. Results stay in memory, least recently used first
out, within a byte budget: stored photo files are never rewritten (each has a fresh random name), so
``(name, size)`` identifies the result for good; a deleted photo's entry is unreachable (the route
looks the photo up first) and ages out. ``SizedPhotos.face`` does the same for the face thumbnails
of the people and strangers lists."""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from faceforge.core.faces import Box
from faceforge.serving.services.vision_gate import VisionGate
from faceforge.serving.vision.crop import crop_face
from faceforge.serving.vision.decode import display_budget, header_size, pixels_decoded
from faceforge.serving.vision.pipeline import FacePipeline

THUMBNAIL_MARGIN = 0.25  # of the box's longer side on each edge: the whole head, not just the face

DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024
JPEG_QUALITY = 85


class SizedPhotos:
    """A byte-bounded LRU of scaled JPEGs; safe to share between request threads."""

    def __init__(
        self, pipeline: FacePipeline, gate: VisionGate, budget_bytes: int = DEFAULT_BUDGET_BYTES
    ) -> None:
        self.pipeline = pipeline
        self.gate = gate
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def jpeg(self, path: Path, size: int) -> bytes:
        """The photo at ``path`` as a JPEG whose longer side is at most ``size`` px (never enlarged)."""

        def scaled(data: bytes, longer: int) -> bytes:
            image = Image.fromarray(self.pipeline.decode_for_display(data, longer_side=longer).image)
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            return _jpeg(image)

        return self._cached((path.name, size), path, lambda _: size, scaled)

    def face(self, path: Path, box: dict[str, float], size: int) -> bytes:
        """A JPEG of the face in ``box`` (photo pixels) of the photo at ``path``: a square of ``size``
        px around it with ``THUMBNAIL_MARGIN``, so the whole head shows (the people and strangers
        lists). A stored photo's box never changes, so its name says which face."""
        square = max(box["width"], box["height"]) * (1 + 2 * THUMBNAIL_MARGIN)

        def longer_side(data: bytes) -> int:
            # Reduced while decoded as far as the face's square keeps ``size`` px: the photo's longer
            # side shrinks by the factor that brings the square's side down to ``size``.
            return max(size, math.ceil(max(header_size(data)) * size / max(square, 1.0)))

        def cropped(data: bytes, longer: int) -> bytes:
            photo = self.pipeline.decode_for_display(data, longer_side=longer)
            s = photo.scale
            face_box = Box(box["x"] / s, box["y"] / s, box["width"] / s, box["height"] / s)
            face = crop_face(Image.fromarray(photo.image), face_box, margin=THUMBNAIL_MARGIN, size=size)
            return _jpeg(Image.fromarray(face))

        return self._cached((f"{path.name}#face", size), path, longer_side, cropped)

    def _cached(
        self,
        key: tuple[str, int],
        path: Path,
        longer_side: Callable[[bytes], int],
        make: Callable[[bytes, int], bytes],
    ) -> bytes:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        # Made outside the lock: two first requests for one photo both decode, neither waits. The
        # decode holds the pixels it decodes of the vision budget (waiting, never refused: a list
        # asks for dozens at once), so display and analysis together stay within VISION_PIXELS.
        photo = path.read_bytes()
        longer = longer_side(photo)
        with self.gate.pixels(pixels_decoded(photo, display_budget(longer))):
            data = make(photo, longer)
        with self._lock:
            if key not in self._entries and len(data) <= self.budget_bytes:
                self._entries[key] = data
                self._bytes += len(data)
                while self._bytes > self.budget_bytes:
                    _, dropped = self._entries.popitem(last=False)
                    self._bytes -= len(dropped)
        return data


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
