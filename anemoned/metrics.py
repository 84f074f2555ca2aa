"""Prometheus metrics for node_exporter's textfile collector.

Built from the state database every time (nothing to keep in step) and
written with prometheus_client's write_to_textfile, which writes a
temporary file beside the target and renames it over, so node_exporter
never reads half a file. Every series has the label `destination`. Names
follow Prometheus' conventions: base units (`_seconds`, `_bytes`) as
suffixes, no `_total` since none of these is a counter (the job history
is bounded, so totals could go down).

| metric | meaning |
|---|---|
| anemone_destination_enabled | 1 when the destination is enabled |
| anemone_destination_overdue | 1 when the destination is overdue |
| anemone_last_success_timestamp_seconds | end of the last successful sync (absent before one) |
| anemone_last_sync_timestamp_seconds | end of the last sync, whatever its outcome |
| anemone_last_sync_success | 1 when the last sync succeeded, else 0 |
| anemone_last_sync_duration_seconds | how long the last sync ran |
| anemone_last_sync_files_transferred, anemone_last_sync_transferred_bytes, anemone_last_sync_files_deleted | what it did |
| anemone_remote_free_bytes, anemone_remote_size_bytes | the server's free and total space (last usage job) |
| anemone_remote_backup_bytes | bytes under backup/ on the server (last usage job) |
| anemone_remote_usage_timestamp_seconds | when that usage was measured |
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from .destinations import Destination
from .jobtypes import JobKind
from .store import Store

LABELS = ("destination",)
#: name -> help, in the order they are written
GAUGES = {
    "anemone_destination_enabled": "1 when the destination is enabled.",
    "anemone_destination_overdue": "1 when the destination's last successful sync is older than allowed.",
    "anemone_last_success_timestamp_seconds": "End of the last successful sync (not a dry run), Unix time.",
    "anemone_last_sync_timestamp_seconds": "End of the last sync (not a dry run), Unix time.",
    "anemone_last_sync_success": "1 when the last sync succeeded, else 0.",
    "anemone_last_sync_duration_seconds": "How long the last sync ran.",
    "anemone_last_sync_files_transferred": "Files the last sync transferred.",
    "anemone_last_sync_transferred_bytes": "Bytes the last sync transferred.",
    "anemone_last_sync_files_deleted": "Files the last sync deleted on the server.",
    "anemone_remote_free_bytes": "Free space on the server, from the last usage job.",
    "anemone_remote_size_bytes": "Total space on the server, from the last usage job.",
    "anemone_remote_backup_bytes": "Bytes under backup/ on the server, from the last usage job.",
    "anemone_remote_usage_timestamp_seconds": "When the last usage job measured the server, Unix time.",
}


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def destination_samples(dest: Destination, overdue: bool, last_sync: dict[str, Any] | None,
                        last_success: dict[str, Any] | None, usage: dict[str, Any] | None) -> dict[str, float]:
    """metric name -> value for one destination; a metric with nothing to
    say (no sync yet, no usage measured) is left out. Pure."""
    out: dict[str, float | None] = {
        "anemone_destination_enabled": float(dest.enabled),
        "anemone_destination_overdue": float(overdue),
        "anemone_last_success_timestamp_seconds": _ts(last_success["finished_at"]) if last_success else None,
    }
    if last_sync is not None:
        stats = last_sync["stats"] or {}
        started, finished = _ts(last_sync["started_at"]), _ts(last_sync["finished_at"])
        out.update({
            "anemone_last_sync_timestamp_seconds": finished,
            "anemone_last_sync_success": float(last_sync["state"] == "succeeded"),
            "anemone_last_sync_duration_seconds": stats.get("duration_s") if "duration_s" in stats else
            (finished - started if started and finished else None),
            "anemone_last_sync_files_transferred": stats.get("files_transferred"),
            "anemone_last_sync_transferred_bytes": stats.get("bytes_transferred"),
            "anemone_last_sync_files_deleted": stats.get("files_deleted"),
        })
    if usage is not None:
        stats = usage["stats"] or {}
        out.update({
            "anemone_remote_free_bytes": stats.get("free_bytes"),
            "anemone_remote_size_bytes": stats.get("total_bytes"),
            "anemone_remote_backup_bytes": stats.get("backup_bytes"),
            "anemone_remote_usage_timestamp_seconds": _ts(usage["finished_at"]),
        })
    return {k: float(v) for k, v in out.items() if v is not None}


def collect(store: Store, overdue_of: Callable[[Destination], Any]) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, doc, LABELS, registry=registry) for name, doc in GAUGES.items()}
    for row in store.destination_rows():
        dest = Destination.from_row(row)
        last_sync = store.last_real_finished_row(dest.name, JobKind.SYNC)
        usage = store.last_real_success_row(dest.name, JobKind.USAGE)
        samples = destination_samples(dest, overdue_of(dest) is not None, last_sync,
                                      store.last_real_success_row(dest.name, JobKind.SYNC), usage)
        for name, value in samples.items():
            gauges[name].labels(destination=dest.name).set(value)
    return registry


def write(path: Path, registry: CollectorRegistry) -> None:
    """Atomically replace the file (temporary name beside it, then rename)."""
    write_to_textfile(str(path), registry)
