"""``faceforge build``: folder-per-person photos to a model's files and a report, without a server.

The second seed system's whole job. The build *is* the service: the photos kept for enrolment are
imported into a temporary home by the bulk importer (one person at a time, so person ids and thus
labels follow the folders' order), one version is trained by the training worker, and that
version's files are copied out -- byte for byte what the service publishes for the same photos. A
share of each person's photos is held out (chosen by ``random.Random(seed)``; people with one photo
keep it) and recognised by the version's head (and by its TFLite model) for the report. Everything
is written to a staging directory beside ``out`` and renamed into place at the end: ``out`` is
complete or absent (an empty ``out`` that exists already gets the files moved in, the report last).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files, overlapping, unknown_photos
from faceforge.core.errors import DatasetError, TrainingError
from faceforge.core.faces import PhotoFaces
from faceforge.core.formats import ExportFormat
from faceforge.core.interrupts import interrupts_held
from faceforge.serving.services.bulk_import import (
    BulkImporter,
    FolderPerson,
    ImportProgress,
    LocalTarget,
    loose_photos,
    scan_folders,
)
from faceforge.serving.vision.pipeline import PhotoError

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
PLOTS = {"similarity.png": "histogram_png", "accept_vs_reject.png": "curve_png", "people.png": "people_png"}


@dataclass(frozen=True, slots=True)
class BuildOptions:
    dataset: Path
    out: Path
    holdout: float = 0.2
    unknown: Path | None = None
    seed: int = 0


def split_people(
    people: list[FolderPerson], holdout: float, seed: int
) -> tuple[list[FolderPerson], list[tuple[FolderPerson, Path]]]:
    """Enrolment folders and held-out photos: ``round(holdout * n)`` of each person's ``n`` photos,
    at least one photo always enrolled."""
    if not 0.0 <= holdout < 1.0:
        raise DatasetError("--holdout is a share of each person's photos in [0, 1)")
    rng = random.Random(seed)
    enrolled, held = [], []
    for person in people:
        count = min(round(holdout * len(person.photos)), len(person.photos) - 1)
        chosen = set(rng.sample(range(len(person.photos)), count))
        kept = [p for i, p in enumerate(person.photos) if i not in chosen]
        enrolled.append(FolderPerson(person.external_id, person.name, kept))
        held += [(person, p) for i, p in enumerate(person.photos) if i in chosen]
    return enrolled, held


def build_model(
    options: BuildOptions,
    settings: Settings,
    on_progress: Callable[[ImportProgress, str | None], None],
    stopped: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Build ``options.out`` from the dataset in a temporary home of its own (see ``build_settings``);
    ``settings`` gives the weights cache and the detector, limits and worker settings. ``stopped``
    says whether Ctrl-C or SIGTERM came: asked before OUT is written, as the ``KeyboardInterrupt`` a
    signal raises can be swallowed where it lands (in a weak reference's callback it is only printed,
    "Exception ignored in"), and a tester's terminated build then wrote OUT and exited 0."""
    out = options.out.absolute()  # "." has no name to make a work folder beside
    _sweep_dead_builds(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{options.out} is a file; OUT must be a new or an empty folder")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{options.out} exists and is not an empty folder")
    _check_ancestors(out, options.out)
    for option, photos in (("--dataset", options.dataset), ("--unknown", options.unknown)):
        if photos is not None and photos.is_dir() and overlapping(photos, out):
            # Written into a photos' folder tree, the next build or eval read the output as photos.
            raise DatasetError(f"--out must be a folder apart from {option} (neither inside the other)")
    if options.unknown is not None:
        # Accepted, a mistyped folder gave a report whose strangers line said "-", and exit 0.
        unknown_photos(options.unknown, options.dataset)
    enrolled, held = split_people(scan_folders(options.dataset), options.holdout, options.seed)
    # A new OUT is staged beside it and renamed into place whole. An empty OUT that exists is kept (it
    # may be a mount point, a link, or the current folder, none of which can be replaced): the work is
    # staged inside it, on its own file system, and the files are moved in at the end, the report last.
    existing = out.is_dir()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(
            tempfile.mkdtemp(prefix=_work_prefix(out, os.getpid()), dir=out if existing else out.parent)
        )
    except OSError as error:
        raise DatasetError(f"cannot write {options.out}: {error.strerror or error}") from None
    try:
        report = _build_in(
            work, options, enrolled, held, build_settings(settings, work / "home"), on_progress, stopped
        )
        if stopped():
            raise KeyboardInterrupt
        # Ctrl-C and SIGTERM wait while OUT is put in place and the work folder goes: one landing
        # in between left a whole OUT said to be unwritten and the work folder, 0.4-0.8 GB, beside
        # it (a tester's). Delivered after, they say OUT was written (``faceforge build``).
        with interrupts_held(signal.SIGINT, signal.SIGTERM):
            if existing:
                staged = sorted((work / "out").iterdir(), key=lambda path: path.name == REPORT_JSON)
                for path in staged:
                    path.rename(out / path.name)
            else:
                (work / "out").rename(out)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # whatever failed: no hidden work folder is left
    return report


