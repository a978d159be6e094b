"""The quality view's plots drawn as PNG with Pillow (no plotting library needed on the server).

Each function takes the quality figures of ``core.model.head.fit_and_evaluate`` and returns PNG
bytes: the genuine and impostor score histograms with the threshold line, known accepted against
strangers rejected as the threshold moves (the version's point marked), and the people whose photos
agree least.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 720, 420
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 40, 55
CURVE_LOW = 0.8
GENUINE, IMPOSTOR, THRESHOLD, AXIS, GRID = "#2a9d5c", "#d1495b", "#1d3557", "#333333", "#e4e4e4"


@dataclass(frozen=True, slots=True)
class Frame:
    """Maps data coordinates onto the plot area of a ``WIDTH`` x ``HEIGHT`` image."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return MARGIN_LEFT + (value - self.x_min) / span * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return HEIGHT - MARGIN_BOTTOM - (value - self.y_min) / span * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / count
    return [low + i * step for i in range(count + 1)]


def _axes(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    frame: Frame,
    title: str,
    x_label: str,
    y_label: str,
    *,
    y_percent: bool,
) -> None:
    small, large = _font(12), _font(15)
    for value in _ticks(frame.y_min, frame.y_max):
        y = frame.y(value)
        draw.line([(MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y)], fill=GRID)
        text = f"{value:.0%}" if y_percent else f"{value:.0f}"
        draw.text((MARGIN_LEFT - 8, y), text, fill=AXIS, font=small, anchor="rm")
    for value in _ticks(frame.x_min, frame.x_max):
        x = frame.x(value)
        draw.line([(x, HEIGHT - MARGIN_BOTTOM), (x, HEIGHT - MARGIN_BOTTOM + 5)], fill=AXIS)
        draw.text((x, HEIGHT - MARGIN_BOTTOM + 8), f"{value:.2f}", fill=AXIS, font=small, anchor="mt")
    bottom = HEIGHT - MARGIN_BOTTOM
    draw.line([(MARGIN_LEFT, MARGIN_TOP), (MARGIN_LEFT, bottom), (WIDTH - MARGIN_RIGHT, bottom)], fill=AXIS)
    draw.text((WIDTH / 2, 12), title, fill=AXIS, font=large, anchor="mt")
    draw.text((WIDTH / 2, HEIGHT - 8), x_label, fill=AXIS, font=small, anchor="mb")
    label = Image.new("RGBA", (HEIGHT, 18), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((HEIGHT / 2, 9), y_label, fill=AXIS, font=small, anchor="mm")
    upright = label.rotate(90, expand=True)
    image.paste(upright, (4, 0), upright)


def _legend(draw: ImageDraw.ImageDraw, entries: Sequence[tuple[str, str]]) -> None:
    x, y = WIDTH - MARGIN_RIGHT - 190, MARGIN_TOP + 6
    for colour, text in entries:
        draw.rectangle([x, y + 2, x + 12, y + 12], fill=colour)
        draw.text((x + 18, y), text, fill=AXIS, font=_font(12))
        y += 18


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def histogram_png(quality: dict[str, Any]) -> bytes:
    histogram = quality["histogram"]
    edges, genuine, impostor = histogram["edges"], histogram["genuine"], histogram["impostor"]
    total_g, total_i = max(sum(genuine), 1), max(sum(impostor), 1)
    shares_g = [count / total_g for count in genuine]
    shares_i = [count / total_i for count in impostor]
    frame = Frame(edges[0], edges[-1], 0.0, max([*shares_g, *shares_i, 0.01]) * 1.1)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    _axes(
        image,
        draw,
        frame,
        "Similarity of enrolled photos",
        "cosine similarity",
        "share of photos",
        y_percent=True,
    )
    for shares, colour in ((shares_i, IMPOSTOR), (shares_g, GENUINE)):
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        for left, right, share in zip(edges, edges[1:], shares, strict=False):
            if share > 0:
                draw.rectangle([frame.x(left), frame.y(share), frame.x(right), frame.y(0)], fill=(*rgb, 150))
    x = frame.x(quality["threshold"])
    draw.line([(x, MARGIN_TOP), (x, HEIGHT - MARGIN_BOTTOM)], fill=THRESHOLD, width=2)
    draw.text(
        (x + 4, MARGIN_TOP + 2), f"threshold {quality['threshold']:.3f}", fill=THRESHOLD, font=_font(12)
    )
    _legend(
        draw,
        [(GENUINE, f"own person, held out ({total_g})"), (IMPOSTOR, f"best other person ({total_i})")],
    )
    return _png(image)


def curve_png(quality: dict[str, Any]) -> bytes:
    points = [p for p in quality["curve"] if p["known_accept"] is not None]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    # The interesting corner: both shares above 80 % (points outside are clipped to the frame).
    frame = Frame(CURVE_LOW, 1.0, CURVE_LOW, 1.0)
    points = [
        {
            **p,
            "unknown_reject": max(p["unknown_reject"], CURVE_LOW),
            "known_accept": max(p["known_accept"], CURVE_LOW),
        }
        for p in points
    ]
    _axes(
        image,
        draw,
        frame,
        "Known accepted vs strangers rejected",
        "strangers rejected (estimated)",
        "known accepted (estimated)",
        y_percent=True,
    )
    line = [(frame.x(p["unknown_reject"]), frame.y(p["known_accept"])) for p in points]
    if len(line) > 1:
        draw.line(line, fill=THRESHOLD, width=2)
    chosen = min(points, key=lambda p: abs(p["threshold"] - quality["threshold"]), default=None)
    if chosen is not None:
        x, y = frame.x(chosen["unknown_reject"]), frame.y(chosen["known_accept"])
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=IMPOSTOR)
        label = f"this version: threshold {quality['threshold']:.3f}"
        draw.text((x - 10, y + 8), label, fill=AXIS, font=_font(12), anchor="ra")
    return _png(image)


def people_png(quality: dict[str, Any]) -> bytes:
    people = quality["people"]
    row = 26
    height = MARGIN_TOP + row * max(len(people), 1) + 30
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (WIDTH / 2, 12),
        "People whose photos agree least (mean held-out similarity)",
        fill=AXIS,
        font=_font(15),
        anchor="mt",
    )
    left, right = 260, WIDTH - 80
    low = min([p["genuine_min"] for p in people], default=0.0) - 0.02
    for i, person in enumerate(people):
        y = MARGIN_TOP + i * row
        draw.text((left - 8, y + row / 2), person["label"][:34], fill=AXIS, font=_font(12), anchor="rm")
        share = (person["genuine_mean"] - low) / max(1.0 - low, 1e-6)
        draw.rectangle([left, y + 5, left + share * (right - left), y + row - 5], fill=GENUINE)
        draw.text(
            (left + share * (right - left) + 6, y + row / 2),
            f"{person['genuine_mean']:.3f}",
            fill=AXIS,
            font=_font(12),
            anchor="lm",
        )
    if not people:
        draw.text(
            (WIDTH / 2, MARGIN_TOP + 10), "nobody has two photos yet", fill=AXIS, font=_font(12), anchor="mt"
        )
    return _png(image)
