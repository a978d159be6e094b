"""Reading uploaded files into memory, never more than the per-file limit (plus one byte to detect it)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile  # FastAPI's UploadFile is this class

from faceforge.core.errors import RequestRejectedError
from faceforge.serving.api.errors import error_responses
from faceforge.serving.services.people import Upload, too_large_file

# What a route taking photos may answer besides its own errors (OpenAPI).
UPLOAD_ERRORS = error_responses(413, 415, 422, 503)


def read_upload(upload: UploadFile, *, max_bytes: int, others: bool = False) -> Upload:
    """``others``: the request holds more photos (``too_large_file``)."""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large_file(upload.filename, max_bytes, others=others)
    return Upload(filename=upload.filename, data=data)


# A data URL's head (``data:image/jpeg;base64,``), as a browser's ``FileReader`` or canvas writes one.
DATA_URL_HEAD = re.compile(r"\Adata:[^,;]*(?:;[^,;]*)*;base64,", re.IGNORECASE)  # at the start only


def read_base64_upload(value: object, field: str, *, max_bytes: int) -> Upload:
    """A photo given as base64 text in a JSON body (CompreFace's "Base64 Support"). Standard base64
    (RFC 4648), padded or not; line breaks and a data URL's head are allowed, as ``base64`` wraps its output
    at 76 columns and a browser hands a photo over as a data URL. The decoded photo obeys the
    per-file limit, judged before decoding, so a too-large body is never decoded whole."""
    if not isinstance(value, str):
        raise RequestRejectedError(
            "invalid_request", f"{field} must be a string: the photo's bytes in base64"
        )
    text = DATA_URL_HEAD.sub("", value.strip(), count=1)
    text = "".join(text.split())  # line breaks, as `base64` writes them
    if not text:
        raise RequestRejectedError(f"{field}_required", f"{field} is empty: give the photo's bytes in base64")
    text += "=" * (-len(text) % 4 if len(text) % 4 != 1 else 0)  # padding is optional, as in Java's decoder
    if len(text) // 4 * 3 - text.count("=") > max_bytes:
        raise too_large_file(field, max_bytes)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:  # ValueError: characters outside ASCII
        raise RequestRejectedError(
            "invalid_request",
            f"{field} is not base64 ({error}): encode the photo's bytes, e.g. base64 -w0 photo.jpg",
        ) from None
    return Upload(filename=None, data=data)


def read_uploads(uploads: Sequence[UploadFile], *, max_bytes: int, max_count: int) -> list[Upload]:
    if len(uploads) > max_count:
        raise RequestRejectedError("too_many_photos", f"at most {max_count} photos per request", status=413)
    sent = [upload for upload in uploads if upload.filename or upload.size]
    return [read_upload(upload, max_bytes=max_bytes, others=len(sent) > 1) for upload in sent]


def refuse_repeated_text_fields(form: FormData) -> None:
    """A text field given twice is refused: FastAPI (and a form's ``get``) took the last one, so
    ``-F threshold=0.99 -F threshold=0.1`` answered with 0.1, a question the client did not ask."""
    texts = [key for key, value in form.multi_items() if not isinstance(value, UploadFile)]
    repeated = sorted({key for key in texts if texts.count(key) > 1})
    if repeated:
        raise RequestRejectedError(
            "invalid_request", f"{', '.join(repeated)}: given more than once in the form; give each once"
        )


def file_fields(field: str, *, most: int | None = None) -> Any:
    """A route dependency: the request's files come in ``field`` only (at most ``most`` of them), so a
    photo sent under another name is refused rather than dropped (``photo`` for ``photos`` registered
    a person with no photo and said nothing), and a second photo is refused rather than ignored."""

    async def check(request: Request) -> None:
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";")[0].strip().lower()  # media types ignore case
        if media_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            if content_type:  # JSON, or a photo as the whole body: FastAPI read no field of it and
                # answered that the first one was missing ("Name is required" to a JSON name).
                raise RequestRejectedError(
                    "unsupported_media_type",
                    f"send multipart/form-data (each photo a file in {field!r}; with curl, -F "
                    f"{field}=@photo.jpg), not {media_type}",
                    status=415,
                )
            return
        form = await request.form()  # the form FastAPI has parsed already (Starlette keeps it)
        if any(key == field and not isinstance(value, UploadFile) for key, value in form.multi_items()):
            # `curl -F photo=face.jpg` (without @) sends the name as text; FastAPI's own answer named
            # its internals ("Expected UploadFile, received: <class 'str'>").
            raise RequestRejectedError(
                "not_a_file",
                f"{field!r} was sent as text: send each photo as a file (a multipart part with a "
                "filename; with curl, -F " + field + "=@photo.jpg)",
            )
        refuse_repeated_text_fields(form)
        files = [key for key, value in form.multi_items() if isinstance(value, UploadFile)]
        stray = sorted({key for key in files if key != field})
        if stray:
            named = ", ".join(repr(key) for key in stray)
            raise RequestRejectedError(
                "unexpected_file_field", f"files sent as {named}: send them as {field!r}"
            )
        if most is not None and len(files) > most:
            raise RequestRejectedError(
                "too_many_files",
                f"{field!r} takes {most} file{'s' if most > 1 else ''}, {len(files)} were sent",
            )

    return Depends(check)
