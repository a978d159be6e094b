"""Per-track decisions of the camera agent: how many frames, combined how, against single photos.

    .venv/bin/python -m bench.watch_tracks [--known DIR] [--unknown DIR] [--enroll 5] [--frames 5]
        [--model tflite-int8] [--detector mtcnn] [--strangers N] [--home DIR] [--keep DIR]

A real version is built the way ``faceforge build`` builds one (``building.build.build_model``: the
bulk importer and the training worker in a temporary home of its own, ``--home`` giving the weights
cache): the first ``--enroll`` photos of every ``--known`` person, ONNX and TFLite files. Its
exported files are put in an agent cache (``edge.models.ModelStore``: blobs named by sha256 and
``current.json``), and every frame goes through the agent's own per-frame path
(``Agent.detector`` then ``Agent.faces``: the version's refiner, crop, chip, backbone and head, the
phone's contract), with the face's largest box. Frames are 640 x 480 grey with the photo centred,
as in ``tests/watch``.

Sequences of ``--frames`` frames:
- known: the next ``--frames`` photos of a person with at least ``--enroll + --frames`` photos,
  one sequence starting at each of them (the others following in a circle), so that the single
  photo baseline covers every probe photo;
- strangers: each ``--unknown`` photo (one photo per stranger) as it is, then jittered in every
  further frame (a fixed-seed shift of up to 12 px, scale 0.9-1.1, brightness 0.8-1.2).

Compared: the single photo (the first frame alone) and a track's decision from its first k frames
with a sample (k = 1, 2, 3, 5) under each ``tracking.Rule``. ``known_accepted``: named as the right
person; ``strangers_rejected``: not named; a sequence with no face found decides nothing (a known
person not accepted, a stranger not named); the counts behind them too. ``chosen``: among the rules
and k at least as good as single photos on both, the most known accepted, then the fewest frames,
then the most strangers rejected. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bench.reference import machine, peak_rss_mb
from faceforge.building.build import BuildOptions, build_model
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.edge.agent import Agent, make_detector
from faceforge.edge.choices import DetectorName, ModelChoice
from faceforge.edge.models import CURRENT_FILE, MANIFEST_FILE, CachedVersion, ModelStore
from faceforge.edge.runtime import EdgeModel
from faceforge.edge.source import Frame
from faceforge.edge.tracking import RULE, SAMPLES, FloatArray, Rule, decide

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
FRAME = (640, 480)
GREY = (90, 90, 90)
TRACK_FRAMES = (1, 2, 3, 5)
Sample = FloatArray | None  # a frame's probabilities, None: no face found (or the refiner said no)


@dataclass(frozen=True, slots=True)
class Sequence:
    samples: list[Sample]
    expected: int | None  # the head's output of the right person; None: a stranger


def gallery(known: Path, enroll: int, into: Path) -> Path:
    """Folder per person with symlinks to their first ``enroll`` photos."""
    for person in sorted(p for p in known.iterdir() if p.is_dir()):
        photos = image_files(person)[:enroll]
        (into / person.name).mkdir(parents=True)
        for photo in photos:
            (into / person.name / photo.name).symlink_to(photo)
    return into


def agent_cache(built: Path, cache: Path, choice: ModelChoice) -> CachedVersion:
    """The built version's files as an agent keeps them (blobs by sha256, ``current.json``)."""
    manifest = json.loads((built / MANIFEST_FILE).read_bytes())
    blobs = cache / "blobs"
    blobs.mkdir(parents=True)
    for name, entry in manifest["files"].items():
        if (built / name).is_file():
            (blobs / entry["sha256"]).symlink_to(built / name)
    (cache / CURRENT_FILE).write_bytes((built / MANIFEST_FILE).read_bytes())
    version = ModelStore(cache, choice).cached()
    if version is None:
        raise SystemExit(f"the built version in {built} lacks the {choice.value} files")
    return version


def centred(photo: Image.Image, shift: tuple[int, int] = (0, 0)) -> Frame:
    frame = Image.new("RGB", FRAME, GREY)
    x = (FRAME[0] - photo.width) // 2 + shift[0]
    y = (FRAME[1] - photo.height) // 2 + shift[1]
    frame.paste(photo, (x, y))
    return np.asarray(frame)


def jittered(photo: Image.Image, rng: np.random.Generator) -> Frame:
    scale = rng.uniform(0.9, 1.1)
    picture = photo.resize(
        (round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BILINEAR
    )
    picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.8, 1.2))
    dx, dy = (int(v) for v in rng.integers(-12, 13, size=2))
    return centred(picture, (dx, dy))


def sample(agent: Agent, frame: Frame) -> Sample:
    """The agent's per-frame path on the frame's largest face."""
    boxes = agent.detector(frame)
    if not boxes:
        return None
    largest = max(boxes, key=lambda box: box.width * box.height)
    face = agent.faces(frame, [largest])[0]
    return None if face is None else face[1]


def decision(samples: list[Sample], k: int, rule: Rule) -> int | None:
    """The person output named from the first ``k`` frames with a face; None: nobody named."""
    present = [s for s in samples if s is not None][:k]
    if not present:
        return None
    best = decide(present, rule)[0]
    return best if best < len(present[0]) - 1 else None


