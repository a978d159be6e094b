"""Dataset folders: one sub-folder per person; an optional folder of never-enrolled people."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from faceforge.core.errors import DatasetError

# HEIC and HEIF are what iPhones write (decoded as any other photo); they were skipped without a word.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif"})


@dataclass(frozen=True, slots=True)
class LabelledPhoto:
    label: str
    path: Path


@dataclass(frozen=True, slots=True)
class Split:
    enrolled: list[LabelledPhoto]
    probes: list[LabelledPhoto]
    skipped_people: list[str]  # people with no more than K photos: nothing left to probe


def hidden(path: Path) -> bool:
    """A dot-name: ``.git``, a NAS's ``.@__thumb``, macOS's ``._IMG_0001.jpg`` (no photo, whatever its
    suffix). Never a person or a photo: a ``.hidden`` folder became a person named ".hidden"."""
    return path.name.startswith(".")


def person_folders(root: Path) -> list[Path]:
    """The sub-folders of ``root`` that may be people (following symlinks), in name order."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not hidden(p))


def loose_images(folder: Path) -> list[Path]:
    """The images at the top of ``folder`` (not in its sub-folders), in name order; a broken link
    too (``image_files`` lists those as well): left out, it vanished without a word, where the
    same link in a person's folder is refused as unreadable."""
    return sorted(
        p
        for p in folder.iterdir()
        if (p.is_file() or (p.is_symlink() and not p.exists()))
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not hidden(p)
    )


def image_files(folder: Path) -> list[Path]:
    """Every image below ``folder`` (recursively, following symlinked folders, leaving hidden ones
    out), in path order."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        found.extend(
            Path(root) / name
            for name in names
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")
        )
    return sorted(found)


def split_dataset(dataset: Path, *, enroll: int, seed: int | None = None, people: int | None = None) -> Split:
    """Enrol ``enroll`` photos of each person who has more, probe the rest.

    Without ``seed`` the first ``enroll`` photos in filename order are enrolled; with it, a random
    choice made by ``random.Random(seed)`` per person, so the split is reproducible. ``people`` keeps
    that many of the people who have more than ``enroll`` photos: the first in folder order, or a
    random choice (``random.Random(seed)``) with ``seed``.
    """
    if people is not None and people < 1:
        raise DatasetError("--people must be at least 1")
    if enroll < 1:
        raise DatasetError("--enroll must be at least 1")
    if not dataset.is_dir():
        what = "is a file, not a folder" if dataset.exists() else "not found"
        raise DatasetError(f"dataset folder {what}: {dataset}")
    folders = person_folders(dataset)
    if not folders:
        raise DatasetError(f"{dataset} has no person folders (expected one sub-folder per person)")
    rng = random.Random(seed) if seed is not None else None
    if people is not None:
        eligible = [person for person in folders if len(image_files(person)) > enroll]
        if len(eligible) < people:
            raise DatasetError(
                f"{dataset} has {len(eligible)} people with more than {enroll} photos, not {people}"
            )
        chosen_people = set(rng.sample(eligible, people) if rng else eligible[:people])
        folders = [person for person in folders if person in chosen_people]
    enrolled: list[LabelledPhoto] = []
    probes: list[LabelledPhoto] = []
    skipped: list[str] = []
    for person in folders:
        photos = image_files(person)
        if len(photos) <= enroll:
            skipped.append(person.name)
            continue
        chosen = set(rng.sample(range(len(photos)), enroll)) if rng else set(range(enroll))
        for i, photo in enumerate(photos):
            (enrolled if i in chosen else probes).append(LabelledPhoto(person.name, photo))
    if not enrolled:
        raise DatasetError(f"no person in {dataset} has more than {enroll} photos")
    return Split(enrolled, probes, skipped)


def unknown_photos(unknown: Path, dataset: Path) -> list[Path]:
    """The photos of ``--unknown`` (people never enrolled), measured against a gallery of ``dataset``:
    a folder apart from it, with photos (an empty one gave figures with no strangers rejected, "-"
    or null, and exit 0)."""
    if not unknown.is_dir():
        raise DatasetError(f"unknown folder not found: {unknown}")
    if overlapping(dataset, unknown):  # before the walk: a folder holding the dataset may be large
        raise DatasetError(
            "--unknown must not be --dataset, inside it or hold it: enrolled people's photos "
            "would be counted as strangers"
        )
    photos = image_files(unknown)
    if not photos:
        raise DatasetError(f"{unknown} has no photos (--unknown: photos of people never enrolled)")
    return photos


def stranger_groups(folder: Path) -> list[list[Path]]:
    """Photos of strangers, one list per stranger: each sub-folder is one stranger, each loose photo
    another (the layout ``faceforge import --strangers`` takes)."""
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "not found"
        raise DatasetError(f"strangers folder {what}: {folder}")
    groups = [[path] for path in loose_images(folder)]
    groups += [image_files(path) for path in person_folders(folder)]
    groups = [group for group in groups if group]
    if not groups:
        raise DatasetError(f"{folder} holds no photos")
    return groups


def same_photos(first: Sequence[Path], second: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pairs of photos, one from each list, with the same bytes (copies under other names or folders,
    which a check of the folders' paths does not see)."""
    by_digest = {hashlib.sha256(path.read_bytes()).hexdigest(): path for path in first}
    pairs = []
    for path in second:
        match = by_digest.get(hashlib.sha256(path.read_bytes()).hexdigest())
        if match is not None:
            pairs.append((match, path))
    return pairs


def overlapping(first: Path, second: Path) -> bool:
    """Whether one folder is, or lies inside, the other."""
    a, b = first.resolve(), second.resolve()
    return a == b or a in b.parents or b in a.parents
