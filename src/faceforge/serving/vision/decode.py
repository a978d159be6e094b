"""Decode photo bytes into an upright RGB array, refusing anything unsafe or unusable."""

from __future__ import annotations

import functools
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from faceforge.core.errors import IMAGE_TOO_LARGE, InvalidImageError

RgbImage = npt.NDArray[np.uint8]

# MPO is what many phone cameras write: a JPEG with extra frames; HEIF (HEIC) is what iPhones write.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "HEIF"})


@functools.cache
def _open_heif_too() -> None:
    """Teach Pillow HEIF, once per process (pi-heif: libheif's decoder only, no encoder)."""
    from pi_heif import register_heif_opener

    register_heif_opener()


def _open(data: bytes) -> Image.Image:
    _open_heif_too()
    return Image.open(io.BytesIO(data))


def decode_photo(data: bytes, *, max_pixels: int, min_side: int) -> RgbImage:
    """Decode JPEG, PNG, WebP, BMP, GIF (first frame) or HEIC/HEIF (primary image) bytes into an
    ``(H, W, 3)`` uint8 RGB array at full resolution (``decode_reduced`` for analysis).

    EXIF orientation (and HEIF's own rotation and mirroring) is applied, so the array is the photo as
    a person sees it. The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb never allocates.

    Raises ``InvalidImageError`` with code ``empty_file``, ``not_an_image``, ``unsupported_format``,
    ``image_too_large``, ``corrupt_image`` or ``image_too_small`` (either side below ``min_side``).
    """
    return decode_reduced(data, max_pixels=max_pixels, min_side=min_side, budget=None).image


@dataclass(frozen=True, slots=True)
class DecodedPhoto:
    """An upright RGB photo, possibly reduced: ``scale`` photo pixels per array pixel (1.0 when not)
    and the photo's own upright ``width`` x ``height``."""

    image: RgbImage
    scale: float
    width: int
    height: int


