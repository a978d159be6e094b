"""Lines native code writes straight to file descriptor 2, where no logger or warning filter reaches:
TensorFlow's absl logging, TFLite's runtime, torch.export's pytree notices. The same few harmless lines
come with every conversion (``building``) and every TFLite interpreter (the camera agent's
``edge.runtime``), so both drop them with ``native_chatter_filtered``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Lines native code (TensorFlow's absl logging, TFLite's runtime) writes straight to file descriptor 2,
# where no logger or warning filter reaches: the same few, harmless lines in every conversion.
_NATIVE_CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl/glog INFO lines (oneDNN custom operations are on, ...)
    r"|W\d{4} [\d:.]+ +\d+ \S+_pytree\.py:\d+\] .*register_constant\(\)"  # torch.export's pytree
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
)


@contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Drop the converters' native log lines (``_NATIVE_CHATTER``) written to stderr in this block;
    every other line goes on to stderr as it comes. Descriptor 2 is shared by the whole process, so
    other threads' output passes through the filter meanwhile (unchanged unless it matches)."""
    sys.stderr.flush()
    original = os.dup(2)
    reader, writer = os.pipe()
    forward_to = os.dup(original)
    os.dup2(writer, 2)
    os.close(writer)

    def forward() -> None:
        with os.fdopen(reader, "rb") as lines, os.fdopen(forward_to, "wb", buffering=0) as out:
            for line in lines:
                if not _NATIVE_CHATTER.match(line.decode(errors="replace")):
                    out.write(line)

    forwarder = threading.Thread(target=forward, name="faceforge-native-logs", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last writer: the forwarder reads to the end
        os.close(original)
        forwarder.join()
