"""Progress of long CLI runs: a live bar on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from faceforge.serving.services.bulk_import import ImportProgress

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes:d}:{rest:02d}"


def describe(progress: ImportProgress) -> str:
    return (
        f"{progress.photos_done}/{progress.photos_total} photos, {progress.photos_per_second:.1f} photos/s, "
        f"ETA {_eta(progress.eta_seconds)}, {progress.accepted} accepted, {progress.refused} refused"
    )


class ProgressDisplay:
    """``update(progress, line)``: a bar redrawn in place on a TTY; on anything else, ``line`` (one
    finished person) is printed with the running totals."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("importing"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(file=self.stream),
            )
            self._bar.start()
            self._task = self._bar.add_task("import", total=None, status="")
        return self

    def update(self, progress: ImportProgress, line: str | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task,
                total=progress.photos_total,
                completed=progress.photos_done,
                status=describe(progress),
            )
        elif line is not None:
            self.stream.write(f"{line} ({describe(progress)})\n")
            self.stream.flush()

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
