"""The data directory (CONSOLE_VAR_DIR) holds the SQLite database with its WAL (live session keys among the rows),
the logs, the development keys and the demo lab's PFX files: none of it is for other users of the machine.

Every process of the console imports the `console` package first (manage.py and the test suite through the
settings, daphne through console.asgi, Celery through console.celery), and the package sets the umask there with
`keep_private()`: whatever these processes create, the database and its WAL included, is 0600 (directories 0700).
Directories the console makes itself are also chmod-ed explicitly, for a process started some other way.
`runconsole` refuses to serve a database that an older run left readable (`exposed_database_files`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

PRIVATE_UMASK = 0o077
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def keep_private() -> None:
    """Files this process creates from now on are its user's alone."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Make `path` (and parents) if needed; the directory itself ends 0700 whoever made it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def open_to_others(path: Path) -> bool:
    """Can anyone but the owner read or write it (group or other bits)?"""
    return path.exists() and bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def exposed_database_files(database: dict[str, Any]) -> list[Path]:
    """The SQLite database's files (database, WAL, shared memory, journal) that others may read; [] for PostgreSQL,
    whose files are the server's business."""
    if not str(database.get("ENGINE", "")).endswith("sqlite3"):
        return []
    name = str(database["NAME"])
    return [Path(name + suffix) for suffix in SQLITE_COMPANIONS if open_to_others(Path(name + suffix))]
