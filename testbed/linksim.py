"""A link simulator: a TCP proxy on 127.0.0.1 that makes a loopback
connection look like an internet link.

    with LinkSim("127.0.0.1", sshd.port, delay_s=0.04, bytes_per_s=2_000_000) as link:
        # (return_delay_s=...: another one-way delay from the server back)
        ... connect to 127.0.0.1:link.port instead of the server ...
        link.pause()    # the link goes silent: nothing is forwarded either way
        link.resume()

Each direction is one link shared by every connection through the proxy,
modelled as a FIFO wire: a chunk that arrives at time t starts on the wire
when the wire is free, takes len/bytes_per_s to send, and arrives its
direction's one-way delay after that (delay_s; from the target back,
return_delay_s when given). So a request/response pays delay_s plus the
return delay (2 x delay_s by default), and all connections
together get bytes_per_s each way, like a real access link. What a
direction may hold in flight is bounded (a real link's buffer): beyond it
the proxy stops reading, so senders feel back-pressure through TCP.

It runs its own asyncio loop in a background thread (start()/stop()), so
that tests and the bench, which are synchronous, can use it. Its proxy is
built on asyncio protocols with one timer per direction of a connection
(for its oldest chunk), not on streams with a task per direction: on W4's
160 connections the stream version took 22 s of the 2 CPUs' time and
delivered chunks 3-5 ms late on average, adding to every round trip of
ours and not of rsync's one connection; the protocol version took 15 s.
"""
from __future__ import annotations

import asyncio
import collections
import threading
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
                 listen_port: int = 0, return_delay_s: float | None = None) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.up = Direction(delay_s, bytes_per_s)  # client -> target
        self.down = Direction(delay_s if return_delay_s is None else return_delay_s, bytes_per_s)  # target -> client
        self.port = 0
        self.connections = 0  # accepted so far
        self.open_connections = 0
        self.peak_connections = 0  # most open at once since start or reset_peak()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._running = True  # False: paused (read in the simulator's loop)
        self._pairs: set[_Pair] = set()
        self._connecting: set[asyncio.Future[None]] = set()  # connections to the target under way

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
        self._call(lambda: self._set_running(False))

    def resume(self) -> None:
        self._call(lambda: self._set_running(True))

    def configure(self, delay_s: float | None = None, bytes_per_s: float | None = None,
                  return_delay_s: float | None = None) -> None:
        """Change the delays and/or the cap from now on: delay_s both ways
        unless return_delay_s is given for the way back; the cap both ways."""
        back = delay_s if return_delay_s is None else return_delay_s

        def apply() -> None:
            for d, delay in ((self.up, delay_s), (self.down, back)):
                d.configure(d.delay_s if delay is None else delay,
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
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientSide(self), "127.0.0.1", self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        for pair in list(self._pairs):
            pair.abort()
        await self._server.wait_closed()

    def _set_running(self, running: bool) -> None:
        self._running = running
        if running:
            for pair in self._pairs:
                pair.up.arm()
                pair.down.arm()

    def _opened(self, pair: "_Pair") -> None:
        self._pairs.add(pair)
        self.connections += 1
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)

    def _closed(self, pair: "_Pair") -> None:
        self._pairs.discard(pair)
        self.open_connections -= 1


