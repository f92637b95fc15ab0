"""Moving private keys safely, shared by the guardian workflows (escrow, import, restore, reset, migrate): PFX
passwords only over a protected session, temporary PFX files on the host that are removed on every path, failure
included, and a strong generated password."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ReadFileBytes,
    RemoveFiles,
)
from hosts.remoting.errors import RemotingError
from jobs.kinds import JobFailed

LogFn = Callable[[str, str], None]


def _no_log(text: str, level: str = "info") -> None:
    return None


def require_protected_transport(session: Any) -> None:
    """PFX passwords and private keys travel only over an encrypted session whose server is authenticated.

    The remoting layer already refuses Basic over HTTP; what is left to refuse is HTTPS without any check of the
    host's certificate, where anyone in the middle could read the password.
    """
    spec = getattr(session, "spec", None)
    if spec is None:
        return
    if spec.https and spec.cert_check == "none":
        raise JobFailed(
            f"{spec.display} is registered with certificate checking off, so the console cannot be sure it is "
            "talking to the host; it will not send a PFX password there. Edit the host to check its certificate "
            "(CA bundle or pinned fingerprint), or use HTTP with Negotiate (message-encrypted)."
        )


def strong_password() -> str:
    return secrets.token_urlsafe(32)


def temp_pfx_paths() -> list[str]:
    tag = secrets.token_hex(8)
    return [f"{TEMP_DIR}\\gc-{tag}-signing.pfx", f"{TEMP_DIR}\\gc-{tag}-encryption.pfx"]


@contextmanager
def temporary_files(session: Any, host: Any, paths: list[str], log: LogFn) -> Iterator[list[str]]:
    """Yield the paths; afterwards remove those files from the host whatever happened, reconnecting once if the
    connection broke. Files that cannot be removed are named, with the command to remove them by hand."""
    try:
        yield paths
    finally:
        remove_temporary_files(session, host, paths, log)


def remove_temporary_files(session: Any, host: Any, paths: list[str], log: LogFn) -> None:
    for attempt in (1, 2):
        try:
            left = session.run(RemoveFiles(paths))
        except RemotingError as exc:
            if attempt == 1:
                log(f"Removing the temporary PFX files failed ({exc}); reconnecting to try again", "warning")
                reopen(session)
                continue
            left = paths
        if not left:
            log(f"Temporary PFX files removed from {host}", "info")
            return
        break
    names = ", ".join(f"'{p}'" for p in paths)
    log(
        f"Could not remove the temporary PFX files from {host}. Remove them by hand now, they hold private keys: "
        f"Remove-Item -LiteralPath {names} -Force",
        "error",
    )


def reopen(session: Any) -> None:
    try:
        session.close()
        session.open()
    except RemotingError:
        pass  # the next run() reports the failure


def read_bytes(session: Any, path: str) -> bytes:
    data: bytes = session.run(ReadFileBytes(path))
    if not data:
        raise JobFailed(f"The exported file {path} came back empty; nothing was stored.")
    return data


def is_thumbprint(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789ABCDEF" for c in value)


def transport_warnings(host: Any) -> list[str]:
    if host.transport == "https" and host.cert_check == "none":
        return [
            f"{host} is registered with certificate checking off: the job will refuse to send a PFX password there. "
            "Edit the host to check its certificate first."
        ]
    return []
