"""Read the layers of a network that dlib serialized (``dlib.net`` / ``.dat`` files), without dlib.

dlib writes a network as nested ``add_layer`` wrappers followed by each layer's own record in
forward order (input first). A record opens with the layer's type tag as a dlib string
(``"con_4"``, ``"affine_"``, ``"fc_2"``, ...) and goes on with its hyper-parameters and tensors.
We read only what inference needs:

- dlib integers: one header byte (low 4 bits: how many value bytes follow, bit 7: negative), then
  the value's bytes little-endian. Strings are an integer length and the raw bytes.
- dlib floats (``float_details``): an integer mantissa and an integer exponent, value m * 2**e.
- tensors (version 2): four integers (num_samples, k, nr, nc), then that many little-endian
  IEEE-754 float32 values.

The wrappers between records (tags, skips, cached outputs of a training run) carry nothing
inference needs. Each record is found by its type tag and read field by field; the loader then
checks the sequence of layers and every tensor's size against the architecture it expects, so a
file of another network fails loudly instead of loading garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceforge.core.errors import WeightsUnavailableError

TENSOR_VERSION = 2
# The descriptor's input layer (here, not beside the PyTorch port in ``dlib_weights``: the exported
# models' input descriptions state them, and composing a model needs no PyTorch). It divides the
# mean-subtracted pixels by this constant:
PIXEL_SCALE = 256.0
# The RGB means recorded in that layer; exported models state them (Core ML image preprocessing), so
# a file with other means is refused rather than exported wrongly.
DLIB_RGB_MEANS = (122.782, 117.001, 104.298)
# Type tags of the layers the face descriptor network uses, with their serialization versions.
CONV = "con_4"
AFFINE = "affine_"
RELU = "relu_"
ADD_PREV = "add_prev_"
AVG_POOL = "avg_pool_2"
MAX_POOL = "max_pool_2"
FC = "fc_2"
INPUT_RGB = "input_rgb_image_sized"
LOSS_METRIC = "loss_metric_2"
_TAGS = (CONV, AFFINE, RELU, ADD_PREV, AVG_POOL, MAX_POOL, FC, INPUT_RGB, LOSS_METRIC)
# A record starts with its tag's length as a one-byte dlib integer (header 0x01) and the tag.
_RECORD = re.compile(b"\x01[\x03-\x20](?:" + b"|".join(re.escape(t.encode()) for t in _TAGS) + b")")


@dataclass(frozen=True, slots=True)
class DlibLayer:
    """One layer record: its type tag, integer hyper-parameters and parameter tensor (if any)."""

    kind: str
    settings: dict[str, int] = field(default_factory=dict)
    params: npt.NDArray[np.float32] | None = None
    means: tuple[float, float, float] | None = None  # the input layer's per-channel RGB means


class _Reader:
    def __init__(self, data: bytes, position: int, source: Path) -> None:
        self.data = data
        self.position = position
        self.source = source

    def fail(self, what: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(f"{self.source.name}: {what} at byte {self.position}")

    def integer(self) -> int:
        if self.position >= len(self.data):
            raise self.fail("file ends inside a record")
        header = self.data[self.position]
        size = header & 0x0F
        if size > 8:
            raise self.fail("not a dlib integer")
        start = self.position + 1
        value = int.from_bytes(self.data[start : start + size], "little")
        self.position = start + size
        return -value if header & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        text = self.data[self.position : self.position + length]
        self.position += length
        return text.decode("ascii")

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self) -> npt.NDArray[np.float32]:
        version = self.integer()
        if version != TENSOR_VERSION:
            raise self.fail(f"tensor version {version}, expected {TENSOR_VERSION}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.position + 4 * count
        if count <= 0 or end > len(self.data):
            raise self.fail(f"bad tensor shape {shape}")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.position)
        self.position = end
        return values.astype(np.float32).reshape(shape)


def _read_record(reader: _Reader) -> DlibLayer:
    kind = reader.string()
    if kind == INPUT_RGB:
        means = (reader.real(), reader.real(), reader.real())
        return DlibLayer(kind, {"rows": reader.integer(), "cols": reader.integer()}, means=means)
    if kind == CONV:
        params = reader.tensor()
        fields = ("filters", "rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, {name: reader.integer() for name in fields}, params)
    if kind == AFFINE:
        return DlibLayer(kind, {}, reader.tensor())
    if kind in (AVG_POOL, MAX_POOL):
        names = ("rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, {name: reader.integer() for name in names})
    if kind == FC:
        outputs, inputs = reader.integer(), reader.integer()
        return DlibLayer(kind, {"outputs": outputs, "inputs": inputs}, reader.tensor())
    return DlibLayer(kind)  # relu, add_prev, loss: nothing inference needs


def read_dlib_layers(path: Path) -> list[DlibLayer]:
    """Every layer record of the network in ``path``, in forward order (the loss layer first)."""
    data = path.read_bytes()
    layers: list[DlibLayer] = []
    position = 0
    while match := _RECORD.search(data, position):
        reader = _Reader(data, match.start(), path)
        layers.append(_read_record(reader))
        # Resume after the record's own fields: a tag pattern inside its tensor is not a record.
        position = max(reader.position, match.end())
    if not layers:
        raise WeightsUnavailableError(f"{path.name} holds no dlib network layers")
    return layers
