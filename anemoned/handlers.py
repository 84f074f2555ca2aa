"""One function per RPC method; dispatch() routes a request to it.

Handlers validate their params through Params, which names the offending
field in every error and rejects unknown parameters. Handlers never log or
echo parameter values: a password could be among them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import __version__, protocol
from .protocol import ErrorCode, Request, RpcError, invalid_params

if TYPE_CHECKING:
    from .service import Daemon

Handler = Callable[["Daemon", "Params"], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    assert name in protocol.METHODS, name

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class Params:
    """Typed access to a request's named params."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.seen: set[str] = set()

    def _get(self, name: str, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                raise invalid_params(name, "is required")
            return None
        return self.raw[name]

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def str(self, name: str, required: bool = True, max_len: int = 4096) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid_params(name, "must be a string")
        if len(value) > max_len:
            raise invalid_params(name, f"must be at most {max_len} characters")
        return value

    def int(self, name: str, required: bool = True, lo: int = 0, hi: int = 2**31) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(name, "must be a whole number")
        if not lo <= value <= hi:
            raise invalid_params(name, f"must be from {lo} to {hi}")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid_params(name, "must be true or false")
        return value

    def obj(self, name: str, required: bool = True) -> dict[str, Any] | None:
        value = self._get(name, required)
        if value is not None and not isinstance(value, dict):
            raise invalid_params(name, "must be an object")
        return value

    def check_unknown(self) -> None:
        for name in self.raw:
            if name not in self.seen:
                raise invalid_params(name, "unknown parameter")


async def dispatch(daemon: "Daemon", request: Request) -> Any:
    handler = HANDLERS.get(request.method)
    if handler is None:
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"method not found: {request.method[:100]!r}")
    return await handler(daemon, Params(request.params))


@method("status")
async def status(daemon: "Daemon", p: Params) -> dict[str, Any]:
    p.check_unknown()
    return daemon.status()
