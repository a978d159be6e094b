"""Reading uploaded files into memory, never more than the per-file limit (plus one byte to detect it)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import UploadFile  # FastAPI's UploadFile is this class

from faceforge.core.errors import RequestRejectedError
from faceforge.serving.services.people import Upload


def read_upload(upload: UploadFile, *, max_bytes: int) -> Upload:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RequestRejectedError(
            "file_too_large", f"{upload.filename or 'a photo'} is larger than {max_bytes} bytes", status=413
        )
    return Upload(filename=upload.filename, data=data)


def read_uploads(uploads: Sequence[UploadFile], *, max_bytes: int, max_count: int) -> list[Upload]:
    if len(uploads) > max_count:
        raise RequestRejectedError("too_many_photos", f"at most {max_count} photos per request", status=413)
    return [read_upload(upload, max_bytes=max_bytes) for upload in uploads if upload.filename or upload.size]
