"""A VM key protector's guardians, and certificates' thumbprints whatever shape remoting gave them.

The documented reader of a key protector is the host's ConvertTo-HgsKeyProtector (catalog/keyprotectors.py). This
module is the fallback for when the host cannot read one: the container format is undocumented, but if a guardian
row embeds its signing and encryption certificates as DER X.509 structures, they can be located in the raw bytes.
(If the bytes are XML with base64 certificates, as domain.md believes Windows writes them, nothing is found and the
guardians stay unknown.) A guardian is a (signing, encryption) pair of SHA-1 thumbprints, the way Windows shows
thumbprints. The owner is the guardian whose signing key signed the protector (checked against a trailing signature
when there is one); otherwise the first row, where the owner is written first.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .psobjects import byte_string, prop, text

# Get-VMKeyProtector returns a short array (e.g. 0,0,0,4) for a VM without a protector.
MIN_KEY_PROTECTOR_BYTES = 16
_THUMBPRINT = re.compile(r"\b([0-9A-Fa-f]{40})\b")


@dataclass(frozen=True)
class EmbeddedCertificate:
    der: bytes
    thumbprint: str
    subject: str
    role: str  # "signing", "encryption" or "" when the certificate does not say


@dataclass(frozen=True)
class GuardianRef:
    """A guardian as a key protector names it: its certificate pair."""

    signing: str
    encryption: str
    subject: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"signing": self.signing, "encryption": self.encryption, "subject": self.subject}


@dataclass
class KeyProtectorInfo:
    present: bool
    guardians: list[GuardianRef] = field(default_factory=list)
    owner: GuardianRef | None = None
    readable: bool = True  # False: bytes present but no certificate pair could be found


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def certificate_thumbprint(value: Any) -> tuple[str, str]:
    """(thumbprint, subject) of a nested certificate value, whatever shape remoting gave it: DER bytes (what the WMI
    classes declare), an X509Certificate2 object, or its ToString text; ('', '') if none."""
    raw = byte_string(value)
    if raw:
        try:
            cert = x509.load_der_x509_certificate(raw)
            return thumbprint(raw), cert.subject.rfc4514_string()
        except ValueError:
            return "", ""
    found = text(prop(value, "Thumbprint"))
    if found:
        return found.upper(), text(prop(value, "Subject"))
    shown = text(value)
    match = re.search(r"\[Thumbprint\]\s*([0-9A-Fa-f]{40})", shown) or _THUMBPRINT.search(shown)
    subject = re.search(r"\[Subject\]\s*(.+)", shown)
    return (match.group(1).upper() if match else ""), (subject.group(1).strip() if subject else "")


def guardian_ref(obj: Any) -> GuardianRef | None:
    """A guardian object (MSFT_HgsGuardian) as a certificate pair; None when either certificate cannot be read."""
    signing, subject = certificate_thumbprint(prop(obj, "SigningCertificate"))
    encryption, _ = certificate_thumbprint(prop(obj, "EncryptionCertificate"))
    return GuardianRef(signing, encryption, subject) if signing and encryption else None


def _der_length(data: bytes, pos: int) -> int:
    """Total length of the DER SEQUENCE starting at pos (header included), or 0 when it is not one."""
    if pos + 2 > len(data) or data[pos] != 0x30:
        return 0
    first = data[pos + 1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count not in (1, 2, 3) or pos + 2 + count > len(data):
        return 0
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return 2 + count + length


# Where a certificate may start: a DER SEQUENCE whose length takes two or three bytes (certificates are 200+ bytes).
_SEQUENCE_START = re.compile(rb"\x30[\x82\x83]")


def embedded_certificates(data: bytes) -> list[EmbeddedCertificate]:
    """Every DER certificate found in the bytes, in order. The search jumps from one possible start to the next
    (a key protector is kilobytes; a byte-by-byte walk in Python cost a millisecond each)."""
    found: list[EmbeddedCertificate] = []
    start = _SEQUENCE_START.search(data)
    while start is not None and start.start() < len(data) - 4:
        pos, after = start.start(), start.start() + 1
        total = _der_length(data, pos)
        if 200 <= total <= len(data) - pos:
            cert = _load(data[pos : pos + total])
            if cert is not None:
                found.append(cert)
                after = pos + total
        start = _SEQUENCE_START.search(data, after)
    return found


def _load(der: bytes) -> EmbeddedCertificate | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
    except (ValueError, UnsupportedAlgorithm):
        return None
    return EmbeddedCertificate(der, thumbprint(der), subject, _role(cert, subject))


def _role(cert: x509.Certificate, subject: str) -> str:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if usage.key_encipherment and not usage.digital_signature:
            return "encryption"
        if usage.digital_signature and not usage.key_encipherment:
            return "signing"
    except (x509.ExtensionNotFound, ValueError):
        pass
    lowered = subject.lower()
    if "encryption" in lowered:
        return "encryption"
    if "signing" in lowered:
        return "signing"
    return ""


def _pairs(certs: list[EmbeddedCertificate]) -> list[tuple[EmbeddedCertificate, EmbeddedCertificate]]:
    """Consecutive certificates form a row; within it the roles say which is which (signing first otherwise)."""
    rows = []
    for i in range(0, len(certs) - 1, 2):
        a, b = certs[i], certs[i + 1]
        if a.role == "encryption" or b.role == "signing":
            a, b = b, a
        rows.append((a, b))
    return rows


def _signed_by(data: bytes, signing: EmbeddedCertificate) -> bool:
    try:
        key = x509.load_der_x509_certificate(signing.der).public_key()
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    size = key.key_size // 8
    signature = data[-size:]
    for body in (data[: -(size + 4)], data[:-size]):
        try:
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def read_key_protector(data: bytes) -> KeyProtectorInfo:
    """Guardians and owner of a key protector, from its raw bytes."""
    if len(data) < MIN_KEY_PROTECTOR_BYTES:
        return KeyProtectorInfo(present=False)
    rows = _pairs(embedded_certificates(data))
    if not rows:
        return KeyProtectorInfo(present=True, readable=False)
    guardians = [GuardianRef(s.thumbprint, e.thumbprint, s.subject) for s, e in rows]
    owner_index = next((i for i, (s, _e) in enumerate(rows) if _signed_by(data, s)), 0)
    return KeyProtectorInfo(present=True, guardians=guardians, owner=guardians[owner_index])
