"""Making guardian PFX pairs the way Windows does, for the vault and workflow tests (no tests in this file).

RSA keys are cached per process: generating them is the slow part and no test depends on them being fresh.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

PASSWORD = "Pfx-Test-Password-7f3a"


@cache
def rsa_key(slot: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(
    key: rsa.RSAPrivateKey, role: str, guardian: str, host: str, not_before: datetime, days: int
) -> x509.Certificate:
    # Windows writes CNs longer than X.520's 64 characters ("... Encryption Certificate (UntrustedGuardian) (HOST)").
    common_name = f"Shielded VM {role} Certificate ({guardian}) ({host})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)])
    signing = role == "Signing"
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=signing,
                content_commitment=False,
                key_encipherment=not signing,
                data_encipherment=not signing,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def pfx(key: rsa.RSAPrivateKey | None, cert: x509.Certificate, password: str) -> bytes:
    encryption = BestAvailableEncryption(password.encode()) if password else NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"guardian", key, cert, None, encryption)


def make_pair(
    guardian: str = "UntrustedGuardian",
    host: str = "HV01",
    password: str = PASSWORD,
    *,
    slot: int = 0,
    not_before: datetime | None = None,
    days: int = 3650,
) -> tuple[bytes, bytes]:
    """(signing PFX, encryption PFX) of a Windows-style guardian; `slot` picks a distinct pair of keys."""
    start = not_before or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sign_key, enc_key = rsa_key(2 * slot), rsa_key(2 * slot + 1)
    sign = certificate(sign_key, "Signing", guardian, host, start, days)
    enc = certificate(enc_key, "Encryption", guardian, host, start, days)
    return pfx(sign_key, sign, password), pfx(enc_key, enc, password)


class LogRecorder:
    """A `log(text, level)` callable that keeps every line, so tests can look for leaked secrets."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, text: str, level: str = "info") -> None:
        self.lines.append((level, text))

    @property
    def text(self) -> str:
        return "\n".join(text for _level, text in self.lines)


def temp_pfx_left(sim: Any) -> list[str]:
    """Temporary PFX files the console left in the simulated host's file area (C:\\Windows\\Temp)."""
    root = sim.model.files.resolve("C:\\Windows\\Temp")
    return sorted(p.name for p in root.glob("*.pfx")) if root.exists() else []


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text, "a secret leaked into a log line, page or audit event"


def unreachable_host(name: str = "HV09") -> Any:
    """A registered host nobody listens for: for pages that only read the database."""
    from hosts.models import Host

    host = Host(name=name, address="127.0.0.1", port=9, transport="http", auth="negotiate", username="labadmin")
    host.set_password("Host-Passw0rd!")
    host.save()
    return host


def _preflight_urlpatterns() -> list[Any]:
    from django.urls import include, path

    from console.urls import urlpatterns as console_patterns

    return [path("", include("jobs.workflows.urls")), *console_patterns]


# A URLconf for `pytest.mark.urls("tests.hosts.test_vault_support")`: the console plus the workflows' preflight pages.
urlpatterns = _preflight_urlpatterns()
