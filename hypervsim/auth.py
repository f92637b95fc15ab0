"""WinRM authentication as a Windows listener does it: Negotiate/NTLM with message encryption, or Basic over HTTPS.

One `ConnectionSecurity` lives per TCP connection, so one NTLM security context is bound to one connection, as
on Windows. Message encryption follows MS-WSMV: the SOAP body travels as `multipart/encrypted`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions

from hypervsim.credssp import SCHEME as CREDSSP_SCHEME
from hypervsim.credssp import CredSSPAcceptor, delegated_user
from hypervsim.logon import BASIC, CREDSSP, NTLM, Logon

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
CHALLENGES = {"negotiate": "Negotiate", "basic": 'Basic realm="WSMAN"'}

# pyspnego's NTLM acceptor reads its account store from the NTLM_USER_FILE environment variable. Hosts in one
# process may have different accounts, so each acceptor step runs with its host's store under this lock.
_NTLM_STORE_LOCK = threading.Lock()


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

    @classmethod
    def create(cls, user: str, password: str, state_dir: Path, computer_name: str) -> Account:
        if any(c in user + password for c in ":\r\n"):
            raise ValueError("the simulator's account store cannot hold ':' or line breaks in user or password")
        store = state_dir / "ntlm-accounts"
        store.write_text("".join(f"{domain}:{name}:{password}\n" for domain, name in spellings(user, computer_name)))
        store.chmod(0o600)
        return cls(user, password, store)

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

    def __init__(self, account: Account, scheme: str, https: bool, credssp: CredSSPAcceptor | None = None) -> None:
        self.account, self.scheme, self.https = account, scheme, https
        self.credssp = credssp  # set on a TLS listener that may offer CredSSP (when the host's role is on)
        self._context: Any = None
        self.authenticated = False
        self.mechanism = "negotiate"  # or "credssp": which HTTP scheme the connection's context speaks
        self.delegated_user = ""  # the account CredSSP delegated

    def reset(self) -> None:
        self._context, self.authenticated = None, False

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
            try:
                if self._context is None or self.authenticated or mechanism != self.mechanism:
                    self._context, self.mechanism = self._new_context(mechanism), mechanism
                    self.authenticated = False
                out = self._context.step(token)
            except (spnego.exceptions.SpnegoError, ValueError, struct.error):
                self.reset()
                raise AuthenticationRejected(None) from None
        answer = base64.b64encode(out).decode() if out else None
        if not self._context.complete:
            raise AuthenticationRejected(answer)
        if mechanism == "credssp":
            self._accept_delegation()
        self.authenticated = True
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

    @property
    def logon(self) -> Logon | None:
        """How the connection authenticated, once it has: NTLM or Basic hold no credentials for a second hop."""
        if self.scheme == "basic":
            return Logon(BASIC, self.account.user)
        if not self.authenticated:
            return None
        if self.mechanism == "credssp":
            return Logon(CREDSSP, self.delegated_user)
        return Logon(NTLM, str(getattr(self._context, "client_principal", None) or self.account.user))

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
