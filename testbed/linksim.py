"""A link simulator: a TCP proxy on 127.0.0.1 that makes a loopback
connection look like an internet link.

    with LinkSim("127.0.0.1", sshd.port, delay_s=0.04, bytes_per_s=2_000_000) as link:
        ... connect to 127.0.0.1:link.port instead of the server ...
        link.pause()    # the link goes silent: nothing is forwarded either way
        link.resume()

Each direction is one link shared by every connection through the proxy,
modelled as a FIFO wire: a chunk that arrives at time t starts on the wire
when the wire is free, takes len/bytes_per_s to send, and arrives delay_s
after that. So a request/response pays 2 x delay_s, and all connections
together get bytes_per_s each way, like a real access link. What a
direction may hold in flight is bounded (a real link's buffer): beyond it
the proxy stops reading, so senders feel back-pressure through TCP.

It runs its own asyncio loop in a background thread (start()/stop()), so
that tests and the bench, which are synchronous, can use it.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

#: Chunks are at most this large, so that one connection's bulk data does
#: not hold the shared wire for long (serialisation granularity).
CHUNK = 16 * 1024


@dataclass
class Direction:
    """One direction of the link, shared by all connections."""

    delay_s: float
    bytes_per_s: float | None
    wire_free_at: float = 0.0  # when the wire finishes sending what it has
    bytes_forwarded: int = 0
    buffer_limit: int = field(init=False)

    def __post_init__(self) -> None:
        self.configure(self.delay_s, self.bytes_per_s)

    def configure(self, delay_s: float, bytes_per_s: float | None) -> None:
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s
        # Room for what is on the wire (bandwidth x delay) plus a queue, so
        # that the buffer never limits throughput below the cap.
        in_flight = (bytes_per_s or 50_000_000) * max(delay_s, 0.01)
        self.buffer_limit = int(2 * in_flight) + 256 * 1024

    def schedule(self, arrived: float, size: int) -> float:
        """When a chunk of `size` bytes that reached the link at `arrived`
        comes out of the other end (monotonic seconds)."""
        if self.bytes_per_s:
            start = max(arrived, self.wire_free_at)
            self.wire_free_at = start + size / self.bytes_per_s
            return self.wire_free_at + self.delay_s
        return arrived + self.delay_s


class LinkSim:
    """A delaying, bandwidth-capped, pausable TCP proxy to host:port."""

    def __init__(self, target_host: str, target_port: int, delay_s: float = 0.0, bytes_per_s: float | None = None,
                 listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.up = Direction(delay_s, bytes_per_s)  # client -> target
        self.down = Direction(delay_s, bytes_per_s)  # target -> client
        self.port = 0
        self.connections = 0  # accepted so far
        self.open_connections = 0
        self.peak_connections = 0  # most open at once since start or reset_peak()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._running: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control, from any thread ------------------------------------------

    def start(self) -> "LinkSim":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="linksim", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop = None

    def pause(self) -> None:
        """From now on nothing is forwarded, in either direction, on any
        connection (they stay open): a link that went silent."""
        self._call(lambda: self._running.clear())  # type: ignore[union-attr]

    def resume(self) -> None:
        self._call(lambda: self._running.set())  # type: ignore[union-attr]

    def configure(self, delay_s: float | None = None, bytes_per_s: float | None = None) -> None:
        """Change the delay and/or the cap (both directions) from now on."""
        def apply() -> None:
            for d in (self.up, self.down):
                d.configure(d.delay_s if delay_s is None else delay_s,
                            d.bytes_per_s if bytes_per_s is None else bytes_per_s)
        self._call(apply)

    def reset_peak(self) -> None:
        """Count the most connections open at once from now on."""
        self._call(lambda: setattr(self, "peak_connections", self.open_connections))

    def _call(self, fn) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None, "start() first"
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def __enter__(self) -> "LinkSim":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the proxy, in the simulator's loop ------------------------------------

    async def _listen(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        try:
            try:
                target_r, target_w = await asyncio.open_connection(*self.target)
            except OSError:
                client_w.close()
                return
            try:
                await asyncio.gather(self._pipe(client_r, target_w, self.up), self._pipe(target_r, client_w, self.down))
            finally:
                for w in (client_w, target_w):
                    w.close()
        except (asyncio.CancelledError, OSError):  # a peer gone mid-way (ConnectionError, ENOTCONN)
            pass
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        """Forward reader -> writer through `direction`: each chunk is
        delivered at the time the link schedules for it."""
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        queued = 0
        more = asyncio.Event()  # something was queued, or the source ended
        room = asyncio.Event()  # the buffer has room again
        room.set()
        ended = False

        async def read() -> None:
            nonlocal queued, ended
            try:
                while True:
                    await room.wait()
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    queue.append((direction.schedule(time.monotonic(), len(data)), data))
                    queued += len(data)
                    if queued >= direction.buffer_limit:
                        room.clear()
                    more.set()
            except ConnectionError:
                pass
            finally:
                ended = True
                more.set()

        async def write() -> None:
            nonlocal queued
            assert self._running is not None
            while True:
                if not queue:
                    if ended:
                        break
                    more.clear()
                    await more.wait()
                    continue
                due, data = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._running.wait()  # paused: hold everything
                queue.popleft()
                writer.write(data)
                await writer.drain()
                direction.bytes_forwarded += len(data)
                queued -= len(data)
                if queued < direction.buffer_limit:
                    room.set()
            if writer.can_write_eof():
                writer.write_eof()  # half-close: the other direction may still talk

        reading = asyncio.ensure_future(read())
        try:
            await write()
        except OSError:  # the peer went away (reset, or not connected any more at half-close)
            pass
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
