"""The daemon's side of the spawner (userproc.Spawner) under the traffic
of a large sync: hundreds of users' programs started and killed at once,
from the event loop and from threads, while their exits stream back."""
import os
import threading
import time

import pytest

from anemoned import spawner, userproc
from anemoned.identity import account_identity
from testbed import accounts

THREADS, ROUNDS, BATCH = 48, 2, 20


@pytest.fixture
def client():
    sock, pid = spawner.launch()
    spawned = userproc.Spawner(sock)
    yield spawned
    spawned.close()
    os.waitpid(pid, 0)


def test_starts_and_kills_from_many_threads_while_exits_stream_back_do_not_deadlock(client: userproc.Spawner):
    """Each start and kill is a message to the spawner, and each child it
    kills is an exit message back. A sender must never hold what the
    thread that reads those answers needs: once that thread waits, the
    daemon's queue fills, the spawner blocks answering and stops reading,
    and the sender blocks for ever (W3's 2,000 users hung the daemon, event
    loop and all, while their readers were started and killed by the
    hundreds from the attach threads and the event loop)."""
    identity = account_identity(accounts.for_tree("spawnburst").pw_uid, -1)
    exits: list[int] = []
    lock = threading.Lock()

    def churn() -> None:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for _ in range(ROUNDS):
                batch = [client.start(identity, ["/bin/sleep", "60"], userproc.USER_ENV, null, null, null).result(20)
                         for _ in range(BATCH)]
                for child in batch:
                    child.kill()
                for child in batch:
                    status = child.exited.result(20)
                    with lock:
                        exits.append(status)
        finally:
            os.close(null)
    threads = [threading.Thread(target=churn, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "starts or kills never answered: the spawner's socket deadlocked"
    assert exits == [-9] * (THREADS * ROUNDS * BATCH)
