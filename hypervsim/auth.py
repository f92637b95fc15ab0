"""WinRM authentication as a Windows listener does it: Negotiate (NTLM, or Kerberos when the host has a keytab) with
message encryption, or Basic over HTTPS.

One `ConnectionSecurity` lives per TCP connection, so one security context is bound to one connection, as on
Windows. Message encryption follows MS-WSMV: the SOAP body travels as `multipart/encrypted`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions

from hypervsim.credssp import SCHEME as CREDSSP_SCHEME
from hypervsim.credssp import CredSSPAcceptor, delegated_user
from hypervsim.logon import BASIC, CREDSSP, NTLM, Delegation, KerberosTicket, Logon, kerberos_logon

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
CHALLENGES = {"negotiate": "Negotiate", "basic": 'Basic realm="WSMAN"'}

# pyspnego's NTLM acceptor reads its account store from the NTLM_USER_FILE environment variable, and GSSAPI's
# Kerberos acceptor its keys from the keytab KRB5_KTNAME names. Hosts in one process may have different accounts
# and keytabs, so each acceptor step runs with its host's under this lock.
_NTLM_STORE_LOCK = threading.Lock()
# MIT's GSS_KRB5_GET_TKT_FLAGS_OID (1.2.840.113554.1.2.2.5.1): the flags of the service ticket an acceptor got.
_TICKET_FLAGS_OID = "1.2.840.113554.1.2.2.5.1"
_TKT_FLG_FORWARDABLE = 0x40000000


class AuthenticationRejected(Exception):
    """The client must be answered 401 (bad or missing credentials, or an unacceptable request)."""


class MalformedEncryptedBody(Exception):
    """A multipart/encrypted body that does not decrypt."""


@dataclass(frozen=True)
class Account:
    """The one local administrator account a simulated host accepts, as administrators type it."""

    user: str
    password: str
    ntlm_store: Path
    # The host's service keys in its realm (host/, HTTP/, WSMAN/<name>): with one, Negotiate accepts Kerberos too.
    # Without, KRB5_KTNAME points at a file that does not exist, so no keytab of the machine is ever used.
    keytab: Path

    @classmethod
    def create(
        cls, user: str, password: str, state_dir: Path, computer_name: str, keytab: Path | None = None
    ) -> Account:
        if any(c in user + password for c in ":\r\n"):
            raise ValueError("the simulator's account store cannot hold ':' or line breaks in user or password")
        store = state_dir / "ntlm-accounts"
        store.write_text("".join(f"{domain}:{name}:{password}\n" for domain, name in spellings(user, computer_name)))
        store.chmod(0o600)
        return cls(user, password, store, keytab or state_dir / "no-keytab")

    @property
    def kerberos(self) -> bool:
        return self.keytab.is_file()

    def basic_matches(self, header_value: str) -> bool:
        try:
            user, _, password = base64.b64decode(header_value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        same_user = bare_name(user).lower() == bare_name(self.user).lower()
        return same_user and hmac.compare_digest(password.encode(), self.password.encode())


def bare_name(user: str) -> str:
    """The account name without its domain: `LAB\\probe`, `.\\probe` and `probe@lab.local` are all `probe`."""
    return user.rpartition("\\")[2].partition("@")[0]


def spellings(user: str, computer_name: str) -> list[tuple[str, str]]:
    """(NTLM domain, user) pairs the client may send for the account: NTLMv2 hashes the domain and user the client
    typed, so the store holds each spelling Windows accepts for it. The bare name, `HOST\\user` and `.\\user` name
    the local account; `DOMAIN\\user` and `user@domain` the account as given (the simulator has one account)."""
    name = bare_name(user)
    domains = {"", computer_name, "."}
    pairs = []
    if "\\" in user:
        domains.add(user.rpartition("\\")[0])
    elif "@" in user:
        suffix = user.partition("@")[2]
        domains.add(suffix.split(".")[0].upper())
        pairs.append(("", f"{name}@{suffix}"))
    return [(domain, name) for domain in sorted(domains)] + pairs


class ConnectionSecurity:
    """Authentication and message encryption state of one TCP connection."""

    def __init__(
        self,
        account: Account,
        scheme: str,
        https: bool,
        credssp: CredSSPAcceptor | None = None,
        delegation: Callable[[], Delegation] = Delegation,
    ) -> None:
        self.account, self.scheme, self.https = account, scheme, https
        self.credssp = credssp  # set on a TLS listener that may offer CredSSP (when the host's role is on)
        self.delegation = delegation  # the host's computer account as the domain sees it, asked at each logon
        self._context: Any = None
        self.authenticated = False
        self.mechanism = "negotiate"  # or "credssp": which HTTP scheme the connection's context speaks
        self.delegated_user = ""  # the account CredSSP delegated
        self.ticket: KerberosTicket | None = None  # a Kerberos logon's service ticket, once authenticated

    def reset(self) -> None:
        self._context, self.authenticated, self.ticket = None, False, None

    @property
    def offers_credssp(self) -> bool:
        return self.scheme == "negotiate" and self.credssp is not None and self.credssp.enabled()

    def challenges(self) -> list[str]:
        """The WWW-Authenticate values of a 401, one header each as a Windows listener sends them."""
        if self.scheme == "basic":
            return [CHALLENGES["basic"]]
        return [CHALLENGES["negotiate"]] + ([CREDSSP_SCHEME] if self.offers_credssp else [])

    def token_header(self, token: str) -> str:
        """A WWW-Authenticate value carrying the next handshake token, in the scheme the client is using."""
        return f"{CREDSSP_SCHEME if self.mechanism == 'credssp' else 'Negotiate'} {token}"

    def authenticate(self, authorization: str | None) -> str | None:
        """Check one request's Authorization header; returns a token for WWW-Authenticate or None.

        Raises AuthenticationRejected when the request must be answered 401; when the reason is an unfinished
        handshake, the exception carries the challenge token in `args[0]`.
        """
        if authorization is None:
            # Negotiate authenticates the connection; Basic must come with every request.
            if self.authenticated and self.scheme == "negotiate":
                return None
            raise AuthenticationRejected(None)
        kind, _, value = authorization.strip().partition(" ")
        if self.scheme == "basic" and kind.lower() == "basic":
            if not self.account.basic_matches(value.strip()):
                raise AuthenticationRejected(None)
            return None
        if self.scheme == "negotiate" and kind.lower() in ("negotiate", "ntlm"):
            return self._step(value.strip(), "negotiate")
        if kind.lower() == "credssp" and self.offers_credssp:
            return self._step(value.strip(), "credssp")
        raise AuthenticationRejected(None)

    def _step(self, token_b64: str, mechanism: str) -> str | None:
        try:
            token = base64.b64decode(token_b64, validate=True)
        except binascii.Error:
            self.reset()
            raise AuthenticationRejected(None) from None
        with _NTLM_STORE_LOCK:
            os.environ["NTLM_USER_FILE"] = str(self.account.ntlm_store)
            os.environ["KRB5_KTNAME"] = f"FILE:{self.account.keytab}"
            try:
                if self._context is None or self.authenticated or mechanism != self.mechanism:
                    self._context, self.mechanism = self._new_context(mechanism), mechanism
                    self.authenticated = False
                out = self._context.step(token)
            except (spnego.exceptions.SpnegoError, ValueError, struct.error, AttributeError):
                # A Kerberos acceptor that refuses an AP-REQ (clock skew, a key it lacks) answers with a KRB-ERROR
                # token, as Windows does, so the client can say why. (pyspnego stumbles over python-gssapi's
                # deferred error there with an AttributeError; the error and its token are kept on the context.)
                refusal = _error_token(self._context)
                self.reset()
                raise AuthenticationRejected(refusal) from None
        answer = base64.b64encode(out).decode() if out else None
        if not self._context.complete:
            raise AuthenticationRejected(answer)
        if mechanism == "credssp":
            self._accept_delegation()
            self.authenticated = True
        else:
            self._log_on()
        return answer

    def _new_context(self, mechanism: str) -> Any:
        if mechanism == "credssp":
            assert self.credssp is not None
            return self.credssp.new_context()
        return spnego.server(service="HTTP", protocol="negotiate", options=spnego.NegotiateOptions.wrapping_winrm)

    def _accept_delegation(self) -> None:
        matches = lambda name: bare_name(name).lower() == bare_name(self.account.user).lower()  # noqa: E731
        user = delegated_user(self._context, matches, self.account.password)
        if user is None:
            self.reset()
            raise AuthenticationRejected(None)
        self.delegated_user = user

    def _log_on(self) -> None:
        kerberos = self._context.negotiated_protocol == "kerberos"
        if kerberos and not self._administrator(self._context.client_principal):
            # Any account of the realm gets a ticket; WinRM lets in only the host's administrators (HTTP 401).
            self.reset()
            raise AuthenticationRejected(None)
        self.authenticated = True
        # What the ticket allows is fixed at logon; what the domain lets the host do with it is asked at each use.
        self.ticket = _ticket(self._context) if kerberos else None

    def _administrator(self, principal: str | None) -> bool:
        """Whether a Kerberos principal (user@REALM) is the host's administrator account."""
        return (principal or "").partition("@")[0].casefold() == bare_name(self.account.user).casefold()

    @property
    def logon(self) -> Logon | None:
        """How the connection authenticated, once it has: NTLM or Basic hold no credentials for a second hop."""
        if self.scheme == "basic":
            return Logon(BASIC, self.account.user)
        if not self.authenticated:
            return None
        if self.mechanism == "credssp":
            return Logon(CREDSSP, self.delegated_user)
        user = str(getattr(self._context, "client_principal", None) or self.account.user)
        if self.ticket is not None:
            return kerberos_logon(user, self.ticket, self.delegation())
        return Logon(NTLM, user)

    @property
    def encrypts(self) -> bool:
        return self.scheme == "negotiate" and self.authenticated  # CredSSP wraps WinRM messages too (MS-WSMV)

    def unwrap(self, body: bytes, content_type: str) -> bytes:
        """The SOAP envelope inside a multipart/encrypted body."""
        if not self.encrypts or not content_type.lower().startswith("multipart/encrypted"):
            raise MalformedEncryptedBody("not an encrypted WinRM body")
        parts = [p for p in re.split(re.escape(BOUNDARY) + rb"(?:--)?\r\n", body) if p.strip()]
        if len(parts) != 2 or b"Length=" not in parts[0]:
            raise MalformedEncryptedBody("unexpected MIME structure")
        try:
            expected = int(parts[0].split(b"Length=")[1].strip())
            payload = parts[1].replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            header_length = struct.unpack("<i", payload[:4])[0]
            if not 0 < header_length < len(payload):
                raise MalformedEncryptedBody("bad signature length")
            plain = self._context.unwrap_winrm(payload[4 : 4 + header_length], payload[4 + header_length :])
        except (ValueError, struct.error, spnego.exceptions.SpnegoError) as exc:
            raise MalformedEncryptedBody(str(exc)) from None
        if len(plain) != expected:
            raise MalformedEncryptedBody("length mismatch")
        return bytes(plain)

    def wrap(self, message: bytes) -> tuple[str, bytes]:
        """Content-Type and body of an encrypted response."""
        header, data, padding = self._context.wrap_winrm(message)
        length = len(message) + padding
        body = b"\r\n".join(
            [
                BOUNDARY,
                f"\tContent-Type: {PROTOCOL}".encode(),
                f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={length}".encode(),
                BOUNDARY,
                b"\tContent-Type: application/octet-stream",
                struct.pack("<i", len(header)) + header + data + BOUNDARY + b"--\r\n",
            ]
        )
        return f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"', body


def _gss_context(negotiate: Any) -> Any:
    """The python-gssapi SecurityContext under pyspnego's Negotiate acceptor (its chosen mechanism's context).
    pyspnego exposes no ticket flags or delegated credentials, so this one helper reaches inside it."""
    return negotiate._context._context


def _ticket(negotiate: Any) -> KerberosTicket:
    import gssapi
    import gssapi.raw

    context = _gss_context(negotiate)
    flags_oid = gssapi.OID.from_int_seq(_TICKET_FLAGS_OID)
    raw = gssapi.raw.inquire_sec_context_by_oid(context, flags_oid)[0]
    flags = int.from_bytes(raw[:4], "little")
    return KerberosTicket(bool(flags & _TKT_FLG_FORWARDABLE), context.delegated_creds is not None)


def _error_token(negotiate: Any) -> str | None:
    """The base64 KRB-ERROR python-gssapi produced for a refused AP-REQ (kept as the context's deferred error)."""
    try:
        error = _gss_context(negotiate)._last_err
    except (AttributeError, KeyError, StopIteration, TypeError):
        return None  # not a Kerberos context, or no context yet
    token = getattr(error, "token", None)
    return base64.b64encode(token).decode() if token else None
