"""How the console connects to a host: a ConnectionSpec turned into a pypsrp WSMan transport.

Rules kept here, in one place:
- HTTP only with Negotiate/NTLM/Kerberos and message encryption always on; Basic only over HTTPS.
- CredSSP hands the host the account's password (that is its point: the second hop), so only over HTTPS whose
  certificate is verified: to an unverified server it would give the password away.
- HTTPS verifies the server: system CAs, an uploaded CA bundle, or a pinned SHA-256 fingerprint checked during
  the TLS handshake (urllib3 `assert_fingerprint`), so a wrong server is refused before any credential is sent.
  "none" is possible but logged loudly.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pypsrp.wsman import WSMan

from .errors import KerberosUnavailable, RemotingError

log = logging.getLogger(__name__)

AUTH_METHODS = ("negotiate", "ntlm", "kerberos", "basic", "credssp")
CERT_CHECKS = ("system", "ca_bundle", "fingerprint", "none")
DEFAULT_CONFIGURATION = "Microsoft.PowerShell"
# The name becomes part of the WSMan resource URI: nothing but a plain name may get there.
CONFIGURATION_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
# CredSSP versions 5 and 6 carry the fix of CVE-2018-0886 (a relayed CredSSP exchange); older hosts are refused.
CREDSSP_MINIMUM_VERSION = 5
# Lazy texts (said in the reader's language), typed str for the f-strings of the host form; str() them to raise.
CREDSSP_NEEDS_VERIFIED_HTTPS = cast(
    str,
    gettext_lazy(
        "CredSSP gives the host the account's password itself: use it only over HTTPS with the server certificate "
        "verified (system CAs, a CA bundle or a pinned fingerprint), so the password cannot go to an impostor."
    ),
)
# Large enough that a refresh of a few hundred VMs comes back in one or two Receive replies and a long
# pipeline goes out in one Command; Windows' own default limit (MaxEnvelopeSizekb) is 500 KB.
MAX_ENVELOPE_SIZE = 500 * 1024


class InvalidConnectionSpec(RemotingError):
    kind = "unexpected"


KERBEROS_MISSING = cast(
    str,
    gettext_lazy(
        "Kerberos is not available here: this console has no GSSAPI library (python-gssapi) for pyspnego. "
        "Negotiate on this machine can only use NTLM."
    ),
)


def kerberos_available() -> bool:
    """pyspnego speaks Kerberos on Linux only through python-gssapi (the console's optional `kerberos` extra)."""
    return importlib.util.find_spec("gssapi") is not None


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to reach one host. The password never appears in repr()."""

    address: str
    port: int
    https: bool
    auth: str
    username: str
    password: str = field(repr=False)
    cert_check: str = "system"
    ca_bundle_pem: str = field(default="", repr=False)
    fingerprint_sha256: str = ""
    label: str = ""  # the host's display name, for log lines ("→ Get-VM (HV01)")
    configuration_name: str = DEFAULT_CONFIGURATION  # the PSSession configuration (a JEA endpoint, say)

    @property
    def display(self) -> str:
        return self.label or f"{self.address}:{self.port}"

    def check(self) -> None:
        """Refuse combinations that would send credentials unprotected, with a message that says why."""
        if self.auth not in AUTH_METHODS:
            raise InvalidConnectionSpec(_("Unknown authentication method %(auth)s.") % {"auth": repr(self.auth)})
        if self.auth == "basic" and not self.https:
            raise InvalidConnectionSpec(_("Basic authentication is only allowed over HTTPS: it has no encryption."))
        if self.auth == "credssp" and not (self.https and self.cert_check != "none"):
            raise InvalidConnectionSpec(str(CREDSSP_NEEDS_VERIFIED_HTTPS))
        if self.auth == "kerberos" and not kerberos_available():
            raise KerberosUnavailable(str(KERBEROS_MISSING))
        if self.https and self.cert_check not in CERT_CHECKS:
            raise InvalidConnectionSpec(
                _("Unknown server-certificate check %(check)s.") % {"check": repr(self.cert_check)}
            )
        if self.https and self.cert_check == "fingerprint" and not normalise_fingerprint(self.fingerprint_sha256):
            raise InvalidConnectionSpec(_("A pinned SHA-256 fingerprint (64 hex digits) is required."))
        if self.https and self.cert_check == "ca_bundle" and "BEGIN CERTIFICATE" not in self.ca_bundle_pem:
            raise InvalidConnectionSpec(_("The CA bundle must hold at least one PEM certificate."))
        if not CONFIGURATION_NAME.fullmatch(self.configuration_name or ""):
            raise InvalidConnectionSpec(_("A session configuration name is 1 to 128 letters, digits, '.', '_' or '-'."))


def normalise_fingerprint(value: str) -> str:
    """'AB:CD:…' or 'abcd…' → 64 lowercase hex digits, or '' if it is not a SHA-256 fingerprint."""
    digits = re.sub(r"[\s:]", "", value or "").lower()
    return digits if re.fullmatch(r"[0-9a-f]{64}", digits) else ""


def peer_fingerprint(address: str, port: int, timeout: float) -> str:
    """The SHA-256 of the certificate the server presents, fetched without trusting it (no credentials sent)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=address) as tls,
        ):
            der = tls.getpeercert(binary_form=True) or b""
    except (OSError, ssl.SSLError):
        return ""
    return hashlib.sha256(der).hexdigest() if der else ""