def _work_prefix(out: Path, pid: int) -> str:
    """The work folder's name before its random part: it names the build's process, so the next build
    can tell a dead build's folder from a running one's."""
    return f".{out.name}-build-{pid}-"


def _sweep_dead_builds(out: Path) -> None:
    """Remove the work folders of builds into ``out`` whose process is gone. A build killed outright
    (SIGKILL, out of memory) leaves its folder, the photos and a gigabyte of model files in it: in
    OUT, where the next build refused a folder that looked empty, or hidden beside a new OUT, where
    nothing ever removed it. A running build's folder is left alone. This process has made none yet:
    a folder of its number is a dead one's (in a container, every build is process 1)."""
    ours = re.compile(rf"\.{re.escape(out.name)}-build-([0-9]{{1,7}})-[a-z0-9_]{{8}}")
    # Inside OUT, folders named before they carried a process number: nobody else writes there.
    older = re.compile(rf"\.{re.escape(out.name)}-build-[a-z0-9_]{{8}}")
    places = [out.parent, out] if out.is_dir() else [out.parent]
    for place in places:
        try:
            names = [entry.name for entry in os.scandir(place) if entry.is_dir(follow_symlinks=False)]
        except OSError:  # a parent that does not exist yet, or cannot be read: nothing of ours there
            continue
        for name in names:
            match = ours.fullmatch(name)
            pid = int(match.group(1)) if match else None
            dead = pid is not None and (pid == os.getpid() or not _running(pid))
            if dead or (place == out and older.fullmatch(name)):
                shutil.rmtree(place / name, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number
        return True
    return True


def _check_ancestors(out: Path, given: Path) -> None:
    """Say before any work when OUT cannot be made because a folder on its way is a file (``build
    --out notes.txt/model`` said "File exists" after scanning the dataset)."""
    for ancestor in out.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DatasetError(f"cannot write {given}: {ancestor} is a file, not a folder")
            return


def build_settings(settings: Settings, home: Path) -> Settings:
    """The settings of a build's own home: ``settings`` (detector, limits, worker formats) with the
    home, the database and the weights cache replaced. Never the environment's database: a build in a
    container whose ``FACEFORGE_DATABASE_URL`` names the live service would import its people there.
    Every format, whatever ``FACEFORGE_WORKER__FORMATS`` says for the server: OUT is a version's files
    (`model.tflite` first of all, the seed system's whole output), and the report runs it."""
    return settings.model_copy(
        update={
            "home": home,
            "database_url": SecretStr(f"sqlite:///{home / 'faceforge.db'}"),
            "weights_cache": settings.weights_dir,
            "workers": 1,
            "worker": settings.worker.model_copy(update={"formats": ",".join(ExportFormat)}),
        }
    )


def _build_in(
    work: Path,
    options: BuildOptions,
    enrolled: list[FolderPerson],
    held: list[tuple[FolderPerson, Path]],
    home: Settings,
    on_progress: Callable[[ImportProgress, str | None], None],
    stopped: Callable[[], bool],
) -> dict[str, Any]:
    from faceforge.building.worker.trainer import TrainingWorker
    from faceforge.serving.wiring import Services
    from faceforge.storage import training_store

    staging = work / "out"
    staging.mkdir()
    services = Services.start(home, embedded_worker=False, keep_cores_awake=False)
    try:
        target = LocalTarget(services.people, services.strangers)
        importer = BulkImporter(target, on_progress=on_progress, concurrency=1)
        summary = importer.run(enrolled)
        if summary.interrupted or stopped():  # and again after training (``build_model``)
            raise KeyboardInterrupt
        if not summary.photos_accepted:
            reasons = "; ".join(f"{r['person']}/{r['file']}: {r['message']}" for r in summary.refused[:3])
            more = f"; and {len(summary.refused) - 3} more" if len(summary.refused) > 3 else ""
            raise DatasetError(f"no photo was accepted; nothing to build ({reasons}{more})")
        worker = TrainingWorker(home, services.sessions)
        try:
            worker.run_once()
        finally:
            worker.lease.release()
        if stopped():
            raise KeyboardInterrupt
        with services.sessions() as session:
            version = training_store.current_version(session)
        if version is None:
            failure = services.models.training_status().last_failure_message
            raise TrainingError(f"the model could not be built: {failure}")
        model = services.models.get(version)
        for name in model.files:
            shutil.copyfile(home.models_dir / str(version) / name, staging / name)
        report = _report(options, services, version, held, summary.as_dict(), staging)
        report["files"] = sorted([*model.files, REPORT_JSON, REPORT_HTML, *PLOTS])
        _write_plots(report, staging)
        (staging / REPORT_JSON).write_text(json.dumps(report, indent=2))
    finally:
        services.close()
    return report


def _largest(result: PhotoFaces | Any) -> Any:
    return result.faces[0] if isinstance(result, PhotoFaces) and result.faces else None


def _report(
    options: BuildOptions,
    services: Any,
    version: int,
    held: list[tuple[FolderPerson, Path]],
    imported: dict[str, Any],
    staging: Path,
) -> dict[str, Any]:
    from faceforge.building.export.tflite_models import run_tflite
    from faceforge.storage import people_store

    loaded = services.models.loaded(version)
    head = loaded.head
    label_of = {person["person_id"]: label for person, label in zip(loaded.people, head.labels, strict=True)}
    truth: dict[str, str | None] = {}
    with services.sessions() as session:
        for person, _path in held:
            found = people_store.find_by_external_id(session, external_id=person.external_id)
            truth[person.external_id] = None if found is None else label_of.get(found.id)
    pipeline = services.pipeline
    correct = accepted = 0
    crops, chips, expected = [], [], []
    results = pipeline.analyze_many([path for _, path in held], single_face=False)
    unusable: list[dict[str, Any]] = []  # held out, but no face to measure: out of the rates
    for (person, path), result in zip(held, results, strict=True):
        face = _largest(result)
        if face is None or face.embedding is None:
            code, message = (
                (result.code, result.message)
                if isinstance(result, PhotoError)
                else ("no_face", "no face found")
            )
            unusable.append(
                {"person": person.external_id, "file": path.name, "reasons": [code], "message": message}
            )
            continue
        match = head.predict(face.embedding[None])[0]
        best = head.labels[int(np.argmax(head.similarities(face.embedding[None])[0]))]
        correct += best == truth[person.external_id]
        accepted += match.index is not None and head.labels[match.index] == truth[person.external_id]
        inputs = pipeline.inputs(pipeline.decode(path.read_bytes()), [face.detection.box])
        crops.append(inputs.crops[0])
        chips.append(inputs.chips[0])
        expected.append(len(head.labels) if match.index is None else match.index)
    measured = len(held) - len(unusable)
    tflite_agreement = None
    if crops:
        probabilities = run_tflite(
            (staging / "model.tflite").read_bytes(),
            {"face": np.stack(crops).astype(np.float32), "chip": np.stack(chips).astype(np.float32)},
        )
        tflite_agreement = float(np.mean(probabilities.argmax(axis=1) == np.asarray(expected)))
    unknown_rejected = unknown_faces = 0
    if options.unknown is not None:
        for result in pipeline.analyze_many(image_files(options.unknown), single_face=False):
            face = _largest(result)
            if face is not None and face.embedding is not None:
                unknown_faces += 1
                unknown_rejected += head.predict(face.embedding[None])[0].index is None
    metrics = services.models.get(version).metrics
    calibration = json.loads((staging / "manifest.json").read_text())["calibration"]
    return {
        "dataset": str(options.dataset),
        "holdout": options.holdout,
        "seed": options.seed,
        "version": version,
        "people": len(head.labels),
        "enrolled_photos": imported["photos_accepted"],
        "held_out_photos": len(held),
        # Over the held-out photos with a face: a text file or a photo of the back of a head held out
        # was counted as a miss, and listed nowhere.
        "top1": correct / measured if measured else None,
        "known_accept_rate": accepted / measured if measured else None,
        "held_out_unusable": unusable,
        "unknown_faces": unknown_faces if options.unknown is not None else None,
        "unknown_reject_rate": unknown_rejected / unknown_faces if unknown_faces else None,
        "tflite_agreement": tflite_agreement,
        "threshold": head.threshold,
        "estimated_known_accept": calibration.get("estimated_known_accept"),
        "estimated_unknown_reject": calibration.get("estimated_unknown_reject"),
        "refused": imported["refused"],
        # Accepted photos the import said something about (which face of a group photo was taken):
        # counted in the progress lines ("1 with a note"), and said nowhere else.
        "notes": imported["notes"],
        # Photos beside the person folders: nobody's, so neither enrolled nor held out.
        "ignored": [str(photo) for photo in loose_photos(options.dataset)],
        "suspected_duplicates": metrics.get("suspected_duplicates", []),
        "quality": metrics.get("quality"),
    }


def _write_plots(report: dict[str, Any], staging: Path) -> None:
    from faceforge.building.report import plots
    from faceforge.building.report.page import report_page

    quality = report["quality"]
    for name, draw in PLOTS.items():
        (staging / name).write_bytes(getattr(plots, draw)(quality))
    (staging / REPORT_HTML).write_text(report_page(report, list(PLOTS)))