class _Pipe:
    """One direction of one proxied connection: what its source sent, held
    until the link delivers it (one timer, for the oldest chunk)."""

    def __init__(self, sim: LinkSim, direction: Direction, pair: "_Pair") -> None:
        self.sim, self.direction, self.pair = sim, direction, pair
        self.loop = asyncio.get_running_loop()
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.timer: asyncio.TimerHandle | None = None
        self.writable = True  # the destination's socket takes more
        self.ended = False  # the source sent its end of file, or went away
        self.done = False  # and all it sent was delivered (or can't be)
        self.reading_paused = False

    def feed(self, data: bytes) -> None:
        if self.done:  # its destination went away: what still arrives goes nowhere
            return
        now = self.loop.time()  # time.monotonic(), the clock Direction uses
        for i in range(0, len(data), CHUNK):
            piece = data[i:i + CHUNK]
            self.queue.append((self.direction.schedule(now, len(piece)), piece))
            self.queued += len(piece)
        if self.queued >= self.direction.buffer_limit and self.source is not None and not self.reading_paused:
            self.source.pause_reading()  # a full link buffer: the sender feels TCP back-pressure
            self.reading_paused = True
        self.arm()

    def arm(self) -> None:
        if self.timer is None and self.queue and self.sim._running and self.writable:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)

    def flush(self) -> None:
        self.timer = None
        if not self.sim._running or not self.writable or self.dest is None:
            return  # paused: hold everything (resume arms again)
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            self.dest.write(data)
            self.direction.bytes_forwarded += len(data)
            self.queued -= len(data)
        if self.reading_paused and self.queued < self.direction.buffer_limit and self.source is not None:
            self.source.resume_reading()
            self.reading_paused = False
        if self.queue:
            self.arm()
        elif self.ended:
            self.finish()

    def end(self) -> None:
        self.ended = True
        if not self.queue:
            self.finish()

    def abandon(self) -> None:
        """Its destination went away: nothing more can be delivered."""
        self.queue.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.ended = True
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.dest is not None and not self.dest.is_closing() and self.dest.can_write_eof():
            try:
                self.dest.write_eof()  # half-close: the other direction may still talk
            except OSError:  # the peer is gone (reset, ENOTCONN): nothing more to talk
                self.pair.abort()
                return
        self.pair.maybe_close()


class _Pair:
    """An accepted connection and the proxy's connection to the target."""

    def __init__(self, sim: LinkSim) -> None:
        self.sim = sim
        self.up = _Pipe(sim, sim.up, self)
        self.down = _Pipe(sim, sim.down, self)
        self.client: asyncio.Transport | None = None
        self.target: asyncio.Transport | None = None
        self.closed = False

    def maybe_close(self) -> None:
        if self.up.done and self.down.done:
            self.abort(graceful=True)

    def abort(self, graceful: bool = False) -> None:
        for pipe in (self.up, self.down):
            if pipe.timer is not None:
                pipe.timer.cancel()
                pipe.timer = None
        for transport in (self.client, self.target):
            if transport is not None and not transport.is_closing():
                transport.close() if graceful else transport.abort()
        if not self.closed:
            self.closed = True
            self.sim._closed(self)


class _Side(asyncio.Protocol):
    """One end of a proxied pair: what it sends goes into `incoming`, and
    `outgoing` delivers to it."""

    def __init__(self, pair: _Pair, incoming: _Pipe, outgoing: _Pipe) -> None:
        self.pair, self.incoming, self.outgoing = pair, incoming, outgoing

    def data_received(self, data: bytes) -> None:
        self.incoming.feed(data)

    def eof_received(self) -> bool:
        self.incoming.end()
        return True  # half-close: it may still be written to

    def pause_writing(self) -> None:
        self.outgoing.writable = False

    def resume_writing(self) -> None:
        self.outgoing.writable = True
        self.outgoing.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.end()
        self.outgoing.abandon()


class _ClientSide(_Side):
    """An accepted connection; it connects to the target for its pair."""

    def __init__(self, sim: LinkSim) -> None:
        pair = _Pair(sim)
        super().__init__(pair, pair.up, pair.down)
        self.sim = sim

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # until the target answers
        self.pair.client = self.pair.up.source = self.pair.down.dest = transport
        self.sim._opened(self.pair)
        connecting = asyncio.ensure_future(self._connect())
        self.sim._connecting.add(connecting)
        connecting.add_done_callback(self.sim._connecting.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _TargetSide(self.pair), *self.sim.target)
        except OSError:
            self.pair.abort()
            return
        if self.pair.client is not None and not self.pair.client.is_closing():
            self.pair.client.resume_reading()


class _TargetSide(_Side):
    """The proxy's connection to the target."""

    def __init__(self, pair: _Pair) -> None:
        super().__init__(pair, pair.down, pair.up)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.pair.closed:  # the client went away while we connected
            transport.abort()
            return
        self.pair.target = self.pair.down.source = self.pair.up.dest = transport
        self.pair.up.arm()
