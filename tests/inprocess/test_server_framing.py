"""The socket server's framing against a stub dispatch: order, errors,
notifications, limits, and how a bug is told (an error id, never values)."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from anemoned import protocol
from anemoned.protocol import ErrorCode, Request, RpcError
from anemoned.server import Peer, RpcServer


async def stub(request: Request, peer: Peer) -> Any:
    if request.method == "boom":
        raise RuntimeError("password=hunter2")
    if request.method == "refuse":
        raise RpcError(ErrorCode.CONFLICT, "no")
    return {"echo": request.method, "params": request.params, "uid": peer.uid}


async def exchange(tmp_path, payload: bytes, replies: int) -> list[dict[str, Any]]:
    server = RpcServer(tmp_path / "s.sock", None, stub)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "s.sock"), limit=2**20)
        writer.write(payload)
        await writer.drain()
        out = [json.loads(await asyncio.wait_for(reader.readline(), 5)) for _ in range(replies)]
        writer.close()
        return out
    finally:
        await server.close()


def test_answers_in_order_and_bad_lines_do_not_end_the_connection(tmp_path):
    payload = (protocol.encode_request(1, "first", {"a": 1}) + b"not json\n"
               + b'{"jsonrpc":"2.0","method":"notified"}\n' + protocol.encode_request("x", "refuse"))
    first, bad, refused = asyncio.run(exchange(tmp_path, payload, 3))
    assert first["id"] == 1 and first["result"]["echo"] == "first" and first["result"]["params"] == {"a": 1}
    assert bad["error"]["code"] == ErrorCode.PARSE_ERROR and bad["id"] is None
    assert refused == {"jsonrpc": "2.0", "id": "x", "error": {"code": ErrorCode.CONFLICT, "message": "no"}}


def test_a_bug_is_told_with_an_error_id_and_where_never_its_values(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    (reply,) = asyncio.run(exchange(tmp_path, protocol.encode_request(7, "boom"), 1))
    error = reply["error"]
    assert error["code"] == ErrorCode.INTERNAL_ERROR and "hunter2" not in json.dumps(reply)
    error_id = error["data"]["error_id"]
    assert error_id in error["message"]
    logged = "\n".join(r.getMessage() + " " + json.dumps(getattr(r, "fields", {}), default=str)
                       for r in caplog.records)
    assert error_id in logged and "test_server_framing.py" in logged and "stub" in logged
    assert "hunter2" not in logged


def test_a_line_over_the_limit_is_refused(tmp_path):
    huge = b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"p":"' + b"a" * protocol.MAX_REQUEST_BYTES + b'"}}\n'
    (reply,) = asyncio.run(exchange(tmp_path, huge, 1))
    assert reply["error"]["code"] == ErrorCode.REQUEST_TOO_LARGE
