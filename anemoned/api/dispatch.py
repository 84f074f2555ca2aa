"""Route a request to its handler: decode the params into the method's
class (protocol.fields.decode), check the caller may call it, run it, and
translate domain errors into JSON-RPC errors, here and nowhere else."""
from __future__ import annotations

import dataclasses
from typing import Any, Awaitable, Callable

from .. import protocol
from ..errors import AnemoneError, Conflict, InvalidField, NotFound, OperationFailed
from ..protocol import ErrorCode, Request, RpcError
from ..protocol.fields import decode
from .context import Context

Handler = Callable[[Context, Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}

_CODES: tuple[tuple[type[AnemoneError], ErrorCode], ...] = (
    (InvalidField, ErrorCode.INVALID_PARAMS),
    (NotFound, ErrorCode.NOT_FOUND),
    (Conflict, ErrorCode.CONFLICT),
    (OperationFailed, ErrorCode.OPERATION_FAILED),
)


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of method `name` (one of protocol.METHODS)."""
    assert name in protocol.METHODS, name

    def register(fn: Handler) -> Handler:
        assert name not in HANDLERS, name
        HANDLERS[name] = fn
        return fn

    return register


def to_rpc_error(err: AnemoneError) -> RpcError:
    """The one translation of a domain error into what a client receives."""
    code = next((c for cls, c in _CODES if isinstance(err, cls)), ErrorCode.OPERATION_FAILED)
    data: dict[str, Any] = {"field": err.field} if err.field else {}
    data.update(err.details)
    return RpcError(code, err.message, data or None)


def _plain(result: Any) -> Any:
    """A result as JSON can carry it (result classes become objects)."""
    if isinstance(result, list):
        return [_plain(r) for r in result]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


async def dispatch(ctx: Context, request: Request, caller_uid: int, own_uid: int) -> Any:
    method = protocol.METHODS.get(request.method)
    handler = HANDLERS.get(request.method)
    if method is None or handler is None:
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"method not found: {request.method[:100]!r}")
    if method.admin and caller_uid not in (0, own_uid):
        raise RpcError(ErrorCode.PERMISSION_DENIED,
                       f"permission denied: {request.method} is for root or the daemon's user; members of "
                       "socket_group run and watch backups")
    params = decode(method.params, request.params)
    try:
        return _plain(await handler(ctx, params))
    except AnemoneError as err:
        raise to_rpc_error(err) from None

