"""Keep the conversion tools from flooding the log on every version.

coremltools draws tqdm progress bars for each conversion pass, and the pinned converters (coremltools,
torch.export / torch.onnx, litert-torch and the JAX/absl stack under it) log known, harmless warnings
per conversion. faceforge logs one line per training stage instead; ``-v`` does not bring them back
because they say nothing about faceforge's work. Native code's lines (absl, oneDNN, XNNPACK) bypass
both logging and warnings: ``native_chatter_filtered`` drops them around conversions and TFLite runs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_CHATTY_LOGGERS = (
    "torch",
    "torchao",
    "coremltools",
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch.fx",
    "onnxscript",
    "litert_torch",
    "ai_edge_torch",
    "absl",
    "jax",
    "tensorflow",
)


def quiet_conversion_tools() -> None:
    """Call before the tools are imported (environment switches are read at import) and again
    before each conversion (importing torch resets its loggers' levels)."""
    # tqdm reads TQDM_DISABLE when it is first imported, which coremltools does on import.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # litert-torch's per-pass progress
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow/LiteRT C++ INFO lines
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("coremltools", "torch", "onnxscript", "litert_torch", "jax", "tensorflow"):
        warnings.filterwarnings("ignore", module=rf"{module}(\..*)?")
    # torch.export's pytree raises this through copyreg, so the module filter above misses it.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


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
