"""The daemon's own errors: what went wrong, in the domain's words.

    AnemoneError                 message, field (or None), details (a dict)
     +-- InvalidField            a value a person gave is not acceptable
     +-- NotFound                no such destination, job, key, path ...
     +-- Conflict                well formed, but not possible in the current state
     +-- OperationFailed         the operation ran and failed (server, rclone, ...)

Domain modules raise these and never import the protocol: how an error
travels to a client (JSON-RPC codes, `data`) is decided in exactly one
place, `api.dispatch.to_rpc_error`. `message` is written for the operator
and never holds a secret; `field` names the parameter the operator can fix;
`details` carries structured facts a client may act on (a failure class, a
fingerprint seen) and goes out as the error's `data` beside `field`.
"""
from __future__ import annotations

from typing import Any


class AnemoneError(Exception):
    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = dict(details or {})


class InvalidField(AnemoneError):
    """`field: problem`; the field is always named."""

    def __init__(self, field: str, problem: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {problem}", field=field, details=details)
        self.problem = problem


class NotFound(AnemoneError):
    pass


class Conflict(AnemoneError):
    pass


class OperationFailed(AnemoneError):
    pass
