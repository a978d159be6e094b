"""Typed errors. Each has a stable machine-readable ``code`` and a human ``message``."""

from __future__ import annotations


class FaceforgeError(Exception):
    """Base of every error faceforge raises on purpose."""

    code = "faceforge_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The one image error that is a size, not a fault of the bytes: 413, wherever it is answered.
IMAGE_TOO_LARGE = "image_too_large"


class InvalidImageError(FaceforgeError):
    """The bytes are not a photo we can use (empty, corrupt, not an image, too large, too small)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class WeightsUnavailableError(FaceforgeError):
    """A registry package that ships weights is not installed or lacks its weight file."""

    code = "weights_unavailable"


class WeightsNotPreparedError(WeightsUnavailableError):
    """A serve-only process found a network missing from the weights cache that a worker or
    ``faceforge prepare`` fills: it passes once they have run (the API answers 503 with Retry-After)."""

    code = "weights_not_prepared"


class DatasetError(FaceforgeError):
    """An evaluation dataset folder is missing or unusable."""

    code = "invalid_dataset"


class TrainingError(FaceforgeError):
    """The recognition head cannot be trained from what was given."""

    code = "training_failed"


class NotFoundError(FaceforgeError):
    code = "not_found"


class ImageNotFoundError(NotFoundError):
    """An image id (CompreFace's) names no stored photo: CompreFace answers it with its own code 11."""

    code = "image_not_found"


class RequestRejectedError(FaceforgeError):
    """Client input that is well-formed HTTP but not acceptable (limits, empty names, bad values)."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ConflictError(FaceforgeError):
    code = "conflict"


class DatabaseUnreachableError(FaceforgeError):
    """The configured database does not answer (down, a wrong host or name, refused credentials)."""

    code = "database_unreachable"


class ModelNotReadyError(FaceforgeError):
    code = "model_not_ready"


class ExportError(FaceforgeError):
    """An on-device file could not be built or failed its verification; the version is not published."""

    code = "export_failed"


class BusyError(FaceforgeError):
    """More vision work is queued than the server takes on; the client should retry shortly."""

    code = "busy"


class ClientRuntimeMissingError(FaceforgeError):
    """ONNX Runtime Web (npm, ``client/``) is not installed beside this server: no browser client."""

    code = "client_runtime_missing"
