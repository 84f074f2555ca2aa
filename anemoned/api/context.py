"""What a handler may act on: the daemon's parts, not the daemon."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..config import Config
from ..jobs import JobQueue
from ..monitoring import Monitor
from ..schedule_loop import ScheduleLoop
from ..store import Store


@dataclass
class Runtime:
    """What SIGHUP may change; service.py replaces the values in place."""

    config: Config
    rclone_binary: str
    rclone_version: str
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Context:
    runtime: Runtime
    store: Store
    jobs: JobQueue
    schedules: ScheduleLoop
    monitor: Monitor
    #: tell the scheduler, the monitor and systemd's status that a
    #: destination was added, changed or removed
    destinations_changed: Callable[[], None]

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def rclone_binary(self) -> str:
        return self.runtime.rclone_binary
