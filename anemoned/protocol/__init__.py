"""The control protocol shared by anemoned and anemonectl: pure, stdlib only.

Framing: JSON-RPC 2.0, one UTF-8 JSON document per line ("\\n"-terminated),
over a Unix stream socket. A connection may carry any number of requests;
responses come back in request order. Batches are not supported (the client
never needs them and they make size limits harder to reason about).

This package is the only part of the daemon package that anemonectl imports:
`fields` holds the parameter constraints and the one decoder, `methods`
every method's params and result classes (METHODS, ADMIN_METHODS).
"""
from .methods import ADMIN_METHODS, METHODS
from .wire import (DEFAULT_SOCKET, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, ErrorCode, Request, RpcError, encode_error,
                   encode_request, encode_result, invalid_params, parse_request, parse_response, request_id_of)

__all__ = ["ADMIN_METHODS", "METHODS", "DEFAULT_SOCKET", "MAX_REQUEST_BYTES", "MAX_RESPONSE_BYTES", "ErrorCode",
           "Request", "RpcError", "encode_error", "encode_request", "encode_result", "invalid_params",
           "parse_request", "parse_response", "request_id_of"]
