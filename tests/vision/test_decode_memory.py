"""Decoding is bounded by pixels, not by requests: twelve concurrent analyses of one 40-megapixel PNG
(made here by upscaling a shared photo) stay within what the vision gate's pixel budget allows.

Measured in a subprocess of its own (peak RSS, ``VmHWM``, reset after the networks are loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from faceforge.core.config import Settings
from faceforge.core.memory import ARENAS
from tests.conftest import LFW10

CONCURRENT = 12
PHOTO_PIXELS = 7300 * 5470  # 39.9 MP, just under the default max_pixels
BUDGET = 45_000_000  # the gate's pixel budget here: one such photo decodes at a time
DECODED = 12_000_000  # decode_pixels: analysed at 3650 x 2740 (reduced by 2)

MEASURE = """
import io, json, sys, threading
from pathlib import Path
from PIL import Image
from faceforge.serving.wiring import Services
from faceforge.core.config import LimitSettings, Settings, WorkerSettings
from faceforge.core.memory import limit_malloc_arenas, return_large_buffers

home, weights, source, count, budget, decoded = sys.argv[1:7]
with Image.open(source) as photo:
    big = photo.convert("RGB").resize((7300, 5470), Image.Resampling.BICUBIC)
buffer = io.BytesIO()
big.save(buffer, format="PNG", compress_level=1)
data = buffer.getvalue()
del big, buffer
limits = LimitSettings(
    vision_concurrency=int(count), vision_queue=int(count), vision_pixels=int(budget),
    max_file_bytes=len(data) + 1,
)
settings = Settings(
    home=Path(home), weights_cache=Path(weights), limits=limits, decode_pixels=int(decoded),
    worker=WorkerSettings(embedded=False), inference_threads=1,
)
limit_malloc_arenas()  # as `faceforge serve` does
return_large_buffers()
services = Services.start(settings, embedded_worker=False)
services.pipeline.load()
services.compat.faces_of(Path(source).read_bytes())  # every network has run once


def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
before = status("VmRSS")
faces = []
barrier = threading.Barrier(int(count))


def identify():
    barrier.wait()
    try:
        faces.append(len(services.compat.faces_of(data)))
    except Exception as error:
        faces.append(repr(error))


threads = [threading.Thread(target=identify) for _ in range(int(count))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"before": before, "peak": status("VmHWM"), "faces": faces, "body": len(data)}))
services.close()
"""


def test_concurrent_analyses_of_a_huge_png_stay_within_the_pixel_budget(
    tmp_path: Path, settings: Settings
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    source = LFW10 / "Tony_Blair" / "Tony_Blair_0001.jpg"
    args = [tmp_path / "home", settings.weights_dir, source, CONCURRENT, BUDGET, DECODED]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    faces = measured["faces"]
    assert len(faces) == CONCURRENT and len(set(faces)) == 1 and faces[0] >= 1, faces  # the same faces
    # One photo is analysed at a time. Its memory: the full-size decode (Pillow keeps RGB in 4 bytes
    # a pixel; PNG cannot be decoded reduced) and the reduced image's copies (Pillow's reduced and
    # RGB images, the array, the detector's and cropper's Pillow images: 4 + 4 + 3 + 4 + 4 bytes a
    # pixel). Each of the two malloc arenas (memory.ARENAS) may keep one finished analysis's blocks
    # besides the one running; and every request's body is held meanwhile. Without the budget, each
    # of the twelve held at least its full-size decode at once.
    analysis = 4 * PHOTO_PIXELS + 19 * DECODED
    allowed = (ARENAS + 1) * analysis + CONCURRENT * measured["body"]
    assert measured["peak"] - measured["before"] <= allowed, (measured, allowed)
    assert allowed < CONCURRENT * 4 * PHOTO_PIXELS
