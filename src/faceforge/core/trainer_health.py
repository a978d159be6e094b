"""What a training worker's supervisor knows of it: read by ``/readyz`` and ``/metrics`` for the
trainer embedded in an API process. Imports nothing heavy (an API process reads it without PyTorch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainerHealth:
    running: bool = False
    restarts: int = 0  # times the worker stopped on an error and was started again
    last_error: str | None = None

    def describe(self) -> str:
        """``running``, or why it is not (it is started again after a pause)."""
        if self.running:
            return "running"
        if self.last_error is None:
            return "stopped"
        return f"restarting after an error: {self.last_error}"
