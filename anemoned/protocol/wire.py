"""Framing and errors of the control protocol: JSON-RPC 2.0, one JSON
document per line. Stdlib only."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

#: Longest request line the daemon reads; a longer one is answered with
#: REQUEST_TOO_LARGE and the connection is closed.
MAX_REQUEST_BYTES = 1024 * 1024
#: Longest response line the client accepts (job lists can be long).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

DEFAULT_SOCKET = "/run/anemone/anemoned.sock"


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes: the standard ones, then the application's own
    (from the range the spec leaves to implementations)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602  # data: {"field": name} names the bad parameter
    INTERNAL_ERROR = -32603
    #: The caller's uid is not root, the daemon's, nor in socket_group.
    PERMISSION_DENIED = -32001
    #: The request line exceeded MAX_REQUEST_BYTES.
    REQUEST_TOO_LARGE = -32002
    #: No such destination or job (data: {"field": name}).
    NOT_FOUND = -32004
    #: The request is well formed but conflicts with current state
    #: (destination name taken, key exists without force, ...).
    CONFLICT = -32009
    #: The operation ran and failed (connection test failed, ...);
    #: data carries the structured outcome.
    OPERATION_FAILED = -32010
    #: The daemon is at its connection limit or shutting down.
    UNAVAILABLE = -32011


class RpcError(Exception):
    """An error that travels as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(field: str, problem: str) -> RpcError:
    """An INVALID_PARAMS error whose message and data name the field."""
    return RpcError(ErrorCode.INVALID_PARAMS, f"{field}: {problem}", {"field": field})


@dataclass(frozen=True)
class Request:
    id: int | str | None  # None: a notification (no response is sent)
    method: str
    params: dict[str, Any]
    is_notification: bool = False


def _dump(obj: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every line pure ASCII: no encoding surprises in socat.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def encode_request(req_id: int | str, method: str, params: dict[str, Any] | None = None) -> bytes:
    return _dump({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}})


def encode_result(req_id: Any, result: Any) -> bytes:
    return _dump({"jsonrpc": "2.0", "id": req_id, "result": result})


def encode_error(req_id: Any, error: RpcError) -> bytes:
    return _dump({"jsonrpc": "2.0", "id": req_id, "error": error.to_json()})


def parse_request(line: bytes) -> Request:
    """Decode one request line; raises RpcError (PARSE_ERROR or
    INVALID_REQUEST) for anything that is not a well-formed request."""
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RpcError(ErrorCode.PARSE_ERROR, "parse error: not a UTF-8 JSON document") from None
    if not isinstance(msg, dict):
        raise RpcError(ErrorCode.INVALID_REQUEST, "invalid request: expected a JSON object (batches are not supported)")
    if msg.get("jsonrpc") != "2.0":
        raise RpcError(ErrorCode.INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    method = msg.get("method")
    if not isinstance(method, str):
        raise RpcError(ErrorCode.INVALID_REQUEST, 'invalid request: "method" must be a string')
    is_notification = "id" not in msg
    req_id = msg.get("id")
    if not is_notification and not (req_id is None or isinstance(req_id, (str, int))) or isinstance(req_id, bool):
        raise RpcError(ErrorCode.INVALID_REQUEST, 'invalid request: "id" must be a string, an integer or null')
    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(ErrorCode.INVALID_PARAMS, "params: must be an object (named parameters)", {"field": "params"})
    return Request(req_id, method, params, is_notification)


def request_id_of(line: bytes) -> Any:
    """Best-effort id of a request that failed to parse, for the error reply."""
    try:
        msg = json.loads(line)
        if isinstance(msg, dict) and isinstance(msg.get("id"), (str, int)):
            return msg["id"]
    except (ValueError, UnicodeDecodeError):
        pass
    return None


def parse_response(line: bytes) -> Any:
    """The result of a response line; raises RpcError for an error response."""
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RpcError(ErrorCode.PARSE_ERROR, "the daemon sent a line that is not JSON") from None
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise RpcError(ErrorCode.INVALID_REQUEST, "the daemon sent something that is not a JSON-RPC 2.0 response")
    if "error" in msg:
        err = msg["error"] if isinstance(msg["error"], dict) else {}
        raise RpcError(int(err.get("code", ErrorCode.INTERNAL_ERROR)), str(err.get("message", "unknown error")), err.get("data"))
    return msg.get("result")

