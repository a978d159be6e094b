"""On-demand exports: a ready version's on-device files for one format, written into a directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceforge.building.export.version_exports import VersionExporter, VersionExports
from faceforge.core.atomic import copy_atomically, write_atomically, write_bytes_atomically
from faceforge.core.checksums import recorded_sha256
from faceforge.core.errors import ExportError, RequestRejectedError
from faceforge.core.formats import ExportFormat
from faceforge.serving.services.models import ModelService

# The files that say what the models' outputs are: written once every model file is in place.
DESCRIBING = frozenset({"labels.txt", "manifest.json"})


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C during an export, saying whether ``out`` was touched: stopped while the files were
    built, an earlier export there is whole; once writing began, it holds part of this one."""

    def __init__(self, out: Path, *, writing_began: bool) -> None:
        super().__init__(str(out))
        self.out = out
        self.writing_began = writing_began

    def message(self) -> str:
        if self.writing_began:
            return f"{self.out} holds part of the export, without labels.txt: export again"
        return f"nothing was written to {self.out}"


def export_version(
    models: ModelService, version: int, export_format: ExportFormat, out: Path
) -> dict[str, Any]:
    """Rebuild ``version``'s files of ``export_format`` from its head (same bytes as the published ones)
    and write them into ``out``. Everything is built and verified before the first file is written;
    each file appears atomically. Returns ``{version, format, out, files: {name: {sha256, size}}, ...}``."""
    # As the API serves a version's files: not those of one naming people deleted since.
    try:
        models.refuse_deleted_people(models.get(version))
    except RequestRejectedError as error:
        raise ExportError(error.message) from None
    try:
        head = models.loaded(version).head
        exports = VersionExporter(models.settings.weights_dir, (export_format,)).export(head)
        _refuse_another_exports_files(out, set(exports.files) | set(exports.shared), models, version)
    except KeyboardInterrupt as interrupt:
        raise ExportInterrupted(out, writing_began=False) from interrupt
    writing = _Writing()
    try:
        return {"version": version} | _write_export(exports, export_format, out, writing)
    except KeyboardInterrupt as interrupt:
        raise ExportInterrupted(out, writing_began=writing.began) from interrupt


@dataclass(slots=True)
class _Writing:
    began: bool = False  # an earlier export's describing files are gone: the folder is no longer whole


def _write_export(
    exports: VersionExports, export_format: ExportFormat, out: Path, writing: _Writing
) -> dict[str, Any]:
    written: dict[str, dict[str, Any]] = {}
    # What describes the models last: each file appears whole, but not the set, and a disk that filled
    # while a model was written left the new labels.txt beside an earlier export's model.
    files = sorted(exports.files.items(), key=lambda item: (item[0] in DESCRIBING, item[0]))
    models_first = [item for item in files if item[0] not in DESCRIBING]
    try:
        out.mkdir(parents=True, exist_ok=True)
        describing = [out / name for name, _ in files[len(models_first) :]]
        for number, (name, data) in enumerate(models_first):

            def write(temp: Path, data: bytes = data, first: bool = number == 0) -> None:
                temp.write_bytes(data)
                if first:
                    # An earlier export's labels.txt goes once the first model is written and
                    # before it replaces the earlier one: stopped part way (Ctrl-C, a full disk),
                    # the new models stood beside labels of another version's outputs; without it,
                    # the folder says it is incomplete. A first write that fails keeps it whole.
                    writing.began = True
                    for path in describing:
                        path.unlink(missing_ok=True)

            write_atomically(out / name, write)
            written[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, source in sorted(exports.shared.items()):
            # Copied, not hard-linked as versions share them: the user's folder is theirs to edit,
            # and a link would let an edit there change every version's file and the embedder.
            copy_atomically(source, out / name)
            written[name] = {"sha256": recorded_sha256(source), "size": source.stat().st_size}
        for name, data in files[len(models_first) :]:
            write_bytes_atomically(out / name, data)
            written[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    except OSError as error:
        raise ExportError(f"cannot write to {out}: {error.strerror or error}") from None
    return {
        "format": export_format.value,
        "out": str(out),
        "files": written,
        "seconds": exports.seconds,
        "variants": exports.manifest.get("variants"),
    }


def _refuse_another_exports_files(out: Path, ours: set[str], models: ModelService, version: int) -> None:
    """``out`` may hold anything (an app's resources) but files of another export, of another format:
    they would stay beside this export's ``labels.txt``, which no longer describes them. The model
    files are those of the version's variants (not its contract vectors or head, which an app may
    keep beside its models), and this export's own names are overwritten."""
    if not out.is_dir():
        return
    variants = models.store.open(version).manifest.variants
    published = {name for variant in variants.values() for name in variant.get("files", [])}
    stale = sorted(name for name in published - ours if (out / name).exists())
    if stale:
        raise ExportError(
            f"{out} holds {', '.join(stale)} of another export, which this one's files would not "
            "describe: export into an empty folder or remove them"
        )
