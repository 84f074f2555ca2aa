"""The daemon's side of the spawner (userproc.Spawner) under the traffic
of a large sync: hundreds of users' programs started and killed at once,
from the event loop and from threads, while their exits stream back;
and what a connection to a user's tree gets once the spawner is gone."""
import asyncio
import concurrent.futures
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator

import pytest

from anemoned import attach, userproc
from anemoned.identity import account_identity
from testbed import accounts

THREADS, ROUNDS, BATCH = 48, 1, 20
Start = Callable[..., "concurrent.futures.Future[userproc.Child]"]


@pytest.fixture
def start(spawned: tuple[userproc.Spawner, int]) -> Iterator[Start]:
    """Starts argv as a test account, on /dev/null (the answer's future)."""
    client = spawned[0]
    identity = account_identity(accounts.for_tree("spawned").pw_uid, -1)
    null = os.open(os.devnull, os.O_RDWR)

    def start(*argv: str) -> "concurrent.futures.Future[userproc.Child]":
        return client.start(identity, list(argv), userproc.USER_ENV, null, null, null)
    yield start
    os.close(null)


def test_starts_and_kills_from_many_threads_while_exits_stream_back_do_not_deadlock(start: Start):
    """Each start and kill is a message to the spawner, and each child it
    kills is an exit message back. The thread that reads those answers
    must never wait for a sender, nor send itself (half the kills here are
    sent from it, by callbacks): once it waits, the daemon's queue fills,
    the spawner blocks answering and stops reading, and the sender blocks
    for ever (W3's 2,000 users hung the daemon, event loop and all, while
    their readers were started and killed by the hundreds from the attach
    threads and the event loop)."""
    exits: list[int] = []
    lock = threading.Lock()

    def churn(by_callback: bool) -> None:
        for _ in range(ROUNDS):
            starts = [start("/bin/sleep", "60") for _ in range(BATCH)]
            if by_callback:  # killed as soon as it started, from the thread that reads the answers
                for started in starts:  # (as output_of and the scanner clean up after a failure)
                    started.add_done_callback(lambda f: f.result().kill())
            batch = [started.result(50) for started in starts]
            if not by_callback:
                for child in batch:
                    child.kill()
            for child in batch:
                status = child.exited.result(50)
                with lock:
                    exits.append(status)
    threads = [threading.Thread(target=churn, args=(i % 2 == 0,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "starts or kills never answered: the spawner's socket deadlocked"
    assert exits == [-9] * (THREADS * ROUNDS * BATCH)


def test_a_wait_that_gives_up_cancels_nothing(start: Start):
    """asyncio.wait_for cancels what it waits for when it times out; the
    spawner's answers must still land: a program that outlived its wait
    is still killed (its exit was no longer "pending", so the kill was
    never sent), and one that ends afterwards does not break the thread
    that reads the answers (setting a cancelled future raises there,
    and every later start would have waited for ever)."""
    stubborn, brief = start("/bin/sleep", "60").result(10), start("/bin/sleep", "3").result(10)

    async def give_up_on(*children: userproc.Child) -> None:
        for child in children:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(child.exited), 0.2)
    asyncio.run(give_up_on(stubborn, brief))
    stubborn.kill()
    assert stubborn.exited.result(10) == -9
    assert brief.exited.result(10) == 0
    assert start("/bin/true").result(10).exited.result(10) == 0


def test_a_request_the_socket_cannot_carry_fails_its_start_at_once(start: Start):
    """A start too large for one message (an argv of 300 KB) is refused
    by the socket: its start fails with that error, instead of waiting for
    an answer that can never come, and the next start is answered."""
    with pytest.raises(OSError) as refused:
        start("/bin/true", "x" * 300_000).result(10)
    assert refused.value.errno == errno.EMSGSIZE  # not TimeoutError (an OSError too): no answer came
    assert start("/bin/true").result(10).exited.result(10) == 0


def test_a_reader_asked_for_after_the_spawner_died_is_refused_not_a_crashed_thread(
        spawned: tuple[userproc.Spawner, int], tmp_path):
    """rclone may still open a connection to a user's tree while the
    daemon goes down (its spawner dies first) or after the spawner died:
    the relay gets exit 1, as for any refused reader, and the attach
    thread ends cleanly (SpawnerGone is not an OSError: it escaped as an
    uncaught exception, a traceback on the journal for every connection)."""
    client, pid = spawned
    sftp_server = attach.find_sftp_server()
    assert sftp_server is not None
    server = attach.AttachServer(tmp_path / "attach", sftp_server)
    server.start()
    uncaught: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: uncaught.append(args.exc_value)
    try:
        identity = account_identity(accounts.for_tree("spawned").pw_uid, -1)
        grant = server.grant(identity, tmp_path, writable=True)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not client.gone and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.gone
        relay = subprocess.run([sys.executable, "-I", "-S", attach.RELAY, str(server.sock_path), grant.token],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        assert relay.returncode == 1
        deadline = time.monotonic() + 30  # the attach thread ends after its answer
        while any(t.name == "attach-conn" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert uncaught == []
    finally:
        threading.excepthook = hook
        server.close()
