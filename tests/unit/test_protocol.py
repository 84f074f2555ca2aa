import json

import pytest

from anemoned import protocol
from anemoned.protocol import ErrorCode, RpcError


def test_request_round_trip():
    line = protocol.encode_request(7, "dest.show", {"name": "été"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    req = protocol.parse_request(line)
    assert (req.id, req.method, req.params, req.is_notification) == (7, "dest.show", {"name": "été"}, False)


@pytest.mark.parametrize("line, code", [
    (b"not json", ErrorCode.PARSE_ERROR),
    (b"\xff\xfe", ErrorCode.PARSE_ERROR),
    (b"[]", ErrorCode.INVALID_REQUEST),
    (b'{"jsonrpc":"1.0","id":1,"method":"status"}', ErrorCode.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":5}', ErrorCode.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":true,"method":"status"}', ErrorCode.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":[1],"method":"status"}', ErrorCode.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":"status","params":[1]}', ErrorCode.INVALID_PARAMS),
])
def test_malformed_requests_get_the_right_code(line, code):
    with pytest.raises(RpcError) as info:
        protocol.parse_request(line)
    assert info.value.code == code


def test_notification_has_no_id():
    req = protocol.parse_request(b'{"jsonrpc":"2.0","method":"status"}')
    assert req.is_notification


def test_error_response_decodes_to_rpc_error_with_field():
    line = protocol.encode_error(3, protocol.invalid_params("port", "must be from 1 to 65535"))
    assert json.loads(line)["error"]["data"] == {"field": "port"}
    with pytest.raises(RpcError) as info:
        protocol.parse_response(line)
    assert info.value.code == ErrorCode.INVALID_PARAMS and info.value.message.startswith("port:")


def test_request_id_of_recovers_id_for_error_replies():
    assert protocol.request_id_of(b'{"id": 9, "method": 1}') == 9
    assert protocol.request_id_of(b"garbage") is None
