"""The daemon's entry point (`anemoned`): fork the spawner (spawner.py)
first, while this process is still small and has one thread, then import
and run the daemon (service.py). Forking the spawner later would make it
a copy of the whole daemon, and every user's program start would pay for
copying that."""
from __future__ import annotations


def main() -> int:
    from . import spawner  # only the standard library and caps.py: cheap to import
    sock, _ = spawner.launch()
    from . import service
    return service.main(spawner_sock=sock)
