"""``manifest.json``: the contract between a model version and every app that downloads it.

One schema, validated when a version is written and again whenever one is read, so a manifest that
does not describe its files is never published or served. ``format`` names the schema's revision:
a change that would break an app's reading of the file gets a new revision and an entry in
``_UPGRADES`` that reads older files into the new shape; fields added within a revision are optional,
so versions written by earlier releases (e.g. the FaceNet-only ones, without refiner or chip) still
load and are then refused for identify by their embedder's name, not by a parse error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from faceforge.core.errors import FaceforgeError

MANIFEST_FILE = "manifest.json"
HEAD_FILE = "head.safetensors"  # the head's prototypes and margins (``core.model.head_files``)
MANIFEST_FORMAT: Final = "faceforge-model/1"

# Older revision -> a function returning the same manifest in the next revision's shape.
_UPGRADES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ManifestError(FaceforgeError):
    code = "invalid_manifest"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedderInfo(_Strict):
    name: str
    dimension: int = Field(gt=0)
    dlib_weight: float | None = None  # absent before the fused embedder


class RosterEntry(_Strict):
    """One recognisable person: ``label`` is the class name the models output for them."""

    id: int = Field(ge=1)
    name: str
    position: str | None = None
    label: str
    photos: int | None = Field(default=None, ge=1)  # absent in the first releases


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class VersionManifest(BaseModel):
    """Everything an app needs to use a version's files; ``files`` lists each one's sha256 and size.

    ``refiner``, ``crop`` and ``chip`` are the steps an app runs before the model (their own
    contracts, written by ``vision``); ``onnx``, ``coreml``, ``tflite`` and ``variants`` describe the
    exported files (written by ``export``). Those descriptions are kept as their writers state them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["faceforge-model/1"] = MANIFEST_FORMAT
    version: int = Field(ge=1)
    created_at: datetime
    embedder: EmbedderInfo
    refiner: dict[str, Any] | None = None
    crop: dict[str, Any]
    chip: dict[str, Any] | None = None
    labels: list[str] = Field(min_length=1)
    unknown_label: str
    people: list[RosterEntry]
    threshold: float
    scale: float = Field(gt=0)
    decision: str
    calibration: dict[str, Any]
    metrics: dict[str, Any]
    head_file: str = HEAD_FILE
    onnx: dict[str, Any] | None = None
    coreml: dict[str, Any] | None = None
    tflite: dict[str, Any] | None = None
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> VersionManifest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.unknown_label in self.labels:
            raise ValueError(f"unknown_label {self.unknown_label!r} is also a person's label")
        if [person.label for person in self.people] != self.labels:
            raise ValueError("people must list one entry per label, in the labels' order")
        listed = set(self.files)
        for name, variant in self.variants.items():
            missing = [file for file in variant.get("files", []) if listed and file not in listed]
            if missing:
                raise ValueError(f"variant {name!r} names files the version lacks: {missing}")
        if listed and self.head_file not in listed:
            raise ValueError(f"head_file {self.head_file!r} is not among the files")
        return self

    def listed(self, files: dict[str, FileEntry]) -> VersionManifest:
        """This manifest with its ``files`` listing (written last, once every file's digest is known)."""
        return VersionManifest.model_validate({**self.model_dump(), "files": files})

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, so the same version writes the same file."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode()

    def label_of(self, person_id: int) -> str | None:
        return next((p.label for p in self.people if p.id == person_id), None)


def read_manifest_bytes(data: bytes, *, where: str) -> VersionManifest:
    """Parse and validate a manifest of any supported revision (older ones are upgraded)."""
    try:
        raw = json.loads(data)
    except ValueError as error:
        raise ManifestError(f"{where}: not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: not a JSON object")
    while (revision := raw.get("format")) in _UPGRADES:
        raw = _UPGRADES[revision](raw)
    if raw.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{where}: unsupported manifest format {raw.get('format')!r}")
    try:
        return VersionManifest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise ManifestError(f"{where}: {place}: {first['msg']}") from None
