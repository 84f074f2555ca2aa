"""Logging: one readable line per event, `event key=value ...`, and under
systemd the same event as a journald record with fields.

- Outside systemd (JOURNAL_STREAM does not name our stderr), each event is a
  line on stderr with its level as a word.
- Under systemd, each event goes to journald's native socket with the line
  as MESSAGE and structured fields (journal_fields): PRIORITY, a stable
  MESSAGE_ID per event name, DEST, JOB, JOB_KIND, USER_NAME, OUTCOME where
  they apply, and every other field as ANEMONE_<NAME>. The native protocol
  is spoken by `logging_journald.JournaldTransport` (pure Python, so nothing
  needs libsystemd's headers to install; it passes large records through a
  sealed memfd as libsystemd does). If the socket cannot be used, the line
  goes to stderr with a `<N>` priority prefix, which the journal stream
  understands.

Callers pass fields as keyword arguments via `event()`; values are quoted
when they hold spaces, so `journalctl -o cat | grep dest=` works. Secrets are
never handed to the logger (the handlers do not log params).
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from typing import Any, Protocol, TextIO

LOGGER_NAME = "anemoned"
SYSLOG_IDENTIFIER = "anemoned"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
#: Event fields with a journal field name of their own (the rest become
#: ANEMONE_<NAME>): these are the ones operators filter on.
JOURNAL_FIELD_NAMES = {"dest": "DEST", "job": "JOB", "kind": "JOB_KIND", "user": "USER_NAME", "outcome": "OUTCOME"}
#: MESSAGE_IDs are UUIDs derived from the event name in this namespace, so
#: they stay the same from release to release while the name does.
MESSAGE_ID_NAMESPACE = uuid.UUID("6a1d3c0e-5b0f-4c5e-9a57-1e2f0a9b7c31")


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


def message_id(name: str) -> str:
    """The journald MESSAGE_ID of an event name (32 hex digits)."""
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, name).hex


def readable_line(record: logging.LogRecord) -> str:
    """The event as one line: name, then its fields."""
    fields = getattr(record, "fields", None) or {}
    line = record.getMessage()
    if fields:
        line = f"{line} {format_fields(fields)}"
    if record.exc_info:
        # Tracebacks would span many journal records; keep one line.
        line += " " + format_fields({"exception": repr(record.exc_info[1])})
    return line.replace("\n", "\\n")


def _journal_name(key: str) -> str:
    named = JOURNAL_FIELD_NAMES.get(key)
    if named:
        return named
    # journald accepts A-Z, 0-9 and _, not starting with _ (those are its own).
    return "ANEMONE_" + re.sub(r"[^A-Z0-9_]", "_", key.upper())


def journal_fields(record: logging.LogRecord) -> list[tuple[str, str]]:
    """The journald record of a log record, as (FIELD, value) pairs. Pure."""
    pairs = [
        ("MESSAGE", readable_line(record)),
        ("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
        ("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER),
        ("MESSAGE_ID", message_id(record.getMessage())),
        ("ANEMONE_EVENT", record.getMessage()),
        ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)),
        ("CODE_FUNC", record.funcName),
    ]
    for key, value in (getattr(record, "fields", None) or {}).items():
        if value is not None:
            pairs.append((_journal_name(key), str(value)))
    return pairs


class _Formatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        line = readable_line(record)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return f"{record.levelname.lower():7} {line}"


class Transport(Protocol):
    def send(self, pairs: Any) -> None: ...


class JournaldHandler(logging.Handler):
    """Sends each event to journald's native socket; when that fails, the
    event still reaches the journal as a prefixed line on stderr."""

    def __init__(self, transport: Transport, fallback: TextIO) -> None:
        super().__init__()
        self.transport = transport
        self.fallback = fallback
        self.fallback_formatter = _Formatter(journald=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.transport.send(journal_fields(record))
        except Exception:
            try:
                self.fallback.write(self.fallback_formatter.format(record) + "\n")
                self.fallback.flush()
            except Exception:
                self.handleError(record)


def _stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def _handler() -> logging.Handler:
    """Native journald under systemd, readable lines elsewhere."""
    if _stderr_is_journal():
        try:
            from logging_journald import JournaldTransport
            return JournaldHandler(JournaldTransport(), sys.stderr)
        except OSError:
            pass  # no native socket (unusual): prefixed lines on the stream
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(journald=True))
        return handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journald=False))
    return handler


def setup_logging(level: str) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        logger.addHandler(_handler())
        logger.propagate = False
        # Apprise logs request details (hosts, payloads, sometimes URLs with
        # tokens): none of it may reach our log. Notification outcomes are
        # logged by anemoned.notify with redacted targets.
        apprise_logger = logging.getLogger("apprise")
        apprise_logger.addHandler(logging.NullHandler())
        apprise_logger.propagate = False
    set_level(level)
    return logger


def set_level(level: str) -> None:
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())


def event(level: int, name: str, **fields: Any) -> None:
    """Log one event: `name` is a short lowercase phrase, fields its facts."""
    logging.getLogger(LOGGER_NAME).log(level, name, extra={"fields": fields})
