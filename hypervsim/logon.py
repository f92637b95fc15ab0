"""How a session logged on, and so what it may reach beyond its host (the second hop).

On Windows a WinRM session runs under a logon token made by its authentication. An NTLM or Basic logon (and a
Kerberos one without delegation) holds no credentials it can pass on: from inside it, shares on other machines and
other hosts refuse it. CredSSP hands the host the user's credentials; Kerberos constrained delegation lets the host's
computer account ask for tickets to the services the domain allows it (`cifs/<server>` for a share,
`Microsoft Virtual System Migration Service/<host>` for Move-VM).

A pipeline's commands run "impersonating" their session's logon, as a Windows thread runs under its token: the file
area and the migration checks ask `current()` instead of receiving the logon through every cmdlet.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NTLM, BASIC, CREDSSP, KERBEROS = "NTLM", "Basic", "CredSSP", "Kerberos"
SHARE_SERVICE = "cifs"
MIGRATION_SERVICE = "Microsoft Virtual System Migration Service"


@dataclass(frozen=True)
class Drive:
    """A PowerShell drive on a share, made by New-PSDrive with explicit credentials: Windows connects to the share
    with them (WNetAddConnection2) for this logon session, so the session reaches that one share without any
    credentials of its own to pass on — not a second hop."""

    name: str
    root: str  # \\server\share
    user: str


@dataclass(frozen=True)
class Logon:
    """One session's logon: the mechanism, the account as the client gave it, and the services it may delegate to.

    `delegates_to` holds service classes ("cifs", MIGRATION_SERVICE) for Kerberos constrained delegation; CredSSP
    needs none, as the host holds the credentials themselves.
    """

    mechanism: str
    user: str = ""
    delegates_to: frozenset[str] = frozenset()
    # The session's drives by name (casefolded): runspace state, changed by New-PSDrive / Remove-PSDrive.
    drives: dict[str, Drive] = field(default_factory=dict, compare=False, hash=False)

    def can_reach(self, service: str) -> bool:
        """Whether this logon can authenticate to a service on a third machine."""
        return self.mechanism == CREDSSP or (self.mechanism == KERBEROS and service in self.delegates_to)

    def connected_to(self, root: str) -> bool:
        """Whether this session holds an explicit-credential connection to the share \\\\server\\share."""
        return any(d.root.casefold() == root.casefold() for d in self.drives.values())


# What runs outside any session (scenario seeding, tests calling cmdlets directly) is the host itself: local work
# only ever needed no second hop, so this logon reaches everything the simulator had always let it reach.
LOCAL_SYSTEM = Logon(CREDSSP, "NT AUTHORITY\\SYSTEM")
_current: contextvars.ContextVar[Logon] = contextvars.ContextVar("hypervsim_logon", default=LOCAL_SYSTEM)


def current() -> Logon:
    return _current.get()


@contextmanager
def impersonating(logon: Logon) -> Iterator[Logon]:
    token = _current.set(logon)
    try:
        yield logon
    finally:
        _current.reset(token)
