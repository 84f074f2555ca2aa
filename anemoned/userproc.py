"""Running a program as a user: the daemon's side of the spawner
(spawner.py), and output_of for a program whose output is wanted: a
verify's local hashes (rclone md5sum).

The program is the user's own process: they may stop it (SIGSTOP) or make
it wait forever. So nothing here waits for it without a bound: a start is
a message to the spawner, answered at once with the pid, and what bounds
a running program is silence, not total time (hashing a large tree takes
long, and prints as it goes): no output for idle_timeout_s and it is
killed, with asyncio.TimeoutError, costing that user alone.

The Spawner is used from the event loop (output_of, scans, kills) and
from attach.py's threads alike. Nobody who asks waits on the socket:
requests go into a queue that one thread writes out (the spawner reads
only between answers, so a write may wait), and another thread reads the
answers into concurrent futures, which either side can wait for. That
reader never writes and never waits for a writer: with one lock over both
(before), a few hundred starts and kills at once (W3's 2,000 users)
deadlocked the daemon, event loop included. The futures are marked
running when made, so a caller that stops waiting (asyncio.wait_for's
timeout cancels what it wraps) cannot cancel them: the answer still lands,
and a program that outlived its wait is still killed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import itertools
import json
import logging
import os
import queue
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from .identity import UserIdentity
from .logs import event

#: The whole environment of a user's program.
USER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "HOME": "/"}


class SpawnerGone(RuntimeError):
    """The spawner process is no longer there: no user's program can start."""


#: send() errors that mean the spawner's end is gone (not this request's fault)
_SPAWNER_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF}


def _answer() -> concurrent.futures.Future[Any]:
    """A future for an answer that only the answer settles: running, so
    that cancel() (a waiter's timeout or cancellation) leaves it alone."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()
    return future


@dataclass(eq=False)
class Child:
    """A user's program started by the spawner."""
    pid: int
    spawner: "Spawner"
    #: set to the exit status (subprocess's returncode convention)
    exited: "concurrent.futures.Future[int]" = field(default_factory=_answer)

    def kill(self) -> None:
        """SIGKILL to the program and its process group, unless it has
        already been reaped."""
        if not self.exited.done():
            try:
                self.spawner.send({"op": "kill", "pid": self.pid})
            except (SpawnerGone, OSError):
                pass  # the spawner is gone, and its children died with it (parent-death signal)


class Spawner:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state_lock = threading.Lock()  # starting, running, gone: never held across I/O
        #: (message, its descriptors, the request id a failure is told to)
        self.outbox: queue.SimpleQueue[tuple[bytes, list[int], int | None] | None] = queue.SimpleQueue()
        self.ids = itertools.count(1)
        self.starting: dict[int, concurrent.futures.Future[Child]] = {}
        self.running: dict[int, Child] = {}
        self.gone = self.closing = False
        threading.Thread(target=self._read_answers, name="spawner", daemon=True).start()
        threading.Thread(target=self._write_requests, name="spawner-requests", daemon=True).start()

    def close(self) -> None:
        """The spawner sees the end of its socket and exits, its children with it."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread too; close alone would not
        except OSError:
            pass
        self.outbox.put(None)
        self.sock.close()

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Queued, never waited for: the descriptors are duplicated (the
        caller keeps and closes its own) and closed once sent. A request
        that cannot be sent fails its start (see _write_requests)."""
        if self.gone:
            raise SpawnerGone("the spawner process has exited")
        copies: list[int] = []
        try:
            for fd in fds or []:
                copies.append(os.dup(fd))
        except OSError:
            for fd in copies:
                os.close(fd)
            raise
        self.outbox.put((json.dumps(message).encode(), copies, message.get("id")))

    def start(self, identity: UserIdentity, argv: list[str], env: dict[str, str], stdin: int, stdout: int,
              stderr: int) -> "concurrent.futures.Future[Child]":
        """argv started as identity (own session, cwd /, no capability) on
        these descriptors (the caller keeps and closes its copies)."""
        return self._request({"op": "spawn", "uid": identity.uid, "gid": identity.gid,
                              "groups": list(identity.groups), "argv": argv, "env": env}, [stdin, stdout, stderr])

    def start_scanner(self, trees: list[tuple[UserIdentity, str]], stdout: int) -> "concurrent.futures.Future[Child]":
        """A scanner (treewalk.py) listing each tree as its owner, framed on stdout."""
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            return self._request({"op": "scan", "trees": [scan_entry(i, path) for i, path in trees]},
                                 [null, stdout, null])
        finally:
            os.close(null)

    def _request(self, request: dict[str, Any], fds: list[int]) -> "concurrent.futures.Future[Child]":
        started: concurrent.futures.Future[Child] = _answer()
        request_id = next(self.ids)
        with self.state_lock:  # registered before the answer can arrive
            self.starting[request_id] = started
        try:
            self.send({**request, "id": request_id}, fds)
        except BaseException:
            with self.state_lock:
                self.starting.pop(request_id, None)
            raise
        return started

    def _write_requests(self) -> None:
        while (request := self.outbox.get()) is not None:
            message, fds, request_id = request
            try:
                socket.send_fds(self.sock, [message], fds)
            except OSError as err:
                if err.errno not in _SPAWNER_GONE:  # this request alone (too large, say): its start fails now
                    self._fail(request_id, err)
                # else the spawner is gone: the reader sees its end and fails what waits
            except Exception as err:  # noqa: BLE001 - this thread must outlive any one request
                self._fail(request_id, OSError(f"the request could not be sent: {err!r}"))
            finally:
                for fd in fds:
                    os.close(fd)
        while not self.outbox.empty():  # closed: what came after is never sent
            request = self.outbox.get()
            for fd in request[1] if request is not None else []:
                os.close(fd)

    def _fail(self, request_id: int | None, err: Exception) -> None:
        with self.state_lock:
            started = self.starting.pop(request_id, None) if request_id is not None else None
        if started is not None:
            started.set_exception(err)
        event(logging.ERROR, "a request to the spawner could not be sent", error=repr(err))

    def _read_answers(self) -> None:
        try:
            while answer := self.sock.recv(1 << 16):
                try:
                    self._deliver(json.loads(answer))
                except Exception as err:  # noqa: BLE001 - one bad answer must not stop the others
                    event(logging.ERROR, "the spawner's answer could not be delivered", error=repr(err))
        except OSError:
            pass
        finally:
            self._gone()

    def _gone(self) -> None:
        with self.state_lock:
            self.gone = True
            pending = list(self.starting.values()), list(self.running.values())
            self.starting.clear()
            self.running.clear()
        for started in pending[0]:
            started.set_exception(SpawnerGone("the spawner process has exited"))
        for child in pending[1]:
            child.exited.set_result(-9)  # it died with the spawner (parent-death signal)
        if not self.closing:
            event(logging.ERROR, "the spawner process has exited: users' programs can no longer be started")

    def _deliver(self, answer: dict[str, Any]) -> None:
        if "exited" in answer:
            with self.state_lock:
                child = self.running.pop(answer["exited"], None)
            if child is not None:
                child.exited.set_result(int(answer["status"]))
            return
        with self.state_lock:
            started = self.starting.pop(answer.get("id"), None)
            if started is not None and "pid" in answer:
                child = Child(answer["pid"], self)
                self.running[child.pid] = child
        if started is not None:
            if "pid" in answer:
                started.set_result(child)
            else:
                started.set_exception(OSError(answer.get("error", "the spawner could not start it")))


