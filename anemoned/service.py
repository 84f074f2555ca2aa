"""Composition root: load config, open state, serve the socket, run jobs and
the scheduler, talk to systemd, and shut down cleanly on SIGTERM.

Exit status: 0 after a clean stop, 1 when start-up was impossible (bad
config, rclone missing or too old, another daemon on the socket).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import __version__, access, caps, crash, restore_job, spawner, sync_job, usage_job, userproc, verify_job
from .api import data, dest, job, notify, status  # noqa: F401 (each registers its methods)
from .api import dispatch as api_dispatch, views
from .api.context import Context, Runtime
from .attach import AttachServer, find_sftp_server
from .config import DEFAULT_CONFIG_PATH, RESTART_ONLY, Config, ConfigError, load_config
from .jobs import JobOutcome, JobQueue
from .jobtypes import Job, JobKind, Trigger
from .logs import event, set_level, setup_logging
from .monitoring import Monitor
from .protocol import Request
from .rclone_version import RcloneUnusable, check_rclone
from .schedule_loop import ScheduleLoop
from .server import AlreadyRunning, Peer, RpcServer
from .store import Store, StoreError
from .jobrunner import JobContext
from .systemd_notify import Notifier


class Daemon:
    """The daemon's parts, wired together, and their lifecycle."""

    def __init__(self, config_path: str, config: Config, rclone_binary: str, rclone_version: str,
                 sftp_server: str) -> None:
        self.config_path = config_path
        self.runtime = Runtime(config, rclone_binary, rclone_version)
        self.notifier = Notifier()
        self.stopping = asyncio.Event()
        #: why the daemon stops on its own (a crashed background task); None: asked to stop
        self.failure: str | None = None
        self.ready = False
        self._reloading: asyncio.Task[None] | None = None
        prepare_data_dir(config)
        self.store = Store(config.state_db)
        access.write_known_hosts(config, self.store.destination_rows())
        self.attach = AttachServer(config.data_dir / "attach", sftp_server)
        self.server = RpcServer(config.socket, config.socket_group, self.dispatch)
        job_functions = {
            JobKind.SYNC: self._job(sync_job.run),
            JobKind.RESTORE: self._job(restore_job.run),
            JobKind.VERIFY: self._job(verify_job.run),
            JobKind.USAGE: self._job(usage_job.run),
        }
        self.monitor = Monitor(self.store, lambda: self.config, on_change=self.refresh_status,
                               tz=lambda: self.schedules.zone())
        self.jobs = JobQueue(self.store, config.max_concurrent_syncs, job_functions, on_change=self.refresh_status,
                             on_finished=self._job_finished, on_prune=self._remove_job_logs,
                             on_started=self.monitor.job_started, on_crash=self._crashed)
        self.schedules = ScheduleLoop(self.store, self.jobs, lambda: self.config.timezone, self.refresh_status)
        self.api = Context(self.runtime, self.store, self.jobs, self.schedules, self.monitor,
                           self.destinations_changed)
        self.interrupted = self.jobs.recover()
        if self.interrupted:
            event(logging.WARNING, "jobs interrupted by the last stop", jobs=",".join(map(str, self.interrupted)))

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def dispatch(self, request: Request, peer: Peer) -> Any:
        return await api_dispatch.dispatch(self.api, request, peer.uid, os.getuid())

    def destinations_changed(self) -> None:
        self.schedules.wake.set()
        self.monitor.wake.set()
        self.monitor.write_metrics()
        self.refresh_status()

    def status_line(self) -> str:
        return views.status_line(self.api)

    # -- jobs ------------------------------------------------------------------

    def _job(self, fn: Callable[[JobContext], Awaitable[JobOutcome]]) -> Callable[..., Awaitable[JobOutcome]]:
        """A job function bound to the daemon's current config and rclone."""
        async def run(job: Job, report: Callable[[dict[str, Any]], None]) -> JobOutcome:
            return await fn(JobContext(self.config, self.store, self.runtime.rclone_binary, self.attach, job, report,
                                       self.job_log_path(job.id)))
        return run

    def _catch_up_interrupted(self) -> None:
        """A sync cut short by a crash or stop runs again soon after start-up:
        the backup it was making is still wanted."""
        for job_id in self.interrupted:
            row = self.store.job_row(job_id)
            job = Job.from_row(row) if row is not None else None
            if job is None or job.kind != JobKind.SYNC or job.dry_run:
                continue
            dest = self.store.destination_row(job.destination)
            if dest is not None and dest["enabled"]:
                self.jobs.submit(job.destination, JobKind.SYNC, False, trigger=Trigger.CATCH_UP, options=job.options)

    def _job_finished(self, job: Job) -> None:
        self.schedules.job_finished(job)
        self.monitor.job_finished(job)

    def job_log_path(self, job_id: int) -> Path:
        return self.config.job_logs_dir / f"{job_id}.log"

    def _remove_job_logs(self, ids: list[int]) -> None:
        for job_id in ids:
            self.job_log_path(job_id).unlink(missing_ok=True)

    def refresh_status(self) -> None:
        self.notifier.status(self.status_line())

    # -- lifecycle ----------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self.server.start()
        self.attach.start()
        self.jobs.pump()  # queued work from before a restart
        self._catch_up_interrupted()
        event(logging.INFO, "anemoned ready", version=__version__, rclone=self.runtime.rclone_version,
              socket=str(self.config.socket), data_dir=str(self.config.data_dir))
        # The metrics file before READY: once the unit is up, node_exporter finds it.
        self.monitor.write_metrics()
        # READY only now: the socket accepts connections.
        self.notifier.send("READY=1", f"STATUS={self.status_line()}", important=True)
        self.ready = True
        loops = [asyncio.create_task(self._supervised(name, coro)) for name, coro in (
            ("watchdog", self._watchdog()), ("scheduler", self.schedules.run()), ("monitor", self.monitor.run()))]
        try:
            await self.stopping.wait()
        finally:
            self.notifier.send("STOPPING=1", "STATUS=stopping", important=True)
            event(logging.INFO, "anemoned stopping")
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._reloading is not None:
                self._reloading.cancel()
            await self.jobs.shutdown()  # running jobs stopped and recorded
            await self.monitor.close()  # notifications already on their way
            await self.server.close()
            self.attach.close()
            self.store.close()
            event(logging.INFO, "anemoned stopped")

    def _supervised(self, name: str, loop: Awaitable[None]) -> Awaitable[None]:
        return crash.supervised(name, loop, self._crashed)

    def _crashed(self, exc: BaseException, name: str = "job queue") -> None:
        error_id, where = crash.describe(exc)
        event(logging.CRITICAL, "background task crashed; stopping", task=name, error=type(exc).__name__, where=where,
              error_id=error_id)
        self.failure = f"{name} crashed (error id {error_id})"
        self.stopping.set()

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is None:
            return
        while True:
            # The ping comes from the event loop itself: if the loop is
            # stuck, systemd notices and restarts us.
            self.notifier.send("WATCHDOG=1")
            self.refresh_status()
            await asyncio.sleep(interval)

    def _on_sighup(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._supervised("reload", self.reload()))

    async def reload(self) -> None:
        """SIGHUP: read the config again; a bad file changes nothing. Off
        the event loop: checking a new rclone runs it (up to 30 s)."""
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as err:
            event(logging.ERROR, "config reload refused; keeping the running config", path=self.config_path,
                  problems="; ".join(err.problems))
            return
        kept = [k for k in RESTART_ONLY if getattr(new, k) != getattr(self.config, k)]
        if kept:
            event(logging.WARNING, "config keys need a restart to change; keeping running values", keys=",".join(kept))
            new = replace(new, **{k: getattr(self.config, k) for k in kept})
        if new.rclone_binary() != self.runtime.rclone_binary:
            try:
                self.runtime.rclone_version = await asyncio.to_thread(check_rclone, new.rclone_binary())
                self.runtime.rclone_binary = new.rclone_binary()  # type: ignore[assignment]
            except RcloneUnusable as err:
                event(logging.ERROR, "config reload refused; keeping the running config", problems=str(err))
                return
        self.runtime.config = new
        set_level(new.log_level)
        self.jobs.set_max_concurrent(new.max_concurrent_syncs)
        await self.schedules.refresh_zone()  # the zone may have changed
        event(logging.INFO, "config reloaded", path=self.config_path)
        self.refresh_status()


