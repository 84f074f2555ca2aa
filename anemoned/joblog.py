"""The log of one job: rclone's JSON records and the daemon's notes, as
JSON lines in data_dir/job-logs/ID.log, capped in bytes."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

#: Per-job log files are capped; the rest of a huge log is dropped with a note.
JOB_LOG_MAX_BYTES = 8 * 1024 * 1024


class JobLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("w", encoding="utf-8")
        os.chmod(path, 0o640)
        self.written = 0
        self.truncated = False

    def write(self, record: dict[str, Any]) -> None:
        if self.truncated:
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        size = len(line.encode())
        if self.written + size > JOB_LOG_MAX_BYTES:
            self.file.write(json.dumps({"level": "notice", "msg": "log truncated: the rest of rclone's log was dropped"}) + "\n")
            self.truncated = True
            return
        self.file.write(line)
        self.written += size

    def note(self, msg: str, **fields: Any) -> None:
        # UTC to the millisecond, as rclone stamps its own records: the
        # log reads as one timeline.
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self.write({"level": "notice", "msg": msg, "time": stamp, **fields})

    def close(self) -> None:
        self.file.close()
