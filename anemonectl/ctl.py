"""What every anemonectl command uses: the exit codes (CONTRACT), and Ctl,
which sends requests built from the protocol's params classes and prints
answers as text or JSON."""
from __future__ import annotations

import json
from typing import Any, Callable

from anemoned import protocol
from anemoned.protocol import ErrorCode
from anemoned.protocol import methods as m
from anemoned.protocol.fields import encode

from .client import Client
from .render import terminal_safe

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


def exit_code_for(code: int) -> int:
    """The process exit code for a JSON-RPC error code."""
    if code == ErrorCode.NOT_FOUND:
        return EXIT_NOT_FOUND
    if code in (ErrorCode.PERMISSION_DENIED, ErrorCode.UNAVAILABLE):
        return EXIT_UNREACHABLE
    if code in (ErrorCode.OPERATION_FAILED, ErrorCode.INTERNAL_ERROR):
        return EXIT_FAILED
    return EXIT_USAGE  # parse/invalid request/params, conflict, too large, unknown method


class Ctl:
    """What a command needs: the client and how to print."""

    def __init__(self, client: Client, as_json: bool) -> None:
        self.client = client
        self.as_json = as_json

    def call(self, method: str, params: Any = None, timeout_s: float | None = None) -> Any:
        """One request; its params are built as the method's params class
        (protocol.methods), so the client cannot send what the daemon does
        not take."""
        params = m.NoParams() if params is None else params
        expected = protocol.METHODS[method].params
        if not isinstance(params, expected):
            raise TypeError(f"{method} takes {expected.__name__}, not {type(params).__name__}")
        return self.client.call(method, encode(params), timeout_s)

    def emit(self, obj: Any, human: Callable[[Any], str]) -> None:
        if self.as_json:
            print(json.dumps(obj, indent=2, ensure_ascii=False))
        else:
            text = human(obj)
            if text:
                print(terminal_safe(text))


