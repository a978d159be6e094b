"""DeepStack's face API (also served by CodeProject.AI), over faceforge's people and versions.

What Home Assistant's ``deepstack_face`` (through ``deepstack-python``), Double Take, Viseron and
Blue Iris call. The key is the form field ``api_key`` (admin keys register and delete, read keys
recognise, list and match), so these routes read the form before they can check it: they are
public to the access middleware and check the key themselves, with the request still bounded by the
body limit. Answers are ``{"success": true, ...}``; errors ``{"success": false, "error"}`` with a 4xx.
Each route is asynchronous only to read that form: everything after it (the uploads' bytes, vision,
the database) runs on the thread pool through ``run_blocking``.

Differences from DeepStack, by design: ``register`` *adds* the photos to the person (DeepStack
replaces the person's faces; its clients send one image per call, so replacing would keep only the
last), all of them or, when one is refused, none, naming it; ``confidence`` is the calibrated
probability of ``serving.services.compat``, and a face faceforge rejects is ``"unknown"`` with
confidence 0, as DeepStack reports unknown faces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile

from faceforge.core.errors import IMAGE_TOO_LARGE, InvalidImageError, NotFoundError, RequestRejectedError
from faceforge.serving.api.access import Access, PublicAccess, form_key_error
from faceforge.serving.api.blocking import run_blocking
from faceforge.serving.api.deps import ServicesDep
from faceforge.serving.api.errors import SERVER_ERRORS, Dialect, error_responses
from faceforge.serving.api.uploads import read_upload, refuse_repeated_text_fields
from faceforge.serving.services.compat import NoFaceError
from faceforge.serving.services.people import DUPLICATE, PhotosRejectedError, PhotoVerdict, Upload
from faceforge.serving.wiring import Services

PREFIX = "/v1/vision/face"
DEFAULT_MIN_CONFIDENCE = 0.67  # DeepStack's documented default
UNKNOWN = "unknown"  # recognize's userid for a face it does not name
# DeepStack's own words (its server's face.py, 400 answers) for what its clients meet most, where our
# errors said CompreFace's ("No face is found in the given image") or our own. Bytes too large keep
# our 413 image_too_large: DeepStack has no such answer.
NO_FACE_REGISTERED = "no face detected"
NO_FACE_MATCHED = "no face found"
INVALID_IMAGE = "invalid image"
NOT_AN_IMAGE = frozenset(
    {"empty_file", "not_an_image", "unsupported_format", "corrupt_image", "image_too_small"}
)
router = APIRouter(
    prefix=PREFIX,
    tags=["deepstack"],
    dependencies=[PublicAccess],
    responses=error_responses(400, 401, 403, 413, *SERVER_ERRORS, dialect=Dialect.DEEPSTACK),
)
routers = (router,)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*statuses, dialect=Dialect.DEEPSTACK)


def _form_body(required: tuple[str, ...], **fields: dict[str, Any]) -> dict[str, Any]:
    """The route's multipart form for the OpenAPI document: these routes read the form themselves
    (``_form``), so FastAPI saw no body and the document showed none, nor where the key goes."""
    key = {"type": "string", "description": "an API key (admin keys register and delete)"}
    schema = {"type": "object", "required": list(required), "properties": {"api_key": key, **fields}}
    # Required where a field is: list needs none (no key on loopback without keys: an empty body).
    body = {"required": bool(required), "content": {"multipart/form-data": {"schema": schema}}}
    return {"requestBody": body}


def _image(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "description": description}


USERID = {"type": "string", "description": "the person's name"}


async def _form(request: Request, needed: Access) -> FormData:
    limits = request.app.state.settings.limits
    form = await request.form(max_files=limits.max_photos_per_request + 1)
    key = form.get("api_key")
    if error := form_key_error(request, key if isinstance(key, str) else None, needed):
        raise error
    refuse_repeated_text_fields(form)  # after the key: who may not ask learns nothing of the form
    return form


def _images(form: FormData, max_bytes: int) -> list[Upload]:
    """Every uploaded file, whatever its field name (clients use image, image1, image2...)."""
    return [
        read_upload(value, max_bytes=max_bytes)
        for _, value in form.multi_items()
        if isinstance(value, UploadFile)
    ]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise RequestRejectedError(f"{name}_required", f"{name} is required")
    return text


def _number(form: FormData, name: str, default: float) -> float:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        raise RequestRejectedError("invalid_request", f"{name} must be a number") from None
    if not 0.0 <= number <= 1.0:
        raise RequestRejectedError("invalid_request", f"{name} must be between 0 and 1")
    return number


def _corners(box: dict[str, float]) -> dict[str, int]:
    return {
        "x_min": max(0, math.floor(box["x"])),
        "y_min": max(0, math.floor(box["y"])),
        "x_max": math.ceil(box["x"] + box["width"]),
        "y_max": math.ceil(box["y"] + box["height"]),
    }


def _min_confidence(description: str, default: float | None = None) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1, "description": description}
    return number if default is None else number | {"default": default}


@router.post(
    "",
    openapi_extra=_form_body(
        ("image",),
        image=_image("the photo"),
        min_confidence=_min_confidence("faces detected less surely are left out (default: every face found)"),
    ),
)
async def detect(request: Request, services: ServicesDep) -> dict[str, Any]:
    """DeepStack's face detection: every face of the photo, largest first, with its detection score
    as ``confidence``; no face is an empty list (``deepstack-python``'s ``DeepstackFace.detect``)."""
    return await run_blocking(_detect, services, await _form(request, Access.READ))


def _detect(services: Services, form: FormData) -> dict[str, Any]:
    faces, _ = _analysed(
        services,
        form,
        0.0,
        lambda data, minimum: services.compat.faces_of(data, min_detection=minimum, embed=False),
    )
    predictions = []
    for face in faces or []:
        box = face.detection.box
        corners = _corners({"x": box.x, "y": box.y, "width": box.width, "height": box.height})
        predictions.append({"confidence": round(face.detection.score, 5)} | corners)
    return {"success": True, "predictions": predictions}


_Analysis = TypeVar("_Analysis")


def _analysed(
    services: Services,
    form: FormData,
    default_minimum: float,
    analyse: Callable[[bytes, float], _Analysis],
) -> tuple[_Analysis | None, float]:
    """The form's first image through ``analyse(bytes, min_confidence)``, and that minimum: ``None``
    for an image without a face (DeepStack answers an empty list), and DeepStack's "invalid image"
    for bytes that are not a photo."""
    uploads = _images(form, services.settings.limits.max_file_bytes)
    if not uploads:
        raise RequestRejectedError("image_required", "image is required")
    minimum = _number(form, "min_confidence", default_minimum)
    try:
        return analyse(uploads[0].data, minimum), minimum
    except NoFaceError:
        return None, minimum
    except InvalidImageError as error:
        if error.code in NOT_AN_IMAGE:
            raise RequestRejectedError("invalid_image", INVALID_IMAGE) from None
        raise


@router.post(
    "/register",
    responses=_responses(422),
    openapi_extra=_form_body(
        ("userid", "image"),
        userid=USERID,
        image=_image("a photo of the person; more under any other names (image1, image2...)"),
    ),
)
async def register(request: Request, services: ServicesDep) -> dict[str, Any]:
    return await run_blocking(_register, services, await _form(request, Access.ADMIN))


def _register(services: Services, form: FormData) -> dict[str, Any]:
    userid = _text(form, "userid")
    if userid.casefold() == UNKNOWN.casefold():
        # What recognize answers for a face it does not know: a person of that name could never be
        # told from a stranger (Home Assistant, Double Take and deepstack-python all compare to it).
        raise RequestRejectedError(
            "reserved_userid",
            f"userid {userid!r} is what recognize answers for strangers: choose another name",
        )
    uploads = _images(form, services.settings.limits.max_file_bytes)
    if not uploads:
        raise RequestRejectedError("image_required", "at least one image is required")
    try:
        notes = services.compat.add_to_subject(userid, uploads)
    except PhotosRejectedError as error:
        refused = [v for v in error.verdicts if not v.accepted and DUPLICATE not in v.reasons]
        if not refused:  # every image is one the person has: registering again is no error, but
            # nothing was added ("face added" had a tester look for a photo that was never stored)
            return {"success": True, "message": "face already registered: nothing was added"}

        # DeepStack's words for each refusal it has words for; any other (several faces, a stranger's
        # photo) in ours, the verdict's own message.
        def words(verdict: PhotoVerdict) -> str:
            if "no_face" in verdict.reasons:
                return NO_FACE_REGISTERED
            if set(verdict.reasons) <= NOT_AN_IMAGE:
                return INVALID_IMAGE
            return verdict.message or ", ".join(verdict.reasons)

        said = {id(v): words(v) for v in refused}
        ours = {NO_FACE_REGISTERED, INVALID_IMAGE}
        # 413 for images too large, as every route answers them; 400 for the rest, as DeepStack's
        # refusals (one image with a cause DeepStack has no words for was a 422 in the people API's
        # words, "no photo was accepted (...)", and a huge one 422 where recognize says 413).
        status = 413 if all(IMAGE_TOO_LARGE in v.reasons for v in refused) else 400
        if len(error.verdicts) == 1:
            only = refused[0]
            if said[id(only)] not in ours:
                code = only.reasons[0] if only.reasons else "photos_rejected"
                raise RequestRejectedError(code, said[id(only)], status=status) from None
            code = "no_face" if said[id(only)] == NO_FACE_REGISTERED else "invalid_image"
            raise RequestRejectedError(code, said[id(only)]) from None
        code = next(
            (
                c
                for c, text in (("no_face", NO_FACE_REGISTERED), ("invalid_image", INVALID_IMAGE))
                if text in said.values()
            ),
            "photos_rejected",
        )
        # Which of several images, grouped by the words said of them; none was added.
        grouped = [
            f"{text}: "
            + ", ".join(v.filename or f"image {v.index + 1}" for v in refused if said[id(v)] == text)
            for text in dict.fromkeys(said.values())
        ]
        raise RequestRejectedError(code, "; ".join(grouped) + "; no image was added", status=status) from None
    # What was said of an accepted photo (another person has the same one; it looks like a
    # stranger's) follows DeepStack's words: dropped, a photo filed under a second name went unheard.
    return {"success": True, "message": "; ".join(["face added", *notes])}


@router.post(
    "/recognize",
    responses=_responses(409),
    openapi_extra=_form_body(
        ("image",),
        image=_image("the photo"),
        min_confidence=_min_confidence("faces named less surely are unknown", DEFAULT_MIN_CONFIDENCE),
    ),
)
async def recognize(request: Request, services: ServicesDep) -> dict[str, Any]:
    return await run_blocking(_recognize, services, await _form(request, Access.READ))


def _recognize(services: Services, form: FormData) -> dict[str, Any]:
    faces, minimum = _analysed(
        services,
        form,
        DEFAULT_MIN_CONFIDENCE,
        lambda data, _: services.compat.recognize(data, limit=0, prediction_count=1, min_detection=None),
    )
    predictions = []
    for face in faces or []:
        name, probability = face.subjects[0] if face.subjects else (UNKNOWN, 0.0)
        known = face.known and probability >= minimum
        predictions.append(
            {"userid": name if known else UNKNOWN, "confidence": round(probability, 5) if known else 0}
            | _corners(face.box)
        )
    return {"success": True, "predictions": predictions}


@router.post("/list", openapi_extra=_form_body(()))
async def list_faces(request: Request, services: ServicesDep) -> dict[str, Any]:
    await _form(request, Access.READ)
    return {"success": True, "faces": await run_blocking(services.compat.subjects)}


@router.post("/delete", responses=_responses(404), openapi_extra=_form_body(("userid",), userid=USERID))
async def delete(request: Request, services: ServicesDep) -> dict[str, Any]:
    form = await _form(request, Access.ADMIN)
    userid = _text(form, "userid")
    try:
        await run_blocking(services.compat.delete_subject, userid)
    except NotFoundError:
        raise NotFoundError(f"userid {userid} is not found") from None  # DeepStack's word, not "Subject"
    return {"success": True}


@router.post(
    "/match",
    openapi_extra=_form_body(("image1", "image2"), image1=_image("a photo"), image2=_image("another photo")),
)
async def match(request: Request, services: ServicesDep) -> dict[str, Any]:
    """The largest face of ``image1`` against the largest of ``image2``."""
    return await run_blocking(_match, services, await _form(request, Access.READ))


def _match(services: Services, form: FormData) -> dict[str, Any]:
    max_bytes = services.settings.limits.max_file_bytes
    images = []
    for name in ("image1", "image2"):
        value = form.get(name)
        if isinstance(value, str):  # `curl -F image2=b.jpg`, without @: "image2 is required" misled
            raise RequestRejectedError(
                "not_a_file", f"{name!r} was sent as text: send it as a file (-F {name}=@photo.jpg)"
            )
        if not isinstance(value, UploadFile):
            raise RequestRejectedError(f"{name}_required", f"{name} is required")
        images.append(read_upload(value, max_bytes=max_bytes))
    try:
        faces = []
        for name, image in zip(("image1", "image2"), images, strict=True):
            try:
                faces.append(services.compat.faces_of(image.data)[0])
            except NoFaceError:  # which one: "no face found" of two left a tester guessing
                raise RequestRejectedError("no_face", f"{NO_FACE_MATCHED} in {name}") from None
        first, second = faces
    except InvalidImageError as error:
        if error.code in NOT_AN_IMAGE:
            raise RequestRejectedError("invalid_image", INVALID_IMAGE) from None
        raise
    assert first.embedding is not None and second.embedding is not None
    return {
        "success": True,
        "similarity": round(services.compat.pair_probability(first.embedding, second.embedding), 5),
    }
