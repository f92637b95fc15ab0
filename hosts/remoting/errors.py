"""Typed failures of talking to a host, each with a `.kind` the pages can name and a message safe to show.

Every message is written here, from facts we choose (address, port, status code, the remote error text): never
from a library's own message, which may quote a request (and so a credential) back at us.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class RemotingError(Exception):
    """Base of every failure of the remoting layer. `str()` is safe to show a user; it never holds a password."""

    kind = "unexpected"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DnsFailure(RemotingError):
    kind = "dns"


class ConnectionRefused(RemotingError):
    kind = "refused"


class ConnectTimeout(RemotingError):
    kind = "timeout"


class TlsVerificationFailed(RemotingError):
    """The server's certificate did not pass the chosen check; `.fingerprint_seen` is what it presented."""

    kind = "tls"

    def __init__(self, message: str, fingerprint_seen: str = "") -> None:
        super().__init__(message)
        self.fingerprint_seen = fingerprint_seen


class AuthenticationFailed(RemotingError):
    kind = "auth"


class CredSSPRefused(RemotingError):
    """The host's WinRM service does not offer CredSSP: its server role is off (Enable-WSManCredSSP -Role Server)."""

    kind = "credssp"


class WinRMFault(RemotingError):
    """The WinRM service answered with a fault (WSMan fault or an HTTP error status) instead of a result."""

    kind = "winrm_fault"

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ConnectionDropped(RemotingError):
    kind = "dropped"


class NotLocalMode(RemotingError):
    """The host's HGS client is in HostGuardianService mode: local guardian operations do not apply there."""

    kind = "not_local"


class UnexpectedReply(RemotingError):
    kind = "unexpected"


class KerberosUnavailable(RemotingError):
    """Kerberos was chosen, but this machine has no GSSAPI library for pyspnego to use."""

    kind = "kerberos"


class KerberosFailed(RemotingError):
    """Kerberos could not get or present a ticket for the host; `kind` says which part failed (the KDC, the clocks,
    a principal the realm does not know, the account, or the host's keys), so the page names the remedy."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class OperationCancelled(RemotingError):
    """The running pipeline was stopped on request (session.stop_current())."""

    kind = "cancelled"


class RemoteCommandError(RemotingError):
    """A cmdlet on the host reported an error: its message and FullyQualifiedErrorId, as PowerShell shows them."""

    kind = "remote"

    def __init__(
        self,
        message: str,
        fqid: str = "",
        category: str = "",
        target: str = "",
        exception_type: str = "",
        command: str = "",
    ) -> None:
        super().__init__(message)
        self.fqid = fqid
        self.category = category
        self.target = target
        self.exception_type = exception_type
        self.command = command

    def __str__(self) -> str:
        where = f"{self.command}: " if self.command else ""
        tail = f" ({self.fqid})" if self.fqid else ""
        return f"{where}{self.message}{tail}"

    def __repr__(self) -> str:
        return f"RemoteCommandError({self.message!r}, fqid={self.fqid!r}, category={self.category!r})"


# Why each kind happens and what to check, for pages that explain a failed test or refresh. Each reads
# "<what happened>: <what to do>" (remedy_action keeps the second part); a translation keeps that colon (": " or "：").
REMEDIES: dict[str, StrOrPromise] = {
    "dns": gettext_lazy("The name does not resolve: check the address, or use the host's IP address."),
    "refused": gettext_lazy(
        "Nothing listens on that port: enable PowerShell remoting (Enable-PSRemoting) and check the firewall "
        "rule and the port (5985 HTTP, 5986 HTTPS)."
    ),
    "timeout": gettext_lazy(
        "The host did not answer in time: check that it is up, reachable, and that no firewall drops packets."
    ),
    "tls": gettext_lazy(
        "The server certificate did not pass the check: upload the right CA bundle or pin the fingerprint shown."
    ),
    "auth": gettext_lazy(
        "The host refused the credentials (HTTP 401): check the user name (DOMAIN\\user or .\\user), the "
        "password, and that the account is an administrator on the host."
    ),
    "credssp": gettext_lazy(
        "The host's WinRM service does not offer CredSSP: turn on its CredSSP server role in an elevated "
        "PowerShell on the host (Enable-WSManCredSSP -Role Server -Force); the console is not Windows and "
        "needs no client role. Or choose another authentication for this host."
    ),
    "winrm_fault": gettext_lazy(
        "The WinRM service answered with a fault: check the WinRM configuration and service on the host."
    ),
    "dropped": gettext_lazy("The connection was lost in the middle of the exchange: try again."),
    "remote": gettext_lazy("A command failed on the host; its message is shown above."),
    "not_local": gettext_lazy(
        "The host's HGS client is in HostGuardianService mode: local guardian operations do not apply."
    ),
    "unexpected": gettext_lazy("The host sent a reply the console cannot read."),
    "cancelled": gettext_lazy("The command was stopped on request."),
    "krb_kdc": gettext_lazy(
        "No KDC of the account's realm answered: check that the console's krb5.conf (KRB5_CONFIG) names the "
        "domain's KDCs (its domain controllers) and that they answer on port 88 from the console and every "
        "worker."
    ),
    "krb_clock": gettext_lazy(
        "The clocks are too far apart for Kerberos (5 minutes by default): synchronise the console's, the "
        "host's and the domain controllers' clocks (NTP; on Windows w32tm /resync)."
    ),
    "krb_principal": gettext_lazy(
        "The realm does not know a name Kerberos needs: write the account as user@REALM (Kerberos takes no "
        "DOMAIN\\user), and register the host by a DNS name its computer account has a service principal for "
        "(setspn -L <computer> lists them)."
    ),
    "krb_account": gettext_lazy(
        "The KDC refused the account: check the password, and that the account is enabled, not locked out and"
        " its password not expired."
    ),
    "krb_ticket": gettext_lazy(
        "The host could not read its Kerberos ticket: its keys differ from the KDC's (a computer account "
        "password reset, or a stale keytab); rejoin the host to the domain or reset its computer account."
    ),
    "kerberos": gettext_lazy(
        "Install the console with its kerberos extra on every web server and worker (pip install "
        "'guardian-console[kerberos]': python-gssapi, which builds against libkrb5-dev) and give them a "
        "krb5.conf for the domain, or choose Negotiate or NTLM."
    ),
}


def remedy_action(kind: str) -> str:
    """What to do about a failure of this kind, without restating it.

    REMEDIES read "<what happened>: <what to do>", and the errors already say what happened (with the address and
    port), so only the part after the first colon is added. A remedy without that part is only a diagnosis, and
    adds nothing to the error."""
    parts = SEPARATOR.split(str(REMEDIES.get(kind, "")), maxsplit=1)
    action = parts[1] if len(parts) == 2 else ""
    return action[:1].upper() + action[1:]


# Between what happened and what to do: ": " in English, "：" (or ": ") in a translation.
SEPARATOR = re.compile(": |：")
