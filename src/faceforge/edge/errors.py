"""What the camera agent refuses: one line each, for ``faceforge watch`` to print before it exits."""

from __future__ import annotations

from faceforge.core.errors import FaceforgeError


class WatchError(FaceforgeError):
    """A source, broker address, server or cached model the agent cannot use."""

    code = "watch_failed"


class NoModelVersion(Exception):
    """The server has no current version (409 ``model_not_ready``): nobody is enrolled, before its
    first version or after every person was deleted. A state to act on (name nobody), not a failure."""
