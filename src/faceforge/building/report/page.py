"""One self-contained HTML page for a build report: the figures, the plots, refusals and people."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
td, th { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5rem 0; }
"""

FIGURES = (
    ("people", "people enrolled"),
    ("enrolled_photos", "photos enrolled"),
    ("held_out_photos", "photos held out"),
    ("top1", "held out: nearest person right (top-1)"),
    ("known_accept_rate", "held out: accepted as the right person"),
    ("unknown_reject_rate", "strangers rejected (--unknown)"),
    ("tflite_agreement", "model.tflite gives the server's answer"),
    ("threshold", "threshold (cosine)"),
    ("estimated_known_accept", "calibration's estimate: known accepted"),
    ("estimated_unknown_reject", "calibration's estimate: strangers rejected"),
)


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_value(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_page(report: dict[str, Any], plots: list[str]) -> str:
    figures = _table(["figure", "value"], [[label, report.get(key)] for key, label in FIGURES])
    images = "".join(f'<img src="{escape(name)}" alt="{escape(name)}">' for name in plots)
    refused = _table(
        ["person", "photo", "why"],
        [[r["person"], r["file"], r["message"] or ", ".join(r["reasons"])] for r in report["refused"]],
    )
    duplicates = _table(
        ["people", "similarity", "kind"],
        [
            [" / ".join(d.get("names", d.get("labels", []))), d["similarity"], d["kind"]]
            for d in report["suspected_duplicates"]
        ],
    )
    unusable = _table(
        ["person", "photo", "why"],
        [[r["person"], r["file"], r["message"]] for r in report.get("held_out_unusable", [])],
    )
    ignored = "".join(f"<li><code>{escape(path)}</code></li>" for path in report["ignored"])
    files = "".join(f"<li><code>{escape(name)}</code></li>" for name in report["files"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>faceforge build: {escape(report["dataset"])}</title><style>{STYLE}</style></head>
<body>
<h1>faceforge build</h1>
<p>{escape(report["dataset"])}: {report["people"]} people, version {report["version"]},
{report["holdout"]:.0%} of each person's photos held out (seed {report["seed"]}).</p>
<h2>Figures</h2>{figures}
<h2>Quality</h2>{images}
<h2>Refused photos ({len(report["refused"])})</h2>{refused}
<h2>Held-out photos without a face ({len(report.get("held_out_unusable", []))})</h2>
<p>Not counted in the held-out figures.</p>{unusable}
<h2>Suspected duplicates ({len(report["suspected_duplicates"])})</h2>{duplicates}
<h2>Ignored photos ({len(report["ignored"])})</h2>
<p>Beside the person folders, so nobody's: each person is a sub-folder named after them.</p><ul>{ignored}</ul>
<h2>Files</h2><ul>{files}</ul>
</body></html>
"""
