from anemoned.logs import format_fields


def test_fields_stay_on_one_line_and_quote_what_needs_it():
    text = format_fields({"dest": "my dest", "user": "bob", "error": 'a "b"\nc=d', "skip": None})
    assert "\n" not in text
    assert text.startswith('dest="my dest" user=bob error=')
    assert "skip" not in text


import logging
import socket
import struct
from pathlib import Path

from logging_journald import JournaldTransport

from anemoned.logs import JournaldHandler, journal_fields, message_id


def _record(name: str, level: int = logging.WARNING, **fields) -> logging.LogRecord:
    record = logging.LogRecord("anemoned", level, __file__, 1, name, (), None)
    record.fields = fields
    return record


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: `KEY=value\\n`, or `KEY\\n` + 64-bit
    little-endian length + value + `\\n` for values with newlines."""
    out, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (n,) = struct.unpack("<Q", datagram[nl + 1:nl + 9])
            value = datagram[nl + 9:nl + 9 + n]
            assert datagram[nl + 9 + n:nl + 10 + n] == b"\n"
            i = nl + 10 + n
        out[key.decode()] = value.decode()
    return out


def test_journal_fields_name_the_facts_operators_filter_on():
    fields = dict(journal_fields(_record("job failed", dest="off site", job=42, kind="sync", user="alice",
                                         outcome="failed", error="unreachable: x", message="not MESSAGE",
                                         skip=None)))
    assert fields["DEST"] == "off site" and fields["JOB"] == "42" and fields["JOB_KIND"] == "sync"
    assert fields["USER_NAME"] == "alice" and fields["OUTCOME"] == "failed"
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "anemoned"
    assert fields["MESSAGE_ID"] == message_id("job failed") != message_id("job succeeded")
    assert len(fields["MESSAGE_ID"]) == 32
    # an event field never overrides journald's own (MESSAGE, PRIORITY, ...)
    assert fields["ANEMONE_MESSAGE"] == "not MESSAGE" and fields["ANEMONE_ERROR"] == "unreachable: x"
    assert fields["MESSAGE"].startswith('job failed dest="off site" job=42')
    assert not any(k.startswith("_") or not k.replace("_", "").isalnum() or k != k.upper() for k in fields)
    assert "ANEMONE_SKIP" not in fields


def test_message_ids_are_stable_across_releases():
    # Operators put these in journalctl filters and alerts: they must not move.
    assert message_id("job failed") == "b00b28636fbe56dfb54315935ea0264f"


def test_handler_speaks_the_native_protocol_to_a_socket(tmp_path: Path):
    path = tmp_path / "socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    handler = JournaldHandler(JournaldTransport(socket_path=path), fallback=open(tmp_path / "stderr", "w"))
    handler.handle(_record("user skipped", dest="d0", user="bob", reason="backup/ is empty\nreally"))
    got = parse_native(server.recv(65536))
    assert got["USER_NAME"] == "bob" and got["DEST"] == "d0"
    assert got["ANEMONE_REASON"] == "backup/ is empty\nreally"  # multi-line values keep their newline
    assert "\n" not in got["MESSAGE"]
    # journald gone: the event still reaches the stream, with its priority
    server.close()
    path.unlink()
    handler.handle(_record("job failed", level=logging.ERROR, dest="d0"))
    handler.fallback.close()
    assert (tmp_path / "stderr").read_text() == "<3>job failed dest=d0\n"


def test_the_readme_lists_true_message_ids():
    import re
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{32})` \|$", readme, re.M)
    assert len(rows) >= 10
    assert all(message_id(name) == mid for name, mid in rows)
    for found in re.findall(r"MESSAGE_ID=([0-9a-f]{32})", readme):
        assert found in {mid for _, mid in rows}
