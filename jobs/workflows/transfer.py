"""Moving private keys safely, shared by the guardian workflows (escrow, import, restore, reset, migrate): PFX
passwords only over a protected session, a strong generated password, temporary PFX files on the host that are
removed on every path, failure included, and the operations that move those files, built in one place (`PfxFiles`)
so that a job and its Show PowerShell send the same ones. `run_in_order` is how a plan's operations run."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ExportPfx,
    ImportPfx,
    ReadFileBytes,
    RemoveFiles,
    WriteFileBytes,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Operation, Secret, render_powershell
from hosts.remoting.session import HostSession
from jobs.kinds import JobFailed, forget_temporary_files, note_temporary_files

from .powershell import sample_pfx_paths, sample_token

log = logging.getLogger(__name__)

# Show PowerShell reads a pair's PFX bytes into, and writes them from, these variables (signing, encryption).
PFX_VARIABLES = ("$signingPfx", "$encryptionPfx")

# Called with each operation of a plan and its answer as it arrives: logs the progress, or stops the plan (JobFailed).
Answered = Callable[[Operation[Any], object], None]


def require_protected_transport(session: HostSession) -> None:
    """PFX passwords and private keys travel only over an encrypted session whose server is authenticated.

    The remoting layer already refuses Basic over HTTP; what is left to refuse is HTTPS without any check of the
    host's certificate, where anyone in the middle could read the password.
    """
    spec = session.spec
    if spec.https and spec.cert_check == "none":
        raise JobFailed(
            _(
                "%(host)s is registered with certificate checking off, so the console cannot be sure it is talking "
                "to the host; it will not send a PFX password there. Edit the host to check its certificate (CA "
                "bundle or pinned fingerprint), or use HTTP with Negotiate (message-encrypted)."
            )
            % {"host": spec.display}
        )


def strong_password() -> str:
    return secrets.token_urlsafe(32)


def temp_pfx_paths() -> list[str]:
    tag = secrets.token_hex(8)
    return [f"{TEMP_DIR}\\gc-{tag}-signing.pfx", f"{TEMP_DIR}\\gc-{tag}-encryption.pfx"]


@dataclass(frozen=True)
class PfxFiles:
    """A pair's two PFX files on a host for a few seconds, signing first: their temporary paths, the password that
    opens them and, for an import, the bytes written there."""

    paths: tuple[str, str]
    password: Secret
    data: tuple[bytes, bytes] = field(default=(b"", b""), repr=False)

    @classmethod
    def fresh(cls, data: tuple[bytes, bytes] = (b"", b""), password: str = "") -> PfxFiles:
        """Random paths for a job; a strong generated password unless the files come with their own (an import)."""
        signing, encryption = temp_pfx_paths()
        return cls((signing, encryption), Secret(password or strong_password()), data)

    @classmethod
    def sample(cls) -> PfxFiles:
        """For Show PowerShell: sample paths that run as shown, the password a prompt, the bytes variables."""
        signing, encryption = sample_pfx_paths(sample_token())
        return cls((signing, encryption), Secret(""))

    def export(self, signing_thumbprint: str, encryption_thumbprint: str) -> list[Operation[Any]]:
        """Both certificates, with their private keys, from the store into the files."""
        thumbprints = (signing_thumbprint, encryption_thumbprint)
        return [ExportPfx(tp, path, self.password) for tp, path in zip(thumbprints, self.paths, strict=True)]

    def read_back(self) -> list[Operation[Any]]:
        return [ReadFileBytes(path) for path in self.paths]

    def write(self) -> list[Operation[Any]]:
        return [WriteFileBytes(path, data) for path, data in zip(self.paths, self.data, strict=True)]

    def import_into_store(self, exportable: bool = False) -> list[Operation[Any]]:
        return [ImportPfx(path, self.password, exportable) for path in self.paths]

    def remove(self) -> RemoveFiles:
        return RemoveFiles(list(self.paths))

    def variables(self) -> dict[str, str]:
        """The Show PowerShell variable of each file's bytes, by path."""
        return dict(zip(self.paths, PFX_VARIABLES, strict=True))


def run_in_order(
    session: HostSession, host: Host, operations: Sequence[Operation[Any]], answered: Answered | None = None
) -> list[object]:
    """Run a plan's operations one after the other and return their answers; `answered` sees each as it arrives.

    A RemoveFiles of the plan is owed from the first operation that names one of its files: when a later operation
    fails (or is cancelled), the owed files are removed before the error goes on, so no private key stays behind.
    """
    answers: list[object] = []
    owed: list[RemoveFiles] = []
    try:
        for op in operations:
            if isinstance(op, RemoveFiles):
                owed = [removal for removal in owed if removal is not op]
                answers.append(remove_temporary_files(session, host, op.paths))
                continue
            newly = [r for r in operations if isinstance(r, RemoveFiles) and r not in owed and names_any(op, r.paths)]
            for removal in newly:  # should the job be lost from here on, its explanation names these files
                note_temporary_files(host, removal.paths)
            owed += newly
            answer = session.run(op)
            if answered is not None:
                answered(op, answer)
            answers.append(answer)
    except BaseException:
        for removal in owed:
            remove_temporary_files(session, host, removal.paths)
        raise
    return answers


def names_any(op: Operation[Any], paths: list[str]) -> bool:
    """Does the operation name one of these files (and so may have written it)?"""
    return any(value in paths for statement in op.statements() for cmd in statement for value in cmd.params.values())


def remove_temporary_files(session: HostSession, host: Host, paths: list[str]) -> list[str]:
    """Remove the files, reconnecting once if the connection broke; returns those left behind. Files that cannot be
    removed are named in the log, with the command to remove them by hand."""
    for attempt in (1, 2):
        try:
            left = session.run(RemoveFiles(paths))
        except RemotingError as exc:
            if attempt == 1:
                log.warning(
                    _("Removing the temporary PFX files failed (%(error)s); reconnecting to try again"), {"error": exc}
                )
                reopen(session)
                continue
            left = paths
        if not left:
            forget_temporary_files(host, paths)
            log.info(_("Temporary PFX files removed from %(host)s"), {"host": host})
            return []
        break
    log.error(
        _(
            "Could not remove the temporary PFX files from %(host)s. Remove them by hand now, they hold private "
            "keys: %(command)s"
        ),
        {"host": host, "command": "; ".join(render_powershell(RemoveFiles(paths)))},
    )
    return paths


def reopen(session: HostSession) -> None:
    try:
        session.close()
        session.open()
    except RemotingError:
        pass  # the next run() reports the failure


def is_thumbprint(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789ABCDEF" for c in value)


def transport_warnings(host: Host) -> list[str]:
    if host.transport == "https" and host.cert_check == "none":
        return [
            _(
                "%(host)s is registered with certificate checking off: the job will refuse to send a PFX password "
                "there. Edit the host to check its certificate first."
            )
            % {"host": host}
        ]
    return []
