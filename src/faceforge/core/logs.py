"""Log configuration for faceforge's processes: text lines for people, or one JSON object per line
for log collectors (``FACEFORGE_LOG_FORMAT=json``). The same dictionary configures uvicorn, which
applies it in each API process it starts."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class JsonLineFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "process"[, "exception"]}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(log_format: LogFormat, *, verbose: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: other libraries at WARNING, faceforge at INFO with
    ``verbose``, uvicorn's own loggers through the same handler."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonLineFormatter"}
        if log_format is LogFormat.JSON
        else {"format": "%(levelname)s %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "faceforge": {"level": "INFO" if verbose else "WARNING"},
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
