"""Calibration at every gallery size: do strangers stay strangers with 1, 2, 5 ... 201 people enrolled?

Usage: .venv/bin/python -m bench.gallery_sizes [--dataset DIR] [--unknown DIR] [--enroll K]
       [--sizes 1,2,5,10,20,50,100,201] [--repeats 10] [--calibration-strangers 100] [--home DIR]

Everything goes through ``faceforge eval``'s own harness (``building.evaluation.harness.evaluate``),
each photo analysed once. For each gallery size N below the dataset's size, ``--repeats`` random
galleries (eval's ``--people N --seed S``, S = 0, 1, ...; fewer above 20 people, where galleries
differ less) are built; at the full size, the first K photos of everyone (eval without a seed).
For each gallery:

- ``rejected``: strangers rejected (``unknown_reject_rate``), on the unknown photos that are not
  given to calibration;
- ``estimate``: the version's own estimate of it (``calibration.estimated_unknown_reject``);
- ``gallery_reject``: what the gallery's own photos, each a stranger to everyone else, say of it at
  the version's threshold (``calibration.evidence``), the evidence that mostly decides at 201 people;
- ``known``: probes accepted as the right person; ``oracle``: known accepted at the thresholds that
  reject 95/97/98/99 % of those strangers (chosen on them: how well the embedder separates, whatever the
  calibration);

each without and with ``--calibration-strangers`` strangers given to calibration (eval's
``--strangers``: the first photos of ``--unknown``, in name order; the rest are measured in both). The
row gives the mean over galleries, the worst gallery, and the largest gap between a gallery's measured
rejection and its estimate. The JSON also names the machine and the population model.

``known_strangers`` is the strangers collection's own scenario: 10 people enrolled, 100 other people
of the dataset collected as strangers from their first 2 photos each (``--strangers``), and measured:
those strangers' other photos, the ``--unknown`` strangers, and the enrolled people's probes, each
without and with the collection (``--known-strangers-galleries`` random draws of the 110 people).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.memo import MemoPipeline
from bench.reference import machine
from faceforge.building.evaluation.harness import EvalOptions, evaluate
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.model.population import shipped_model

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
SIZES = (1, 2, 5, 10, 20, 50, 100, 201)


def repeats_for(size: int, total: int, repeats: int) -> list[int | None]:
    """Seeds of the galleries of one size (None: the whole dataset, first photos)."""
    if size >= total:
        return [None]
    if size <= 20:
        return list(range(repeats))
    return list(range(max(1, repeats * 20 // (size * 2))))


def _split_unknown(unknown: Path, count: int, into: Path) -> tuple[Path, Path | None]:
    """Symlink folders: the first ``count`` unknown photos as calibration strangers, the rest measured."""
    photos = image_files(unknown)
    measured, strangers = into / "measured", into / "strangers"
    measured.mkdir()
    for photo in photos[count:]:
        (measured / photo.name).symlink_to(photo)
    if not count:
        return measured, None
    strangers.mkdir()
    for photo in photos[:count]:
        (strangers / photo.name).symlink_to(photo)
    return measured, strangers


def _row(results: list[dict[str, Any]]) -> dict[str, Any]:
    rejected = [r["unknown_reject_rate"] for r in results]
    estimates = [r["calibration"]["estimated_unknown_reject"] for r in results]
    known = [r["known_accept_rate"] for r in results]
    oracle = {
        share: statistics.fmean(r["known_accept_at_unknown_reject"][share] for r in results)
        for share in results[0]["known_accept_at_unknown_reject"]
    }
    return {
        "galleries": len(results),
        "rejected": round(statistics.fmean(rejected), 4),
        "rejected_worst": round(min(rejected), 4),
        "estimate": round(statistics.fmean(estimates), 4),
        "largest_gap": round(max(abs(a - b) for a, b in zip(rejected, estimates, strict=True)), 4),
        "known": round(statistics.fmean(known), 4),
        "known_worst": round(min(known), 4),
        "threshold": round(statistics.fmean(r["threshold"] for r in results), 4),
        # What the gallery's own photos, each a stranger to everyone else, say at the threshold:
        # the evidence that mostly decides from about 200 photos on (None below two people).
        "gallery_reject": _mean_of(r["calibration"]["evidence"]["gallery_reject"] for r in results),
        "oracle_known_at_reject": {share: round(value, 4) for share, value in oracle.items()},
        "method": sorted({r["calibration"]["method"] for r in results}),
    }


def _mean_of(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.fmean(present), 4) if present else None


def _link_folder(into: Path, photos: list[Path]) -> Path:
    into.mkdir(parents=True)
    for photo in photos:
        (into / f"{photo.parent.name}_{photo.name}").symlink_to(photo)
    return into


def known_strangers(
    pipeline: MemoPipeline, dataset: Path, unknown: Path, enroll: int, target: float, galleries: int
) -> dict[str, Any]:
    """The strangers collection's scenario (module docstring): means over ``galleries`` draws."""
    folders = sorted(p for p in dataset.iterdir() if len(image_files(p)) > enroll)
    measured: dict[str, list[float]] = {}
    for seed in range(galleries):
        chosen = random.Random(seed).sample(folders, 110)
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            gallery = root / "gallery"
            gallery.mkdir()
            for person in chosen[:10]:
                (gallery / person.name).symlink_to(person)
            collected, later = root / "strangers", []
            for person in chosen[10:]:
                photos = image_files(person)
                _link_folder(collected / person.name, photos[:2])
                later += photos[2:]
            their_other_photos = _link_folder(root / "later", later)
            for name, given in (("without", None), ("with", collected)):
                for probes_name, probes in (
                    ("collected_strangers_other_photos", their_other_photos),
                    ("unknown", unknown),
                ):
                    result = evaluate(
                        pipeline,
                        EvalOptions(
                            dataset=gallery,
                            enroll=enroll,
                            unknown=probes,
                            target_unknown_reject=target,
                            strangers=given,
                        ),
                    )
                    measured.setdefault(f"{name}.{probes_name}_rejected", []).append(
                        result["unknown_reject_rate"]
                    )
                    measured.setdefault(f"{name}.{probes_name}_estimate", []).append(
                        result["calibration"]["estimated_unknown_reject"]
                    )
                    measured.setdefault(f"{name}.known", []).append(result["known_accept_rate"])
    return {
        "galleries": galleries,
        **{key: round(statistics.fmean(values), 4) for key, values in sorted(measured.items())},
        "worst": {
            key: round(min(values), 4) for key, values in sorted(measured.items()) if "rejected" in key
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="empty: only known_strangers")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calibration-strangers", type=int, default=100)
    parser.add_argument("--known-strangers-galleries", type=int, default=30)
    parser.add_argument(
        "--home", type=Path, default=None, help="faceforge home (its weights cache is reused)"
    )
    args = parser.parse_args(argv)
    settings = Settings(home=args.home or Path(tempfile.gettempdir()) / "faceforge-bench")
    pipeline = MemoPipeline(settings)
    total = sum(1 for person in args.dataset.iterdir() if len(image_files(person)) > args.enroll)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        measured, strangers = _split_unknown(args.unknown, args.calibration_strangers, Path(folder))
        for size in (int(value) for value in args.sizes.split(",") if value):
            size = min(size, total)
            variants = {"without_strangers": None, "with_strangers": strangers}
            for name, given in variants.items():
                if given is None and name == "with_strangers":
                    continue
                results = [
                    evaluate(
                        pipeline,
                        EvalOptions(
                            dataset=args.dataset,
                            enroll=args.enroll,
                            unknown=measured,
                            seed=seed,
                            target_unknown_reject=settings.target_unknown_reject,
                            people=None if seed is None else size,
                            strangers=given,
                        ),
                    )
                    for seed in repeats_for(size, total, args.repeats)
                ]
                rows.setdefault(str(size), {})[name] = _row(results)
            print(json.dumps({str(size): rows[str(size)]}), flush=True)
    scenario = known_strangers(
        pipeline,
        args.dataset,
        args.unknown,
        args.enroll,
        settings.target_unknown_reject,
        args.known_strangers_galleries,
    )
    print(json.dumps({"known_strangers": scenario}), flush=True)
    population = shipped_model()
    print(
        json.dumps(
            {
                "bench": "gallery_sizes",
                "dataset": str(args.dataset),
                "unknown_measured": len(image_files(args.unknown)) - args.calibration_strangers,
                "calibration_strangers": args.calibration_strangers,
                "target_unknown_reject": settings.target_unknown_reject,
                "population": {"embedder": population.embedder, **population.facts},
                "sizes": rows,
                "known_strangers": scenario,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
