"""The spawner: the one process that starts programs as users.

It is forked from the daemon at launch (anemoned.launch), before the
daemon has imported or allocated much, and serves it over a socketpair
for as long as the daemon lives. Why a process of its own:

- Speed. Every user's program (a reader's sftp-server, verify's md5sum)
  and every scanner (treewalk.py) is a fork of this small, single-threaded process
  (~14 MB) instead of the daemon (~40 MB and a dozen threads). A fork that
  changes uid cannot use vfork, so its cost is the page tables copied:
  at a few hundred users a sync, that was most of a nothing-changed sync.
- Rights. Only the spawner keeps CAP_SETUID, CAP_SETGID and CAP_KILL; the
  daemon drops every capability once the spawner runs. The process that
  parses RPC requests, YAML and rclone's output holds none.
- It never waits for a child: between the uid change and exec the user
  owns the child and may stop it. The spawner forks, answers with the pid
  and goes on; the exit status follows when the child is reaped.

Protocol (SOCK_SEQPACKET, one JSON object a message; only the daemon holds
the other end):

    daemon -> spawner  {"op": "spawn", "id": N, "uid", "gid", "groups",
                        "argv", "env"}  with three fds: stdin, stdout, stderr
                       {"op": "scan", "id": N, "trees": [{"uid", "gid",
                        "groups", "path"}...]}  with the same three fds: a
                        scanner (treewalk.py) for those trees
                       {"op": "kill", "pid": P}
    spawner -> daemon  {"id": N, "pid": P}  or  {"id": N, "error": "..."}
                       {"exited": P, "status": S}   (S as subprocess's
                        returncode: the exit code, or minus the signal)

A kill is only ever carried out on a child not yet reaped (one already
on its way as the child exits could reach a new child only if the
kernel's pid counter wrapped in between). The spawner dies with the
daemon (parent-death signal, and end of file on its socket), and its
children with it (theirs).
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
from typing import Any

from . import caps, treewalk

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_MAX_MESSAGE = 1 << 20


def launch() -> tuple[socket.socket, int]:
    """Fork the spawner: the daemon's end of its socket, and its pid. Call
    it before threads start (the child runs Python after fork)."""
    daemon_end, spawner_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    daemon_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        daemon_end.close()
        try:
            _serve(spawner_end, daemon_pid)
        finally:
            os._exit(0)
    spawner_end.close()
    daemon_end.set_inheritable(False)
    return daemon_end, pid


def _serve(sock: socket.socket, daemon_pid: int) -> None:
    caps._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != daemon_pid:
        return
    # systemd's SIGTERM (and a terminal's ^C) are for the daemon: it stops
    # its jobs in order; the spawner goes when the daemon's end closes.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        caps.trim()
    except OSError:
        pass
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()
    try:
        while True:
            ready, _, _ = select.select([sock, wake_r], [], [])
            if wake_r in ready:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            _reap(sock, children)
            if sock in ready:
                msg, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 3)
                if not msg:
                    return  # the daemon is gone
                try:
                    _handle(sock, json.loads(msg), fds, children)
                finally:
                    for fd in fds:
                        os.close(fd)
    finally:
        for pid in children:
            _kill(pid)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        pass  # the daemon is gone; the loop ends at its end of file


def _handle(sock: socket.socket, request: dict[str, Any], fds: list[int], children: set[int]) -> None:
    if request.get("op") == "kill":
        if request.get("pid") in children:
            _kill(request["pid"])
        return
    if len(fds) != 3:
        _send(sock, {"id": request.get("id"), "error": "three descriptors expected"})
        return
    try:
        pid = os.fork()
    except OSError as err:
        _send(sock, {"id": request["id"], "error": f"fork: {err.strerror}"})
        return
    if pid == 0:
        if request.get("op") == "scan":
            _scan(request, fds)
        _exec_as(request, fds)  # never returns
    children.add(pid)
    _send(sock, {"id": request["id"], "pid": pid})


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(sock, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _kill(pid: int) -> None:
    """The child and its process group (it leads one: the user may have
    started more in it). Both, because a child killed before its setsid
    has no group yet."""
    for kill, target in ((os.kill, pid), (os.killpg, pid)):
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _child_setup(fds: list[int]) -> int:
    """In a forked child: a session of its own, default signals, the given
    descriptors as 0, 1 and 2 and no other; the spawner's pid."""
    spawner_pid = os.getppid()
    os.setsid()
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    high = [os.dup(fd) for fd in fds]  # above 2, whatever numbers they came with
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    return spawner_pid


def _scan(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: the scanner. It keeps the spawner's uid and
    capabilities (it switches file-system identity per tree) and runs no
    other program."""
    try:
        spawner_pid = _child_setup(fds)
        caps._libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        caps._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != spawner_pid:
            os._exit(1)
        # One open directory per level of a deep tree.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        os.chdir("/")
        treewalk.scan_trees(request["trees"], 1)
    except BaseException as err:  # noqa: BLE001 (reported on the scanner's stderr)
        try:
            os.write(2, f"scanner: {err}\n".encode(errors="replace"))
        finally:
            os._exit(1)
    os._exit(0)


def _exec_as(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the user, with no capability and no way
    to gain one, on the given descriptors, and exec. Exit 127 (with the
    reason on stderr) when any step fails."""
    argv = [str(a) for a in request["argv"]]
    try:
        spawner_pid = _child_setup(fds)
        os.setgroups([int(g) for g in request["groups"]])
        os.setresgid(int(request["gid"]), int(request["gid"]), int(request["gid"]))
        os.setresuid(int(request["uid"]), int(request["uid"]), int(request["uid"]))
        caps._capset(0, 0, 0)  # a non-root daemon's capabilities survive setresuid
        caps._libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        # After the uid change: a change of credentials clears the setting.
        caps._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != spawner_pid:
            os._exit(1)
        os.chdir("/")
        os.execve(argv[0], argv, {str(k): str(v) for k, v in request["env"].items()})
    except BaseException as err:  # noqa: BLE001 (reported on the child's stderr)
        try:
            os.write(2, f"cannot start {argv[0] if argv else '?'}: {err}\n".encode(errors="replace"))
        finally:
            os._exit(127)
