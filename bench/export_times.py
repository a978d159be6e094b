"""Per-version export times and file sizes for a 100-person version, with the backbones cached.

Usage: .venv/bin/python -m bench.export_times [--people 100] [--photos-per-person 5]
The people are made from the dev photos in ../shared/faces (cycled): export work depends on the
number of people, not on who they are. The first run also converts the on-device backbones into
the bench weights cache and reports how long that took (later runs find them cached).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.reference import machine, peak_rss_mb
from faceforge.building.export import coreml_models, onnx_models, tflite_models
from faceforge.building.export.version_exports import VersionExporter, device_labels
from faceforge.building.head_fitting import fit_head
from faceforge.building.version_builder import bench_people, version_manifest
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.formats import ExportFormat
from faceforge.core.memory import limit_malloc_arenas
from faceforge.core.model.head import RecognitionHead
from faceforge.core.model.head_files import head_bytes
from faceforge.core.model.manifest import HEAD_FILE
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from faceforge.storage.version_store import VersionStore

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
MB = 1024 * 1024


def _head(settings: Settings, people: int, per_person: int) -> RecognitionHead:
    photos = [
        p
        for folder in ("krasserm_lfw10", "dlib_johns", "deepface_tests")
        for p in image_files(FACES / folder)
    ]
    pipeline = FacePipeline(settings)
    embeddings = []
    for result in pipeline.analyze_many(photos, single_face=True):
        if (
            not isinstance(result, PhotoError)
            and not result.reasons
            and result.faces[0].embedding is not None
        ):
            embeddings.append(result.faces[0].embedding)
    vectors, labels = [], []
    for person in range(people):
        for j in range(per_person):
            vectors.append(embeddings[(person * per_person + j) % len(embeddings)])
            labels.append(f"person {person + 1} ({person + 1})")
    return fit_head(np.stack(vectors), labels)


def _timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--photos-per-person", type=int, default=5)
    args = parser.parse_args()
    limit_malloc_arenas()  # as `faceforge serve` and `faceforge worker` do
    settings = Settings(
        home=Path(tempfile.mkdtemp(prefix="faceforge-bench-")),
        weights_cache=Path(tempfile.gettempdir()) / "faceforge-bench" / "weights",
    )
    head = _head(settings, args.people, args.photos_per_person)
    exporter = VersionExporter(settings.weights_dir)
    _, backbones_seconds = _timed(exporter.prepare)
    exporter.onnx.probe_embeddings()  # the server-side reference, computed once per process like a worker

    weights, bias = onnx_models.head_affine(head)
    labels = device_labels(head)

    def heads_only() -> dict[str, int]:
        return {
            "head.onnx": len(onnx_models.head_model(head).SerializeToString()),
            "head.tflite": len(tflite_models.write_model(tflite_models.head_model(weights, bias))),
            "head.mlmodel": len(coreml_models.serialize(coreml_models.head_spec(weights, bias, labels))),
        }

    heads_only()  # first use imports coremltools and traces once; a running worker has done that
    head_sizes, heads_seconds = _timed(heads_only)
    # Warm run first (imports, first Core ML / ONNX sessions), as a running worker would be.
    exporter.export(head)
    onnx_and_coreml, onnx_coreml_seconds = _timed(
        lambda: exporter.export(head, (ExportFormat.ONNX, ExportFormat.COREML))
    )
    everything, all_seconds = _timed(lambda: exporter.export(head))
    manifest = version_manifest(1, head, bench_people(len(head.labels)), {}, everything.manifest)
    files = {HEAD_FILE: head_bytes(head), **everything.files}
    written, write_seconds = _timed(
        lambda: VersionStore(settings.models_dir).publish(manifest, files, everything.shared)
    )
    sizes = {name: round(entry.size / MB, 3) for name, entry in sorted(written.files.items())}
    print(
        json.dumps(
            {
                "benchmark": "export_times",
                "people": len(head.labels),
                "backbone_conversion_seconds_this_run": backbones_seconds,
                "head_only_files_seconds": heads_seconds,
                "head_sizes_bytes": head_sizes,
                "fused_onnx_and_coreml_seconds": onnx_coreml_seconds,
                "onnx_and_coreml_by_format": onnx_and_coreml.seconds,
                "all_formats_seconds": all_seconds,
                "all_formats_by_format": everything.seconds,
                "write_version_seconds": write_seconds,
                "all_formats_including_write_seconds": round(all_seconds + write_seconds, 3),
                "file_sizes_mb": sizes,
                "peak_rss_mb": peak_rss_mb(),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