def rates(sequences: list[Sequence], k: int, rule: Rule, *, first_frame: bool = False) -> dict[str, float]:
    """Figures of the decisions from ``k`` frames under ``rule`` (``first_frame``: the first frame
    alone, found face or not: the single photo)."""

    def named(samples: list[Sample]) -> int | None:
        return decision(samples[:1] if first_frame else samples, k, rule)

    known = [(s.expected, named(s.samples)) for s in sequences if s.expected is not None]
    strangers = [named(s.samples) for s in sequences if s.expected is None]
    return {
        "known_accepted": round(sum(name == right for right, name in known) / len(known), 4),
        "known_misnamed": round(
            sum(name is not None and name != right for right, name in known) / len(known), 4
        ),
        "strangers_rejected": round(sum(name is None for name in strangers) / len(strangers), 4),
        "known_not_accepted": sum(name != right for right, name in known),
        "strangers_named": sum(name is not None for name in strangers),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--model", type=ModelChoice, default=ModelChoice.TFLITE_INT8)
    parser.add_argument("--detector", type=DetectorName, default=DetectorName.MTCNN)
    parser.add_argument("--strangers", type=int, default=None, help="only the first N unknown photos")
    parser.add_argument("--seed", type=int, default=0, help="the strangers' jitter")
    parser.add_argument(
        "--home", type=Path, default=None, help="faceforge home (its weights cache is reused)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="copy the built version's files here")
    args = parser.parse_args(argv)
    settings = Settings(
        home=args.home or Path(tempfile.gettempdir()) / "faceforge-bench",
        worker=WorkerSettings(formats="onnx,tflite"),
    )
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        report = build_model(
            BuildOptions(gallery(args.known, args.enroll, root / "gallery"), root / "built", holdout=0.0),
            settings,
            lambda *_: None,
        )
        seconds["build"] = time.perf_counter() - started
        if args.keep:
            shutil.copytree(root / "built", args.keep)
        version = agent_cache(root / "built", root / "cache", args.model)
        manifest = json.loads((root / "built" / MANIFEST_FILE).read_bytes())
        agent = Agent(EdgeModel(version, threads=1), make_detector(args.detector), "bench", [])
        output = {
            person.name.replace(" ", "_"): version.labels.index(person.label) for person in version.roster
        }
        started = time.perf_counter()
        sequences: list[Sequence] = []
        run: list[list[Sample]] = []
        for person in sorted(p for p in args.known.iterdir() if p.is_dir()):
            probes = image_files(person)[args.enroll : args.enroll + args.frames]
            if len(probes) < args.frames or person.name not in output:
                continue
            samples = [sample(agent, centred(Image.open(p).convert("RGB"))) for p in probes]
            run.append(samples)  # each photo's frame runs once; its sequences share it
            for start in range(args.frames):
                sequences.append(Sequence(samples[start:] + samples[:start], output[person.name]))
        for index, photo in enumerate(image_files(args.unknown)[: args.strangers]):
            picture = Image.open(photo).convert("RGB")
            rng = np.random.default_rng([args.seed, index])
            frames = [centred(picture)] + [jittered(picture, rng) for _ in range(args.frames - 1)]
            run.append([sample(agent, frame) for frame in frames])
            sequences.append(Sequence(run[-1], None))
        seconds["frames"] = time.perf_counter() - started
    single = rates(sequences, 1, RULE, first_frame=True)
    tracks = {
        rule.value: {str(k): rates(sequences, k, rule) for k in TRACK_FRAMES if k <= args.frames}
        for rule in Rule
    }
    eligible = [
        (rule, int(k), row)
        for rule, rows in tracks.items()
        for k, row in rows.items()
        if row["known_accepted"] >= single["known_accepted"]
        and row["strangers_rejected"] >= single["strangers_rejected"]
    ]
    # Among the rules and k at least as good as single photos on both counts: the most known accepted,
    # then the fewest frames (a decision sooner and fewer model runs), then the most strangers rejected.
    chosen = max(
        eligible, key=lambda e: (e[2]["known_accepted"], -e[1], e[2]["strangers_rejected"], e[0] == RULE)
    )
    print(
        json.dumps(
            {
                "benchmark": "watch_tracks",
                "machine": machine(),
                "model": args.model.value,
                "detector": args.detector.value,
                "version": {
                    "people": report["people"],
                    "enrolled_photos": report["enrolled_photos"],
                    "threshold": round(manifest["threshold"], 4),
                    "estimated_unknown_reject": manifest["calibration"].get("estimated_unknown_reject"),
                },
                "known_sequences": sum(s.expected is not None for s in sequences),
                "known_people": sum(s.expected is not None for s in sequences) // args.frames,
                "stranger_sequences": sum(s.expected is None for s in sequences),
                "frames_run": sum(len(samples) for samples in run),
                "frames_without_face": sum(s is None for samples in run for s in samples),
                "single_photo": single,
                "tracks": tracks,
                "agent_default": {"rule": RULE.value, "k": SAMPLES},
                "chosen": {"rule": chosen[0], "k": chosen[1], **chosen[2]},
                "eligible": [f"{rule} k={k}" for rule, k, _ in eligible],
                "seconds": {stage: round(value, 1) for stage, value in seconds.items()},
                "peak_rss_mb": peak_rss_mb(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
