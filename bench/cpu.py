"""Where a bench step's CPU time went, for the lines this machine's cores
bound: the client side (the daemon with everything it starts, or the
bench's own child processes for a yardstick), the server (sshd with its
sessions and sftp-servers), the link simulator (a thread of the bench's
own process) and the rest of the machine. On a real deployment the server
and the link are other machines; here they share the same cores.

A process tree's time is read from /proc: each live process's own time
plus that of the children it has reaped (utime, stime, cutime, cstime),
so programs that came and went during the step count through their
parents."""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # it exited meanwhile: its time is in its parent's cutime once reaped
        return None
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces and ")"


def tree_seconds(root: int) -> float:
    """CPU seconds of `root` and its live descendants, each with its reaped children."""
    children: dict[int, list[int]] = {}
    own: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # ppid
        own[int(entry)] = sum(int(x) for x in fields[11:15]) / TICK  # utime, stime, cutime, cstime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += own.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def _busy_and_all() -> tuple[float, float]:
    """Seconds all CPUs were busy, and seconds they existed (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _own_process() -> tuple[float, float]:
    """The bench process's own threads (the simulator's among them), and its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


@dataclass
class CpuSplit:
    """Use as `with CpuSplit(client_pid=..., server_pid=...) as cpu: ...`,
    then cpu.describe(). client_pid None: the client is the bench's own
    children that ran during the step (rsync and its ssh)."""

    server_pid: int
    client_pid: int | None = None
    start: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        busy, everything = _busy_and_all()
        own, reaped = _own_process()
        client = tree_seconds(self.client_pid) if self.client_pid is not None else reaped
        return {"busy": busy, "all": everything, "simulator": own, "client": client,
                "server": tree_seconds(self.server_pid)}

    def __enter__(self) -> "CpuSplit":
        self.start = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._read()
        self.spent = {k: end[k] - self.start[k] for k in end}

    def describe(self, client_name: str) -> str:
        s = self.spent
        rest = s["busy"] - s["client"] - s["server"] - s["simulator"]
        return (f"{100 * s['busy'] / s['all']:.0f}% of the cores busy, CPU s: {client_name} {s['client']:.1f}, "
                f"server {s['server']:.1f}, link simulator {s['simulator']:.1f}, rest {max(rest, 0.0):.1f}")
