"""CredSSP as a WinRM HTTPS listener accepts it: `Authorization: CredSSP <token>` rounds carrying MS-CSSP.

CredSSP runs its own TLS handshake inside the HTTP exchange, authenticates the user with NTLM (SPNEGO) inside that
TLS channel, binds the two by the server's public key, and finally receives the user's password itself (TSCredentials).
That password is what lets the session reach a third machine (the second hop, hypervsim/logon.py).

A Windows listener offers CredSSP only once `Enable-WSManCredSSP -Role Server` has set
`WSMan:\\localhost\\Service\\Auth\\CredSSP` to true; until then its 401 lists the other schemes only, and a client
asking for CredSSP is answered 401 again. The simulator accepts CredSSP over its TLS listener only (the console
uses it over HTTPS only): message encryption is TLS's.
"""

from __future__ import annotations

import hmac
import ssl
import threading
from collections.abc import Callable
from typing import Any

import spnego
import spnego.tls
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hypervsim.tls import ListenerCertificate

SCHEME = "CredSSP"


class CredSSPAcceptor:
    """What one host's listener needs to accept CredSSP: its certificate (the inner TLS uses the listener's key, so
    the public-key binding names the same server as the outer TLS) and whether the CredSSP server role is on now."""

    def __init__(self, certificate: ListenerCertificate, enabled: Callable[[], bool]) -> None:
        self.certificate, self.enabled = certificate, enabled
        self._tls: spnego.tls.CredSSPTLSContext | None = None
        self._lock = threading.Lock()

    def new_context(self) -> Any:
        return spnego.server(protocol="credssp", credssp_tls_context=self._tls_context())

    def _tls_context(self) -> spnego.tls.CredSSPTLSContext:
        with self._lock:
            if self._tls is None:
                tls = spnego.tls.default_tls_context(usage="accept")
                # Schannel's CredSSP speaks TLS 1.2; with 1.3 the acceptor would have to answer a round with an empty
                # token, which an HTTP header cannot carry.
                tls.context.maximum_version = ssl.TLSVersion.TLSv1_2
                tls.context.load_cert_chain(self.certificate.cert_file, self.certificate.key_file)
                certificate = x509.load_pem_x509_certificate(self.certificate.cert_file.read_bytes())
                tls.public_key = certificate.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.PKCS1
                )
                self._tls = tls
            return self._tls


def delegated_user(context: Any, user_matches: Callable[[str], bool], password: str) -> str | None:
    """The account the client delegated (DOMAIN\\user), or None when the delegated password is not the account's:
    Windows logs the session on with the delegated credentials, so wrong ones fail the logon."""
    credential = context.get_extra_info("client_credential")
    name = str(getattr(credential, "username", "") or "")
    domain = str(getattr(credential, "domain_name", "") or "")
    given = str(getattr(credential, "password", "") or "")
    if not user_matches(name) or not hmac.compare_digest(given.encode(), password.encode()):
        return None
    return f"{domain}\\{name}" if domain else name
