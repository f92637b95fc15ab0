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

    if has(AuthenticationError):
        return AuthenticationFailed(f"{where} refused the credentials of {spec.username!r} (HTTP 401).")
    credssp = has(CredSSPAuthenticationError, NTStatusException)
    if credssp is not None:
        return _credssp_error(credssp, spec)
    tls = has(ssl.SSLError, u3.SSLError, requests.exceptions.SSLError)
    if tls is not None:
        return _tls_error(tls, spec)
    if has(u3.NameResolutionError, socket.gaierror):
        return DnsFailure(f"The name {spec.address!r} could not be resolved.")
    if has(ConnectionRefusedError):
        return ConnectionRefused(f"{where} refused the connection: nothing listens there, or a firewall rejects it.")
    if has(requests.exceptions.ConnectTimeout, u3.ConnectTimeoutError) and not has(u3.NewConnectionError):
        return ConnectTimeout(f"{where} did not accept a connection within the connect timeout.")
    if has(requests.exceptions.ReadTimeout, u3.ReadTimeoutError, socket.timeout, TimeoutError):
        return ConnectTimeout(f"{where} stopped answering (read timeout).")
    fault = has(WSManFaultError)
    transport = has(WinRMTransportError)
    if fault is not None:
        status = getattr(transport, "code", 0) if transport is not None else 0
        return _wsman_fault(fault, where, status)  # type: ignore[arg-type]
    if transport is not None:
        code = getattr(transport, "code", 0)
        return WinRMFault(f"{where} answered HTTP {code} instead of a WinRM reply.", code=str(code))
    if has(
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
        u3.ProtocolError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ConnectionError,
    ):
        return ConnectionDropped(f"The connection to {where} was lost in the middle of the exchange.")
    if has(ParseError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return UnexpectedReply(f"{where} sent a reply that is not valid WinRM/PowerShell remoting data.")
    return UnexpectedReply(f"Talking to {where} failed unexpectedly ({type(err).__name__}).")


def _credssp_error(err: BaseException, spec: ConnectionSpec) -> RemotingError:
    where = f"{spec.address}:{spec.port}"
    if isinstance(err, CredSSPAuthenticationError) and CREDSSP_NOT_OFFERED in str(err):
        return CredSSPRefused(
            f"{where} does not accept CredSSP (HTTP 401 without CredSSP among its authentication schemes): "
            "the CredSSP server role of its WinRM service is off."
        )
    status = getattr(err, "status", None)
    detail = f"CredSSP, NTSTATUS 0x{status:08X}" if isinstance(status, int) else "CredSSP"
    return AuthenticationFailed(f"{where} refused the credentials of {spec.username!r} ({detail}).")


def _tls_error(tls: BaseException, spec: ConnectionSpec) -> TlsVerificationFailed:
    where = f"{spec.address}:{spec.port}"
    raw = str(tls)
    seen = ""
    match = _FINGERPRINT_GOT.search(raw)
    if match:
        seen = match.group(1).replace(":", "").lower()
    if spec.cert_check == "fingerprint":
        message = f"The certificate of {where} does not match the pinned SHA-256 fingerprint."
    elif spec.cert_check == "ca_bundle":
        message = f"The certificate of {where} is not signed by the uploaded CA bundle (or does not name the host)."
    elif not spec.https:
        message = f"{where} expected TLS: the port may be an HTTPS listener."
    else:
        message = f"The certificate of {where} is not trusted by the system CAs (or does not name the host)."
    return TlsVerificationFailed(message, fingerprint_seen=seen)


def _wsman_fault(fault: WSManFaultError, where: str, status: int = 0) -> RemotingError:
    code = str(fault.code or "")
    reason = _short(fault.reason or "")
    if code == WSMAN_ACCESS_DENIED:
        return AuthenticationFailed(f"{where}: access denied by WinRM — the account may not be allowed to connect.")
    if code == WSMAN_UNKNOWN_SHELL:
        return ConnectionDropped(f"{where} no longer knows the session (the WinRM shell was closed on the host).")
    if UNDECRYPTABLE in reason.lower():
        # The host closed the idle connection this message was encrypted for; the HTTP client reconnected and
        # sent it anyway. The session is as good as dropped: a new one works.
        return ConnectionDropped(
            f"{where} could not decrypt the message: it was encrypted for a connection the host had closed "
            "(idle too long)."
        )
    detail = f": {reason}" if reason else ""
    http = f"HTTP {status} with " if status else ""
    return WinRMFault(f"{where} answered {http}a WinRM fault (code {code or 'unknown'}){detail}", code=code)


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
        or "The command failed on the host."
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