class Transport:
    """A WSMan transport for one spec, plus the temporary CA file it may need (removed on close)."""

    def __init__(self, spec: ConnectionSpec) -> None:
        spec.check()
        self.spec = spec
        self._ca_path = ""
        self.requests = 0
        self.wsman = self._build()

    def _cert_validation(self) -> bool | str:
        spec = self.spec
        if not spec.https or spec.cert_check in ("fingerprint", "none"):
            return False
        if spec.cert_check == "ca_bundle":
            handle, path = tempfile.mkstemp(prefix="gc-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as out:  # mkstemp creates the file 0600: private to this process' user
                out.write(spec.ca_bundle_pem)
            self._ca_path = path
            return path
        return True

    def _build(self) -> WSMan:
        spec = self.spec
        if spec.https and spec.cert_check == "none":
            log.warning(
                "Server certificate of %s is NOT verified (cert_check=none): anyone in the path can "
                "impersonate this host and read the credentials.",
                spec.display,
            )
        wsman = WSMan(
            spec.address,
            port=spec.port,
            ssl=spec.https,
            auth=spec.auth,
            username=spec.username,
            password=spec.password,
            cert_validation=self._cert_validation(),  # type: ignore[arg-type]  # a CA file path is accepted
            # Message encryption on plain HTTP is mandatory; over HTTPS TLS already encrypts.
            encryption="auto" if spec.https else "always",
            connection_timeout=settings.WINRM_CONNECT_TIMEOUT,
            read_timeout=settings.WINRM_READ_TIMEOUT,
            operation_timeout=settings.WINRM_OPERATION_TIMEOUT,
            max_envelope_size=MAX_ENVELOPE_SIZE,
            no_proxy=True,
            **self._credssp_options(),
        )
        # Build the HTTP session now (pypsrp would on first use) to count requests and pin fingerprints.
        session = wsman.transport.session = wsman.transport._build_session()
        # The proxy and CA settings of the environment were read once just now; re-reading them on every request
        # costs more CPU than the rest of a request (and a WinRM host is never reached through a proxy here).
        session.trust_env = False
        for prefix in ("http://", "https://"):
            self._count_requests(session.get_adapter(prefix + "count.invalid/"))
        if spec.https and spec.cert_check == "fingerprint":
            adapter = session.get_adapter("https://pinned.invalid/")
            # urllib3 compares the leaf certificate's SHA-256 during the TLS handshake of every connection: a
            # mismatch fails before any HTTP request, so no credential is ever sent to the wrong server.
            pins = adapter.poolmanager.connection_pool_kw  # type: ignore[attr-defined]
            pins["assert_fingerprint"] = normalise_fingerprint(spec.fingerprint_sha256)
        return wsman

    def _credssp_options(self) -> dict[str, Any]:
        return {"credssp_minimum_version": CREDSSP_MINIMUM_VERSION} if self.spec.auth == "credssp" else {}

    def _count_requests(self, adapter: Any) -> None:
        """Count every HTTP request, authentication round trips included (they go through adapter.send too)."""
        send = adapter.send

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            return send(*args, **kwargs)

        adapter.send = counted

    def close(self) -> None:
        try:
            self.wsman.close()
        finally:
            if self._ca_path:
                with contextlib.suppress(OSError):
                    os.unlink(self._ca_path)
                self._ca_path = ""
