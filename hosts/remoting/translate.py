"""Turn what pypsrp, requests and the host raise into the console's typed errors.

Messages are composed here from safe facts only (address, port, HTTP status, the remote cmdlet's own error
text). Library messages are not reused: requests and pypsrp quote URLs, user names and response bodies.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import ParseError

import requests
from django.utils.translation import gettext as _
from pypsrp.exceptions import (
    AuthenticationError,
    WinRMTransportError,
    WSManFaultError,
)
from requests_credssp.exceptions import AuthenticationException as CredSSPAuthenticationError
from requests_credssp.exceptions import NTStatusException
from urllib3 import exceptions as u3

from .errors import (
    AuthenticationFailed,
    ConnectionDropped,
    ConnectionRefused,
    ConnectTimeout,
    CredSSPRefused,
    DnsFailure,
    KerberosFailed,
    RemoteCommandError,
    RemotingError,
    TlsVerificationFailed,
    UnexpectedReply,
    WinRMFault,
)
from .psobjects import prop, text, type_names

if TYPE_CHECKING:
    from .connection import ConnectionSpec

# System.Management.Automation.ErrorCategory, by value.
ERROR_CATEGORIES = [
    "NotSpecified",
    "OpenError",
    "CloseError",
    "DeviceError",
    "DeadlockDetected",
    "InvalidArgument",
    "InvalidData",
    "InvalidOperation",
    "InvalidResult",
    "InvalidType",
    "MetadataError",
    "NotImplemented",
    "NotInstalled",
    "ObjectNotFound",
    "OperationStopped",
    "OperationTimeout",
    "SyntaxError",
    "ParserError",
    "PermissionDenied",
    "ResourceBusy",
    "ResourceExists",
    "ResourceUnavailable",
    "ReadError",
    "WriteError",
    "FromStdErr",
    "SecurityError",
    "ProtocolError",
    "ConnectionError",
    "AuthenticationError",
    "LimitsExceeded",
    "QuotaExceeded",
    "NotEnabled",
]

# MIT Kerberos error codes (krb5.h) that say which part of a Kerberos logon failed, with the failure's kind. The krb5
# package carries them as `err_code` (the AS exchange: the TGT), python-gssapi as the minor status `min_code` (the
# service ticket and the host's answer to it, unsigned).
KRB5_FAILURES = {
    -1765328228: "krb_kdc",  # KRB5_KDC_UNREACH: Cannot contact any KDC for realm
    -1765328230: "krb_kdc",  # KRB5_REALM_UNKNOWN: Cannot find KDC for requested realm
    -1765328164: "krb_kdc",  # KRB5_REALM_CANT_RESOLVE: Cannot resolve network address for KDC in realm
    -1765328347: "krb_clock",  # KRB5KRB_AP_ERR_SKEW: Clock skew too great
    -1765328351: "krb_clock",  # KRB5KRB_AP_ERR_TKT_NYV: Ticket not yet valid (the KDC ahead of the host)
    -1765328236: "krb_clock",  # KRB5_KDCREP_SKEW: Clock skew too great in KDC reply
    -1765328378: "krb_principal",  # KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: Client not found in Kerberos database
    -1765328377: "krb_principal",  # KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: Server not found in Kerberos database
    -1765328360: "krb_account",  # KRB5KDC_ERR_PREAUTH_FAILED: Preauthentication failed (wrong password)
    -1765328353: "krb_account",  # KRB5KRB_AP_ERR_BAD_INTEGRITY: the reply did not decrypt (wrong password)
    -1765328366: "krb_account",  # KRB5KDC_ERR_CLIENT_REVOKED: disabled or locked out
    -1765328361: "krb_account",  # KRB5KDC_ERR_KEY_EXP: Password has expired
    -1765328343: "krb_ticket",  # KRB5KRB_AP_ERR_MODIFIED: the host's key does not open the ticket
    -1765328340: "krb_ticket",  # KRB5KRB_AP_ERR_BADKEYVER: the host has no key of the ticket's version
    -1765328339: "krb_ticket",  # KRB5KRB_AP_ERR_NOKEY: the host has no key for the ticket
}
KRB5_SERVER_UNKNOWN = -1765328377
KRB5_TICKET_NOT_YET_VALID = -1765328351

# WSMan fault codes that mean something more specific than "a fault".
WSMAN_ACCESS_DENIED = "5"
WSMAN_UNKNOWN_SHELL = "2150858843"
# What a host answers to a message encrypted for a connection it has closed (reproduced with hypervsim's idle timeout).
UNDECRYPTABLE = "encrypted message cannot be decrypted"
# requests-credssp's words when the host's 401 does not list CredSSP among its schemes.
CREDSSP_NOT_OFFERED = "available authentication method"
_FINGERPRINT_GOT = re.compile(r'got "?([0-9a-fA-F:]{40,})"?')


def _chain(err: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and urllib3's `.reason` links, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                todo.append(arg)


def remoting_error(err: BaseException, spec: ConnectionSpec) -> RemotingError:
    """Map any exception raised while talking to `spec` to a typed error with a user-safe message."""
    where = f"{spec.address}:{spec.port}"
    chain = list(_chain(err))

    def has(*types: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, types)), None)

    kerberos = _kerberos_failure(chain, spec)
    if kerberos is not None:
        return kerberos
    if has(AuthenticationError):
        return AuthenticationFailed(
            _("%(where)s refused the credentials of %(account)s (HTTP 401).")
            % {"where": where, "account": repr(spec.username)}
        )
    credssp = has(CredSSPAuthenticationError, NTStatusException)
    if credssp is not None:
        return _credssp_error(credssp, spec)
    tls = has(ssl.SSLError, u3.SSLError, requests.exceptions.SSLError)
    if tls is not None:
        return _tls_error(tls, spec)
    if has(u3.NameResolutionError, socket.gaierror):
        return DnsFailure(_("The name %(address)s could not be resolved.") % {"address": repr(spec.address)})
    if has(ConnectionRefusedError):
        return ConnectionRefused(
            _("%(where)s refused the connection: nothing listens there, or a firewall rejects it.") % {"where": where}
        )
    if has(requests.exceptions.ConnectTimeout, u3.ConnectTimeoutError) and not has(u3.NewConnectionError):
        return ConnectTimeout(_("%(where)s did not accept a connection within the connect timeout.") % {"where": where})
    if has(requests.exceptions.ReadTimeout, u3.ReadTimeoutError, socket.timeout, TimeoutError):
        return ConnectTimeout(_("%(where)s stopped answering (read timeout).") % {"where": where})
    fault = has(WSManFaultError)
    transport = has(WinRMTransportError)
    if fault is not None:
        status = getattr(transport, "code", 0) if transport is not None else 0
        return _wsman_fault(fault, where, status)  # type: ignore[arg-type]
    if transport is not None:
        code = getattr(transport, "code", 0)
        return WinRMFault(
            _("%(where)s answered HTTP %(code)s instead of a WinRM reply.") % {"where": where, "code": code},
            code=str(code),
        )
    if has(
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
        u3.ProtocolError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ConnectionError,
    ):
        return ConnectionDropped(
            _("The connection to %(where)s was lost in the middle of the exchange.") % {"where": where}
        )
    if has(ParseError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return UnexpectedReply(
            _("%(where)s sent a reply that is not valid WinRM/PowerShell remoting data.") % {"where": where}
        )
    return UnexpectedReply(
        _("Talking to %(where)s failed unexpectedly (%(type)s).") % {"where": where, "type": type(err).__name__}
    )


def _credssp_error(err: BaseException, spec: ConnectionSpec) -> RemotingError:
    where = f"{spec.address}:{spec.port}"
    if isinstance(err, CredSSPAuthenticationError) and CREDSSP_NOT_OFFERED in str(err):
        return CredSSPRefused(
            _(
                "%(where)s does not accept CredSSP (HTTP 401 without CredSSP among its authentication schemes): the "
                "CredSSP server role of its WinRM service is off."
            )
            % {"where": where}
        )
    status = getattr(err, "status", None)
    detail = f"CredSSP, NTSTATUS 0x{status:08X}" if isinstance(status, int) else "CredSSP"
    return AuthenticationFailed(
        _("%(where)s refused the credentials of %(account)s (%(detail)s).")
        % {"where": where, "account": repr(spec.username), "detail": detail}
    )


def _krb5_code(err: BaseException) -> int | None:
    code = getattr(err, "err_code", None)
    if not isinstance(code, int):
        code = getattr(err, "min_code", None)
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return code - 2**32 if code >= 2**31 else code  # GSSAPI minor statuses are unsigned 32-bit


def _kerberos_failure(chain: list[BaseException], spec: ConnectionSpec) -> KerberosFailed | None:
    """The Kerberos failure in the chain, told from its krb5 error code (the library's text is not reused)."""
    code = next((c for c in map(_krb5_code, chain) if c in KRB5_FAILURES), None)
    if code is None:
        return None
    kind, where, account = KRB5_FAILURES[code], f"{spec.address}:{spec.port}", repr(spec.username)
    words = {"where": where, "account": account}
    if kind == "krb_kdc":
        message = (
            _("No Kerberos KDC answered for the realm of %(account)s, so no ticket for %(where)s was issued.") % words
        )
    elif kind == "krb_clock" and code == KRB5_TICKET_NOT_YET_VALID:
        message = (
            _(
                "Kerberos refused the ticket for %(where)s: the clocks of the console, the KDC and the host are "
                "further apart than Kerberos allows (the ticket starts in the future)."
            )
            % words
        )
    elif kind == "krb_clock":
        message = (
            _(
                "Kerberos refused the ticket for %(where)s: the clocks of the console, the KDC and the host are "
                "further apart than Kerberos allows."
            )
            % words
        )
    elif kind == "krb_principal":
        message = _unknown_principal(code, spec)
    elif kind == "krb_account":
        message = (
            _(
                "The Kerberos KDC refused the password of %(account)s (or the account is disabled, locked out or its "
                "password expired)."
            )
            % words
        )
    else:
        message = _("%(where)s could not read the Kerberos ticket the KDC issued for it.") % words
    return KerberosFailed(message, kind)


def _unknown_principal(code: int, spec: ConnectionSpec) -> str:
    if code == KRB5_SERVER_UNKNOWN:
        return _("The Kerberos realm has no service principal for %(address)s (host/%(address)s).") % {
            "address": spec.address
        }
    unknown = _("The Kerberos realm does not know the account %(account)s.") % {"account": repr(spec.username)}
    if "\\" in spec.username:
        return unknown + " " + _("Kerberos names accounts user@REALM, not DOMAIN\\user.")
    return unknown


def _tls_error(tls: BaseException, spec: ConnectionSpec) -> TlsVerificationFailed:
    where = f"{spec.address}:{spec.port}"
    raw = str(tls)
    seen = ""
    match = _FINGERPRINT_GOT.search(raw)
    if match:
        seen = match.group(1).replace(":", "").lower()
    words = {"where": where}
    if spec.cert_check == "fingerprint":
        message = _("The certificate of %(where)s does not match the pinned SHA-256 fingerprint.") % words
    elif spec.cert_check == "ca_bundle":
        message = (
            _("The certificate of %(where)s is not signed by the uploaded CA bundle (or does not name the host).")
            % words
        )
    elif not spec.https:
        message = _("%(where)s expected TLS: the port may be an HTTPS listener.") % words
    else:
        message = (
            _("The certificate of %(where)s is not trusted by the system CAs (or does not name the host).") % words
        )
    return TlsVerificationFailed(message, fingerprint_seen=seen)


def _wsman_fault(fault: WSManFaultError, where: str, status: int = 0) -> RemotingError:
    code = str(fault.code or "")
    reason = _short(fault.reason or "")
    if code == WSMAN_ACCESS_DENIED:
        return AuthenticationFailed(
            _("%(where)s: access denied by WinRM — the account may not be allowed to connect.") % {"where": where}
        )
    if code == WSMAN_UNKNOWN_SHELL:
        return ConnectionDropped(
            _("%(where)s no longer knows the session (the WinRM shell was closed on the host).") % {"where": where}
        )
    if UNDECRYPTABLE in reason.lower():
        # The host closed the idle connection this message was encrypted for; the HTTP client reconnected and
        # sent it anyway. The session is as good as dropped: a new one works.
        return ConnectionDropped(
            _(
                "%(where)s could not decrypt the message: it was encrypted for a connection the host had closed (idle "
                "too long)."
            )
            % {"where": where}
        )
    words = {"where": where, "status": status, "code": code or _("unknown")}
    if status:
        answered = _("%(where)s answered HTTP %(status)s with a WinRM fault (code %(code)s)") % words
    else:
        answered = _("%(where)s answered a WinRM fault (code %(code)s)") % words
    # The reason is the host's own text (Windows' words): never translated.
    return WinRMFault(f"{answered}: {reason}" if reason else answered, code=code)


def _short(value: str, limit: int = 300) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def error_from_record(record: Any) -> RemoteCommandError:
    """A RemoteCommandError from a pypsrp ErrorRecord: message, FullyQualifiedErrorId, category, target, type."""
    exception = getattr(record, "exception", None)
    message = (
        text(getattr(record, "details_message", None))
        or text(prop(exception, "Message"))
        or text(getattr(record, "message", None))
        or text(exception)
        or _("The command failed on the host.")
    )
    category_value = getattr(record, "category", None)
    if isinstance(category_value, int) and 0 <= category_value < len(ERROR_CATEGORIES):
        category = ERROR_CATEGORIES[category_value]
    else:
        category = text(getattr(record, "reason", None))
    target = text(getattr(record, "target_object", None)) or text(getattr(record, "target_name", None))
    exception_types = type_names(exception)
    command = text(getattr(record, "command_name", None)) or text(getattr(record, "invocation_name", None))
    return RemoteCommandError(
        _short(message, 1000),
        fqid=text(getattr(record, "fq_error", None)),
        category=category,
        target=_short(target, 200),
        exception_type=exception_types[0] if exception_types else "",
        command=command,
    )
