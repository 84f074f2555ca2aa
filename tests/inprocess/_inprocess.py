"""Shared pieces of the in-process tier: a temporary store with a
destination in it."""
from __future__ import annotations

from pathlib import Path

from anemoned.destinations import Destination
from anemoned.store import Store


def store_with(tmp_path: Path, *names: str, **fields: object) -> Store:
    store = Store(tmp_path / "state.db")
    for name in names:
        store.insert_destination(Destination(name=name, host="127.0.0.1", port=22, user="u", auth="key",
                                             key_file="certs/rclone_key", remote_path="/r", enabled=True,
                                             host_key=None, **fields).to_row())  # type: ignore[arg-type]
    return store