def prepare_data_dir(config: Config) -> None:
    """data_dir and certs/ exist with tight modes (certs/ holds the key)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    config.certs_dir.mkdir(exist_ok=True, mode=0o700)
    config.certs_dir.chmod(0o700)
    config.job_logs_dir.mkdir(exist_ok=True, mode=0o750)
    config.tmp_dir.mkdir(exist_ok=True, mode=0o700)
    config.restore_dir.mkdir(exist_ok=True, mode=0o700)
    config.tmp_dir.chmod(0o700)


def trim_capabilities() -> None:
    """Drop every capability (caps.trim): users' programs are started by
    the spawner, which keeps what that takes. Say so when users' trees
    cannot be read as their owners at all. A daemon run as root keeps
    CAP_SETUID, CAP_SETGID and CAP_KILL: root owns what it needs anyway."""
    if os.getuid() != 0 and not (caps.has(caps.CAP_SETUID) and caps.has(caps.CAP_SETGID)):
        event(logging.WARNING, "no CAP_SETUID/CAP_SETGID: users' trees cannot be read as their owners, so no "
              "user is backed up (run the daemon as the shipped unit does)")
    try:
        caps.trim(caps.KEPT if os.getuid() == 0 else ())
    except OSError as err:
        event(logging.WARNING, "could not trim capabilities", error=err.strerror or str(err))


def main(argv: list[str] | None = None, spawner_sock: socket.socket | None = None) -> int:
    if spawner_sock is None:  # run as `python -m anemoned.service`, not through anemoned.launch
        spawner_sock, _ = spawner.launch()
    parser = argparse.ArgumentParser(prog="anemoned", description="Anemone backup daemon")
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help=f"YAML config file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--version", action="version", version=f"anemoned {__version__}")
    args = parser.parse_args(argv)
    setup_logging("info")
    try:
        config = load_config(args.config)
        setup_logging(config.log_level)
        binary = config.rclone_binary()
        version = check_rclone(binary)
        assert binary is not None
        sftp_server = find_sftp_server()
        if sftp_server is None:
            raise RcloneUnusable("OpenSSH's sftp-server is not installed (Debian: apt-get install "
                                 "openssh-sftp-server); users' trees are read through it")
        daemon = Daemon(args.config, config, binary, version, sftp_server)
        userproc.install(userproc.Spawner(spawner_sock))
        trim_capabilities()  # before any child starts
    except ConfigError as err:
        for problem in err.problems:
            event(logging.ERROR, "invalid configuration", path=err.source, problem=problem)
        return 1
    except (RcloneUnusable, StoreError) as err:
        event(logging.ERROR, "cannot start", reason=str(err))
        return 1
    except OSError as err:  # data_dir not writable, and the like
        event(logging.ERROR, "cannot start", reason=f"{err.strerror}: {err.filename}" if err.filename else str(err))
        return 1
    except Exception as err:  # a corrupt state.db, and what nobody foresaw: one line, never a traceback
        event(logging.ERROR, "cannot start", reason=f"{type(err).__name__}: {err}", where=crash.where(err))
        return 1
    try:
        asyncio.run(daemon.run())
    except AlreadyRunning as err:
        event(logging.ERROR, "cannot start", reason=str(err))
        return 1
    except OSError as err:  # the socket's directory not ours, and the like
        event(logging.ERROR, "cannot start" if not daemon.ready else "stopped by an error",
              reason=f"{err.strerror}: {err.filename}" if err.filename else str(err))
        return 1
    except Exception as err:
        event(logging.ERROR, "cannot start" if not daemon.ready else "stopped by an error",
              reason=type(err).__name__, where=crash.where(err))
        return 1
    if daemon.failure is not None:
        event(logging.ERROR, "anemoned stopped by an error; exiting with status 1", reason=daemon.failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
