"""A camera for Chromium's `--use-file-for-fake-video-capture`: a Y4M file (4:2:0, JPEG's full-range
BT.601) showing a real photo on a grey frame, made by the test that needs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

FRAME = (640, 480)
GREY = (90, 90, 90)


def _half(plane: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    height, width = plane.shape
    halved: npt.NDArray[np.float64] = plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
    return halved


def write_y4m(target: Path, photo: Path, *, face_side: int = 400, frames: int = 4) -> Path:
    """``frames`` identical 640 x 480 frames (Chromium loops them) of ``photo`` scaled to
    ``face_side`` pixels, centred."""
    canvas = Image.new("RGB", FRAME, GREY)
    shown = Image.open(photo).convert("RGB").resize((face_side, face_side), Image.Resampling.BILINEAR)
    canvas.paste(shown, ((FRAME[0] - face_side) // 2, (FRAME[1] - face_side) // 2))
    rgb = np.asarray(canvas, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    planes = b"".join(
        np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in (y, _half(u), _half(v))
    )
    header = f"YUV4MPEG2 W{FRAME[0]} H{FRAME[1]} F10:1 Ip A1:1 C420jpeg\n".encode()
    target.write_bytes(header + b"".join(b"FRAME\n" + planes for _ in range(frames)))
    return target
