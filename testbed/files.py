"""File-tree helpers for the tests and the benchmark."""
from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, data: str | bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def sparse(path: Path, size: int) -> None:
    """A file of `size` zero bytes that takes no disk space locally (large
    transfers to test cancel and faults without writing gigabytes here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, whole-second mtime) of every regular file."""
    return {str(p.relative_to(root)): (p.read_bytes(), int(p.stat().st_mtime))
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """relative path -> (size, mtime, first 64 bytes): cheap for huge files."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                out[str(p.relative_to(root))] = (p.stat().st_size, int(p.stat().st_mtime), f.read(64))
    return out
