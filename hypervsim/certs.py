"""Real X.509 certificates for simulated guardians: generation as Windows does it, thumbprints, PFX in and out."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

# Windows writes a guardian's full name into the common name even past X.520's 64 characters; so do we, quietly.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)

VALIDITY = dt.timedelta(days=3652)  # Hyper-V's self-signed guardian certificates are valid about ten years
KEY_SIZE = 2048

# Generating RSA keys is the slow part of seeding a host. Scenario seeds ask for keys by a stable label so a
# test session reuses them; certificates are still new (fresh serial and dates) so thumbprints stay unique.
_key_cache: dict[str, rsa.RSAPrivateKey] = {}
_key_lock = threading.Lock()


class PfxPasswordError(ValueError):
    """The PFX could not be decrypted with the given password."""


def new_key(label: str | None = None) -> rsa.RSAPrivateKey:
    if label is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    with _key_lock:
        if label not in _key_cache:
            _key_cache[label] = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        return _key_cache[label]


@dataclass
class Certificate:
    """A certificate as a Windows store holds it: DER bytes, and the private key when the store has it."""

    der: bytes
    key: rsa.RSAPrivateKey | None = field(default=None, repr=False)

    @cached_property
    def x509(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.der)

    @property
    def subject(self) -> str:
        return windows_name(self.x509.subject)

    @property
    def issuer(self) -> str:
        return windows_name(self.x509.issuer)

    @property
    def not_before(self) -> dt.datetime:
        return self.x509.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.x509.not_valid_after_utc

    @property
    def serial_number(self) -> str:
        return format(self.x509.serial_number, "X")

    @property
    def has_private_key(self) -> bool:
        return self.key is not None

    def public_only(self) -> Certificate:
        return Certificate(self.der)

    def to_pem(self) -> str:
        pem = self.x509.public_bytes(serialization.Encoding.PEM).decode()
        if self.key is not None:
            pem += self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        return pem

    @classmethod
    def from_pem(cls, pem: str) -> Certificate:
        data = pem.encode()
        cert = x509.load_pem_x509_certificate(data)
        key = None
        if b"PRIVATE KEY" in data:
            loaded = serialization.load_pem_private_key(data[data.index(b"-----BEGIN PRIVATE KEY") :], None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            key = loaded
        return cls(cert.public_bytes(serialization.Encoding.DER), key)


def thumbprint(der: bytes) -> str:
    """Windows' thumbprint: the SHA-1 of the DER encoding, upper-case hex."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def windows_name(name: x509.Name) -> str:
    """A distinguished name the way .NET prints it: most specific part first, ', ' between parts."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def guardian_subject(role: str, guardian: str, host: str) -> str:
    """The common name Hyper-V gives a generated guardian certificate; role is Signing or Encryption."""
    return f"Shielded VM {role} Certificate ({guardian}) ({host})"


def self_signed(common_name: str, *, encryption: bool, key_label: str | None = None) -> Certificate:
    key = new_key(key_label)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = signed(key, common_name, encryption=encryption, not_before=now - dt.timedelta(minutes=5), validity=VALIDITY)
    return Certificate(cert.public_bytes(serialization.Encoding.DER), key)


def guardian_certificate(
    key: rsa.RSAPrivateKey, role: str, guardian: str, host: str, not_before: dt.datetime, days: int
) -> x509.Certificate:
    """A guardian's Signing or Encryption certificate as Hyper-V makes it, with chosen dates (expired or expiring
    ones included)."""
    common_name = guardian_subject(role, guardian, host)
    return signed(key, common_name, encryption=role == "Encryption", not_before=not_before, validity=dt.timedelta(days))


def signed(
    key: rsa.RSAPrivateKey, common_name: str, *, encryption: bool, not_before: dt.datetime, validity: dt.timedelta
) -> x509.Certificate:
    """Self-signed, SHA-256, with the key usage Hyper-V gives a guardian's signing or encryption certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)])
    usage = x509.KeyUsage(
        digital_signature=not encryption,
        content_commitment=False,
        key_encipherment=encryption,
        data_encipherment=encryption,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + validity)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


def guardian_pair(guardian: str, host: str, key_label: str | None = None) -> tuple[Certificate, Certificate]:
    """A signing and an encryption certificate as `New-HgsGuardian -GenerateCertificates` makes them."""
    signing = self_signed(
        guardian_subject("Signing", guardian, host),
        encryption=False,
        key_label=f"{key_label}/signing" if key_label else None,
    )
    encryption = self_signed(
        guardian_subject("Encryption", guardian, host),
        encryption=True,
        key_label=f"{key_label}/encryption" if key_label else None,
    )
    return signing, encryption


def export_pfx(cert: Certificate, password: str, *, legacy: bool = False) -> bytes:
    """PKCS#12 as Export-PfxCertificate writes it: with the private key when there is one, else certificate only.

    Windows Server 2016 writes 3DES/SHA1 PFX files (what older export scripts produced); 2019+ writes AES-256.
    """
    if legacy:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2000)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the format old PFX files use
            .build(password.encode())
        )
    else:
        encryption = serialization.BestAvailableEncryption(password.encode())
    if cert.key is None:
        return pkcs12.serialize_key_and_certificates(None, None, None, [cert.x509], encryption)
    return pkcs12.serialize_key_and_certificates(None, cert.key, cert.x509, None, encryption)


def load_pfx(data: bytes, password: str) -> Certificate:
    """The certificate and private key of a PFX; PfxPasswordError when the password does not open it."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as exc:
        raise PfxPasswordError("invalid password or PKCS#12 data") from exc
    cert = cert or (extra[0] if extra else None)  # a certificate-only PFX holds it among the "additional" ones
    if cert is None:
        raise PfxPasswordError("no certificate in PKCS#12 data")
    rsa_key = key if isinstance(key, rsa.RSAPrivateKey) else None
    return Certificate(cert.public_bytes(serialization.Encoding.DER), rsa_key)
