"""Started by rclone as the "ssh" command of a user's tree (see attach.py).

Hands this process's stdin and stdout (rclone's pipes) to the daemon over
its private attach socket, with the grant's token; the daemon connects
them to an sftp-server it starts as the user, so rclone then talks SFTP
straight to that server without a copy in between. Waits for the server's
exit status and exits with it, as ssh would.

Run as `python -I -S relay.py SOCKET TOKEN [what rclone appends]`: only
builtin modules, so it starts in a few milliseconds.
"""
import _socket
import os
import sys


def main() -> int:
    sock_path, token = sys.argv[1], sys.argv[2]
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    conn.connect(sock_path)
    fds = (0).to_bytes(4, sys.byteorder) + (1).to_bytes(4, sys.byteorder)
    conn.sendmsg([token.encode() + b"\n"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    # Our copies must go, or rclone would not see the server's end of file.
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            return 255
        answer += chunk
    try:
        return int(answer.split()[-1]) & 0xFF
    except ValueError:
        return 255


if __name__ == "__main__":
    sys.exit(main())