def scan_entry(identity: UserIdentity, path: str) -> dict[str, Any]:
    """One tree of a scanner's request, as the spawner reads it."""
    return {"uid": identity.uid, "gid": identity.gid, "groups": list(identity.groups), "path": path}


_spawner: Spawner | None = None


def install(spawner: Spawner) -> None:
    """The spawner every user's program starts from (service start-up)."""
    global _spawner
    _spawner = spawner


def spawner() -> Spawner:
    if _spawner is None:
        raise SpawnerGone("no spawner was started (anemoned.launch starts it)")
    return _spawner


async def pipe_reader(loop: asyncio.AbstractEventLoop, fd: int,
                  transports: list[asyncio.BaseTransport]) -> asyncio.StreamReader:
    """A stream over the pipe fd, which it now owns (closed with the transport)."""
    pipe = open(fd, "rb", buffering=0)
    reader = asyncio.StreamReader(limit=1 << 20)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    transports.append(transport)
    return reader


async def output_of(identity: UserIdentity, argv: list[str], idle_timeout_s: float,
                    env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of argv run as identity;
    asyncio.TimeoutError when it says nothing for idle_timeout_s."""
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        started = spawner().start(identity, argv, {**USER_ENV, **(env or {})}, null, out_w, err_w)
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (null, out_w, err_w):
            os.close(fd)
    child: Child | None = None
    out, err = bytearray(), bytearray()
    transports: list[asyncio.BaseTransport] = []
    try:
        stdout = await pipe_reader(loop, out_r, transports)
        out_r = -1
        stderr = await pipe_reader(loop, err_r, transports)
        err_r = -1
        child = await asyncio.wait_for(asyncio.wrap_future(started), idle_timeout_s)

        async def drain_errors() -> None:  # kept to 1 MiB; read to the end so the program never blocks on it
            while chunk := await stderr.read(1 << 16):
                if len(err) < 1 << 20:
                    err.extend(chunk)

        errors = asyncio.ensure_future(drain_errors())
        try:
            while chunk := await asyncio.wait_for(stdout.read(1 << 16), idle_timeout_s):
                out += chunk
            await asyncio.wait_for(errors, idle_timeout_s)
        finally:
            errors.cancel()
        code = await asyncio.wait_for(asyncio.wrap_future(child.exited), idle_timeout_s)
    except BaseException:
        if child is not None:
            child.kill()
        else:
            started.add_done_callback(lambda f: f.exception() is None and f.result().kill())
        raise
    finally:
        for transport in transports:
            transport.close()
        for fd in (out_r, err_r):
            if fd >= 0:
                os.close(fd)
    return code, bytes(out), bytes(err)