def decode_reduced(data: bytes, *, max_pixels: int, min_side: int, budget: int | None) -> DecodedPhoto:
    """``decode_photo``, but a photo of more than ``budget`` pixels is reduced by a whole factor while
    it is decoded: JPEG's decoder scales by 1/2, 1/4 or 1/8 itself (``draft``), the rest is box-averaged
    right after decoding (``reduce``), before any other copy. A 40 MP photo took ~690 MB to decode
    at full size (the decoded image, its RGB conversion, its upright copy, the array)."""
    if not data:
        raise InvalidImageError("empty_file", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces Pillow's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(data)
    except UnidentifiedImageError as error:
        raise InvalidImageError("not_an_image", "the file is not a recognised image") from error
    except Image.DecompressionBombError as error:
        # Pillow's own limit (twice its MAX_IMAGE_PIXELS) may be below FACEFORGE_MAX_PIXELS: then it is
        # the one said (a photo under the setting was refused as over it).
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        whose = " (the decoder's own limit)" if limit < max_pixels else ""
        raise InvalidImageError(IMAGE_TOO_LARGE, f"the image has more than {limit} pixels{whose}") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # A header cut short ("Truncated File Read", "Truncated IHDR chunk") fails while it is read:
        # it answered 500 on identify, and enrolment's verdict quoted the whole upload.
        raise InvalidImageError(
            "corrupt_image", f"the image header is truncated or corrupt: {error}"
        ) from error
    with image:
        if image.format not in SUPPORTED_FORMATS:
            raise InvalidImageError(
                "unsupported_format",
                f"{image.format} images are not supported; use JPEG, PNG, WebP, BMP, GIF or HEIC",
            )
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidImageError(
                IMAGE_TOO_LARGE,
                f"the image has {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
            )
        try:
            image.seek(0)
            factor = reduction_factor(width * height, budget)
            if factor > 1 and image.format in {"JPEG", "MPO"}:
                image.draft("RGB", (-(-width // factor), -(-height // factor)))
            image.load()
            reduced = image
            rest = reduction_factor(image.size[0] * image.size[1], budget)
            if rest > 1:
                # Pillow reduces neither palette, 1-bit nor 16-bit grey images ("wrong mode"): those
                # are made RGB first. A large GIF or palette PNG was refused as corrupt.
                reducible = _to_rgb(image) if image.mode in _UNREDUCIBLE_MODES else image
                reduced = reducible.reduce(rest)
            upright = ImageOps.exif_transpose(reduced) if _turned(image) != 1 else reduced
            rgb = _to_rgb(upright)
            rgb.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise InvalidImageError(
                "corrupt_image", f"the image data is truncated or corrupt: {error}"
            ) from error
        turned = _turned(image) in _TRANSPOSING
    full_width, full_height = (height, width) if turned else (width, height)
    if min(full_width, full_height) < min_side:
        raise InvalidImageError(
            "image_too_small",
            f"the image is {full_width}x{full_height} pixels; faces need at least {min_side} pixels",
        )
    array = np.asarray(rgb, dtype=np.uint8)
    return DecodedPhoto(array, full_width / array.shape[1], full_width, full_height)


def reduction_factor(pixels: int, budget: int | None) -> int:
    """The smallest whole factor that brings ``pixels`` (reduced on both sides) within ``budget``."""
    if budget is None or pixels <= budget:
        return 1
    factor = max(2, math.isqrt(-(-pixels // budget)))
    while pixels > budget * factor * factor:
        factor += 1
    return factor


_UNREDUCIBLE_MODES = frozenset({"P", "1", "I;16", "I;16B", "I;16L", "I;16N"})
_TRANSPOSING = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


def _turned(image: Image.Image) -> int:
    """The EXIF orientation of ``image`` (1: as stored)."""
    orientation = image.getexif().get(0x0112, 1)
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


# Pillow's modes for more than 8 bits per sample (16-bit grayscale PNG opens as I;16 or I).
# ``convert("RGB")`` clips them to 255 instead of scaling, which turns a photo white.
_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_SIXTEEN_BIT_TO_EIGHT = 65535 / 255  # = 257: 0 -> 0 and 65535 -> 255


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode not in _HIGH_BIT_DEPTH_MODES:
        return image.convert("RGB")
    samples = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.rint(samples / _SIXTEEN_BIT_TO_EIGHT), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


_EXTENSIONS = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
    "GIF": ("gif", "image/gif"),
    "HEIF": ("heic", "image/heic"),
}


def header_pixels(data: bytes) -> int:
    """Width x height as the photo's header says (nothing decoded); 0 for what is not an image."""
    width, height = header_size(data)
    return width * height


def header_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` as the photo's header says, orientation aside (nothing decoded); ``(0, 0)``
    for what is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(data) as image:
                return int(image.size[0]), int(image.size[1])
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0, 0


def pixels_decoded(data: bytes, budget: int | None) -> int:
    """How many pixels ``decode_reduced`` holds at once for ``data`` with ``budget`` (from its header):
    JPEG's decoder reduces while it decodes, other formats are decoded whole, then reduced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(data) as image:
                (width, height), kind = image.size, image.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0
    factor = reduction_factor(width * height, budget) if kind in {"JPEG", "MPO"} else 1
    return -(-width // factor) * -(-height // factor)


def display_budget(longer_side: int) -> int:
    """The pixel budget of ``decode_reduced`` for a picture ``longer_side`` px long: the photo is
    reduced by the largest whole factor that keeps its longer side at least that long (the smallest
    factor within ``4 x side²`` leaves at least ``side`` along the longer side, whatever the aspect:
    one factor less was over the budget, so the longer side was over ``2 x side`` then)."""
    return 4 * longer_side * longer_side


def photo_kind(data: bytes) -> tuple[str, str]:
    """``(file extension, content type)`` of photo bytes that ``decode_photo`` accepted (header only)."""
    with _open(data) as image:
        return _EXTENSIONS[str(image.format)]
