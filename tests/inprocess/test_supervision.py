"""Background loops are supervised: an unexpected exception is told (the
daemon then stops, exit 1), never swallowed; a cancelled loop is just
cancelled. A STATUS systemd's queue dropped is sent again."""
from __future__ import annotations

import asyncio

import pytest

from anemoned import crash
from anemoned.systemd_notify import Notifier


def test_a_loop_that_raises_is_reported_with_its_name():
    told: list[tuple[str, str]] = []

    async def scheduler() -> None:
        await asyncio.sleep(0)
        raise KeyError("stored value")

    asyncio.run(crash.supervised("scheduler", scheduler(), lambda exc, name: told.append((name, type(exc).__name__))))
    assert told == [("scheduler", "KeyError")]


def test_a_cancelled_loop_is_not_a_crash():
    told: list[str] = []

    async def main() -> None:
        task = asyncio.create_task(crash.supervised("monitor", asyncio.sleep(60), lambda e, n: told.append(n)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(main())
    assert told == []


def test_where_names_file_line_function_and_no_values():
    def inner(secret: str) -> None:
        raise ValueError(secret)
    try:
        inner("token-123")
    except ValueError as exc:
        where = crash.where(exc)
    assert "test_supervision.py:" in where and where.endswith(":inner") and "token-123" not in where


class FlakySocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail_next = True

    def settimeout(self, _t: float) -> None:
        pass


class FakeSdNotifier:
    def __init__(self) -> None:
        self.socket = FlakySocket()

    def notify(self, message: str) -> None:
        if self.socket.fail_next:
            self.socket.fail_next = False
            raise BlockingIOError("queue full")
        self.socket.sent.append(message)


def test_a_dropped_status_is_sent_again():
    notifier = Notifier()
    fake = FakeSdNotifier()
    notifier._notifier = fake  # type: ignore[assignment]
    notifier.status("1 destination; idle")  # dropped: systemd's queue was full
    notifier.status("1 destination; idle")  # same line: sent now
    notifier.status("1 destination; idle")  # and not again
    assert fake.socket.sent == ["STATUS=1 destination; idle"]
