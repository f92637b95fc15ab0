"""Remoting: the one way the console talks to Hyper-V hosts — PowerShell remoting (PSRP over WinRM) with pypsrp,
sending cmdlets and parameters only, never script text.

    from hosts.remoting import ConnectionSpec, open_session, catalog
    with open_session(spec, log=log) as session:
        facts = session.run(catalog.TestConnection())
"""

from __future__ import annotations

from . import catalog
from .connection import ConnectionSpec, normalise_fingerprint, peer_fingerprint
from .errors import RemotingError
from .operation import SWITCH, Cmd, Operation, PipelineResult, Secret, render_powershell
from .session import HostSession, open_session

__all__ = [
    "SWITCH",
    "Cmd",
    "ConnectionSpec",
    "HostSession",
    "Operation",
    "PipelineResult",
    "RemotingError",
    "Secret",
    "catalog",
    "normalise_fingerprint",
    "open_session",
    "peer_fingerprint",
    "render_powershell",
]
