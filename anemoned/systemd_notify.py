"""sd_notify for Type=notify: READY, STATUS, WATCHDOG, STOPPING.

A thin wrapper over sdnotify that does nothing when NOTIFY_SOCKET is unset,
so the daemon runs the same in the foreground and under systemd.

Sending must never block the event loop: a datagram socket whose reader is
slow (its queue holds only a few messages) would block sendto() forever.
STATUS and WATCHDOG are sent without waiting and dropped if the queue is
full (the next one supersedes them); READY and STOPPING wait up to
IMPORTANT_TIMEOUT_S, since systemd acts on them.
"""
from __future__ import annotations

import logging
import os

import sdnotify

from .logs import event

IMPORTANT_TIMEOUT_S = 2.0
IMPORTANT_ATTEMPTS = 3


class Notifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = None
        if self.enabled:
            try:
                # debug=True: errors reach us instead of vanishing.
                self._notifier = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                event(logging.WARNING, "cannot reach systemd's notify socket", error=exc.strerror)
        self._last_status: str | None = None

    def send(self, *assignments: str, important: bool = False) -> bool:
        """True when the message left (or there is no systemd to tell)."""
        if self._notifier is None:
            return True
        message = "\n".join(assignments)
        for _ in range(IMPORTANT_ATTEMPTS if important else 1):
            try:
                self._notifier.socket.settimeout(IMPORTANT_TIMEOUT_S if important else 0)
                self._notifier.notify(message)
                return True
            except OSError as exc:
                error = exc
        if important:
            event(logging.WARNING, "systemd notification not delivered", message=message.split("\n")[0],
                  error=type(error).__name__)
        return False

    def status(self, line: str) -> None:
        """STATUS=, sent only when it changed (systemctl status shows it);
        one that was dropped (systemd's queue full) is sent again next time."""
        if line != self._last_status and self.send(f"STATUS={line}"):
            self._last_status = line

    def watchdog_interval_s(self) -> float | None:
        """Half the watchdog timeout when systemd asked us (and only us) to
        ping it; None when there is no watchdog."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not self.enabled or not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(int(usec) / 2_000_000, 0.5)
        except ValueError:
            return None
