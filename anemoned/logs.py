"""Logging for journald: one line per event, `event key=value ...`.

Under systemd (JOURNAL_STREAM names our stderr) each line starts with a
syslog priority prefix such as `<4>`, which journald turns into the record's
severity; on a terminal the level is written as a word instead.

Callers pass fields as keyword arguments via `event()`; values are quoted
when they hold spaces, so `journalctl -o cat | grep dest=` works. Secrets are
never handed to the logger (the handlers do not log params).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

LOGGER_NAME = "anemoned"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def format_fields(fields: dict[str, Any]) -> str:
    """`k=v` pairs; values with spaces, quotes or `=` are JSON-style quoted,
    and control characters are escaped so one event stays one line."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Formatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        line = record.getMessage()
        if fields:
            line = f"{line} {format_fields(fields)}"
        if record.exc_info:
            # Tracebacks would span many journal records; keep one line.
            line += " " + format_fields({"exception": repr(record.exc_info[1])})
        line = line.replace("\n", "\\n")
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return f"{record.levelname.lower():7} {line}"


def _stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def setup_logging(level: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(_stderr_is_journal()))
        logger.addHandler(handler)
        logger.propagate = False
    set_level(level)
    return logger


def set_level(level: str) -> None:
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())


def event(level: int, name: str, **fields: Any) -> None:
    """Log one event: `name` is a short lowercase phrase, fields its facts."""
    logging.getLogger(LOGGER_NAME).log(level, name, extra={"fields": fields})
