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

    `delegates_to` holds, for Kerberos, service classes ("cifs", MIGRATION_SERVICE: any server, as a forwarded TGT
    reaches) or service principal names ("cifs/LAB", f"{MIGRATION_SERVICE}/HV02": constrained delegation). CredSSP
    needs none, as the host holds the credentials themselves.
    """

    mechanism: str
    user: str = ""
    delegates_to: frozenset[str] = frozenset()
    # The session's drives by name (casefolded): runspace state, changed by New-PSDrive / Remove-PSDrive.
    drives: dict[str, Drive] = field(default_factory=dict, compare=False, hash=False)

    def can_reach(self, service: str, server: str = "") -> bool:
        """Whether this logon can authenticate to a service (on `server`, when known) on a third machine."""
        if self.mechanism == CREDSSP:
            return True
        if self.mechanism != KERBEROS:
            return False
        return service in self.delegates_to or any(_names(spn, service, server) for spn in self.delegates_to)

    def connected_to(self, root: str) -> bool:
        """Whether this session holds an explicit-credential connection to the share \\\\server\\share."""
        return any(d.root.casefold() == root.casefold() for d in self.drives.values())


def _names(spn: str, service: str, server: str) -> bool:
    """Whether an SPN names the service on the server; `HV02` and `hv02.lab.test` are one computer."""
    spn_service, _, spn_host = spn.partition("/")
    same_host = spn_host.split(".")[0].casefold() == server.split(".")[0].casefold()
    return bool(server) and spn_service.casefold() == service.casefold() and same_host


def kerberos_logon(user: str, ticket: KerberosTicket, delegation: Delegation) -> Logon:
    """A Kerberos logon, with what its host may do with it (MS-SFU).

    A forwarded TGT (unconstrained delegation) reaches any service. Constrained delegation reaches the SPNs the
    domain lists for the host's computer account (msDS-AllowedToDelegateTo), and S4U2proxy needs a forwardable
    ticket as evidence unless the account may use any authentication protocol (protocol transition:
    TrustedToAuthForDelegation, where the host first asks S4U2self for a forwardable ticket itself).
    """
    if ticket.tgt_delegated:
        return Logon(KERBEROS, user, frozenset({SHARE_SERVICE, MIGRATION_SERVICE}))
    if ticket.forwardable or delegation.any_protocol:
        return Logon(KERBEROS, user, frozenset(delegation.allowed_to))
    return Logon(KERBEROS, user)


@dataclass(frozen=True)
class KerberosTicket:
    """What the host learnt from a client's AP-REQ: whether the service ticket was forwardable, and whether the
    client forwarded its TGT with it (GSS_C_DELEG_FLAG)."""

    forwardable: bool
    tgt_delegated: bool


@dataclass(frozen=True)
class Delegation:
    """The Active Directory side of a host's computer account: the SPNs it may delegate to
    (msDS-AllowedToDelegateTo) and whether it may use any authentication protocol (TrustedToAuthForDelegation)."""

    allowed_to: tuple[str, ...] = ()
    any_protocol: bool = False


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
