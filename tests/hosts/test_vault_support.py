"""Making guardian PFX pairs the way Windows does, for the vault and workflow tests (no tests in this file).

RSA keys are cached per process: generating them is the slow part and no test depends on them being fresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, NoEncryption, pkcs12

from hypervsim.certs import guardian_certificate

PASSWORD = "Pfx-Test-Password-7f3a"


@cache
def rsa_key(slot: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# The simulator's own certificate maker: the vault tests get what a simulated (or real) Hyper-V host would export.
certificate = guardian_certificate


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
