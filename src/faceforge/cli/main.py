"""The ``faceforge`` command."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from faceforge.config import Settings
from faceforge.domain.errors import FaceforgeError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Self-hosted face recognition.")

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="data directory (default: FACEFORGE_HOME or ~/.faceforge)")
]


def _settings(home: Path | None) -> Settings:
    settings = Settings()
    return settings.model_copy(update={"home": home.expanduser()}) if home else settings


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@app.command("eval")
def eval_command(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="folder with one sub-folder of photos per person")
    ],
    enroll: Annotated[int, typer.Option("--enroll", min=1, help="photos enrolled per person")] = 5,
    unknown: Annotated[
        Path | None, typer.Option("--unknown", help="photos of people never enrolled (flat or in folders)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="enrol K random photos per person")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    home: HomeOption = None,
) -> None:
    """Measure recognition on your own photos: enrol K per person, probe the rest, reject unknowns."""
    from faceforge.evaluation.harness import EvalOptions, evaluate
    from faceforge.vision.pipeline import FacePipeline

    try:
        figures = evaluate(FacePipeline(_settings(home)), EvalOptions(dataset, enroll, unknown, seed))
    except FaceforgeError as error:
        raise _fail(error.message) from None
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        _print_figures(figures)


def _print_figures(figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        if isinstance(value, float):
            value = round(value, 4)
        sys.stdout.write(f"{key:>28}: {value}\n")


if __name__ == "__main__":
    app()
