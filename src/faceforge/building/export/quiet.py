"""Keep the conversion tools from flooding the log on every version.

coremltools draws tqdm progress bars for each conversion pass, and the pinned converters (coremltools,
torch.export / torch.onnx, litert-torch and the JAX/absl stack under it) log known, harmless warnings
per conversion. faceforge logs one line per training stage instead; ``-v`` does not bring them back
because they say nothing about faceforge's work. Native code's lines (absl, oneDNN, XNNPACK) bypass
both logging and warnings: ``core.native_logs.native_chatter_filtered`` drops them around conversions
and TFLite runs.
"""

from __future__ import annotations

import logging
import os
import warnings

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
    # PyTorch sets its loggers' levels from this when it is imported, which happens where a network is
    # first converted or traced (after this call, in workers that convert only some formats): the
    # levels set below would not survive it. "-all": every PyTorch logger at ERROR.
    os.environ.setdefault("TORCH_LOGS", "-all")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("coremltools", "torch", "onnxscript", "litert_torch", "jax", "tensorflow"):
        warnings.filterwarnings("ignore", module=rf"{module}(\..*)?")
    # torch.export's pytree raises this through copyreg, so the module filter above misses it.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
