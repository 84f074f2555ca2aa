"""A hostile SFTP server, run by a real sshd as its sftp subsystem
(subsystem_command; tests/integration/test_rclone_settle.py): it answers
like an empty, writable server, but refuses every upload after HOLD_S
with a status message of MESSAGE_BYTES control characters. rclone quotes
the message, escaped to five bytes a character, in its error and in every
report after it: lines of over 1 MiB, longer than the daemon reads
(rclone.LINE_LIMIT). Only the standard library: sshd runs it as the login
user with the system's python3.
"""
from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

MESSAGE_BYTES = 250_000
HOLD_S = 1.5
# SFTP packet types (draft-ietf-secsh-filexfer-02) and status codes
INIT, VERSION, OPEN, CLOSE, LSTAT, SETSTAT, FSETSTAT, OPENDIR, READDIR, REMOVE, MKDIR, REALPATH, STAT = \
    1, 2, 3, 4, 7, 9, 10, 11, 12, 13, 14, 16, 17
STATUS, HANDLE, NAME, ATTRS = 101, 102, 104, 105
OK, EOF, NO_SUCH_FILE, FAILURE, UNSUPPORTED = 0, 1, 2, 4, 8
#: a directory's attributes: permissions and times
DIRECTORY = struct.pack(">IIII", 0x4 | 0x8, 0o40755, 1_000_000_000, 1_000_000_000)


def serve(read, write) -> None:  # type: ignore[no-untyped-def]
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = read(n - len(data))
            if not more:
                raise SystemExit(0)
            data += more
        return data

    def string(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    def send(kind: int, payload: bytes) -> None:
        write(struct.pack(">IB", len(payload) + 1, kind) + payload)

    def status(request: int, code: int, message: bytes = b"") -> None:
        send(STATUS, struct.pack(">II", request, code) + string(message) + string(b""))

    while True:
        (length,) = struct.unpack(">I", exactly(4))
        body = exactly(length)
        if body[0] == INIT:
            send(VERSION, struct.pack(">I", 3))
            continue
        kind, (request,) = body[0], struct.unpack(">I", body[1:5])
        (size,) = struct.unpack(">I", body[5:9]) if len(body) >= 9 else (0,)
        path = body[9:9 + size]
        if kind == REALPATH:
            name = b"/" if path in (b"", b".") else path
            send(NAME, struct.pack(">II", request, 1) + string(name) + string(name) + DIRECTORY)
        elif kind in (STAT, LSTAT):
            # Names with a dot are files, and there are none; the rest are
            # directories that exist.
            if b"." in path.rsplit(b"/", 1)[-1]:
                status(request, NO_SUCH_FILE, b"No such file")
            else:
                send(ATTRS, struct.pack(">I", request) + DIRECTORY)
        elif kind == OPENDIR:
            send(HANDLE, struct.pack(">I", request) + string(b"d%d" % request))
        elif kind == READDIR:
            status(request, EOF, b"EOF")
        elif kind in (CLOSE, SETSTAT, FSETSTAT, MKDIR):
            status(request, OK, b"OK")
        elif kind == OPEN:  # an upload: refused, late and at length
            time.sleep(HOLD_S)
            status(request, FAILURE, b"\x01" * MESSAGE_BYTES)
        elif kind == REMOVE:
            status(request, NO_SUCH_FILE, b"No such file")
        else:
            status(request, UNSUPPORTED, b"unsupported")


def main() -> None:
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()
    serve(sys.stdin.buffer.read, write)



def subsystem_command() -> str:
    """The sshd_config Subsystem command that runs this server."""
    return f"/usr/bin/python3 {Path(__file__).resolve()}"


if __name__ == "__main__":
    main()
