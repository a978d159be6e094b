"""Stored photos scaled down for display (the dashboard's person page), kept in a small cache.

A person's page shows each photo a few hundred pixels wide; sending the originals cost 2.5 MB for
seven photos. ``SizedPhotos.jpeg`` decodes a stored photo the way enrolment does (orientation
applied, so face boxes in the photo's own pixels still fit in percent), scales it so its longer side
is at most ``size`` pixels, and encodes a JPEG. Results stay in memory, least recently used first
out, within a byte budget: stored photo files are never rewritten (each has a fresh random name), so
``(name, size)`` identifies the result for good; a deleted photo's entry is unreachable (the route
looks the photo up first) and ages out."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from faceforge.serving.vision.decode import RgbImage

DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024
JPEG_QUALITY = 85


class SizedPhotos:
    """A byte-bounded LRU of scaled JPEGs; safe to share between request threads."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def jpeg(self, path: Path, size: int, decode: Callable[[bytes], RgbImage]) -> bytes:
        """The photo at ``path`` as a JPEG whose longer side is at most ``size`` px (never enlarged)."""
        key = (path.name, size)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        # Decoded outside the lock: two first requests for one photo both decode, neither waits.
        image = Image.fromarray(decode(path.read_bytes()))
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        data = buffer.getvalue()
        with self._lock:
            if key not in self._entries and len(data) <= self.budget_bytes:
                self._entries[key] = data
                self._bytes += len(data)
                while self._bytes > self.budget_bytes:
                    _, dropped = self._entries.popitem(last=False)
                    self._bytes -= len(dropped)
        return data
