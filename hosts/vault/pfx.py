"""Reading and checking guardian PFX pairs: what the vault accepts, and a clear reason for what it refuses.

A local guardian is two self-signed certificates with private keys, exported by Windows (or by the well-known
scripts) as `UntrustedGuardian-signing.pfx` and `UntrustedGuardian-encryption.pfx` under one password. Before the
vault stores or hands out such a pair it proves the pair is usable: both files open with the password, each holds a
private key matching its certificate, the signing key signs, the encryption key decrypts, and the two certificates
were generated together. Messages never contain the password or key material.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from django.utils.translation import gettext as _

from .pfx_contents import UnreadablePart, check_encrypted_parts
from .pfx_limits import PfxShapeError, PfxTooCostly, check_certificate_count, check_pfx_cost

SIGNING_FILE = "UntrustedGuardian-signing.pfx"
ENCRYPTION_FILE = "UntrustedGuardian-encryption.pfx"

# Windows names generated certificates "Shielded VM Signing Certificate (<guardian>) (<host>)".
WINDOWS_SUBJECT = re.compile(
    r"^CN=Shielded VM (?P<role>Signing|Encryption) Certificate \((?P<guardian>.+)\) \((?P<host>[^()]+)\)$"
)
# Windows creates both certificates of a guardian in the same second; pairs found in a store are matched by this.
SAME_GENERATION = timedelta(minutes=10)


class PfxError(ValueError):
    """A PFX (pair) the vault refuses; str() is a message for the person who supplied it."""


class NotAPfx(PfxError):
    pass


class WrongPassword(PfxError):
    pass


class MissingPrivateKey(PfxError):
    pass


class MismatchedPair(PfxError):
    pass


class ExpiredPair(PfxError):
    pass


class TooCostly(PfxError):
    """Too large, too many certificates, or too many key-derivation rounds to open (pfx_limits)."""


@dataclass(frozen=True)
class CertificateFacts:
    """The public facts of one certificate, as Windows shows them (thumbprint = upper-case SHA-1 of the DER)."""

    thumbprint: str
    subject: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class GuardianPair:
    """A checked pair: both certificates' facts and the guardian/host names read from Windows-style subjects."""

    signing: CertificateFacts
    encryption: CertificateFacts
    guardian_name: str
    host_name: str

    @property
    def not_before(self) -> datetime:
        return max(self.signing.not_before, self.encryption.not_before)

    @property
    def not_after(self) -> datetime:
        return min(self.signing.not_after, self.encryption.not_after)

    def expired(self, now: datetime | None = None) -> bool:
        return self.not_after < (now or datetime.now(UTC))


def thumbprint(cert: x509.Certificate) -> str:
    # SHA-1 is what Windows calls a thumbprint; it identifies, it does not protect.
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


def facts(cert: x509.Certificate) -> CertificateFacts:
    with warnings.catch_warnings():
        # Windows' own guardian CNs exceed X.520's 64 characters; cryptography warns, Windows does not care.
        warnings.simplefilter("ignore", UserWarning)
        subject = cert.subject.rfc4514_string()
    return CertificateFacts(
        thumbprint=thumbprint(cert),
        subject=subject,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def looks_like_pfx(data: bytes) -> bool:
    """The outer DER shape of PKCS#12: SEQUENCE { INTEGER 3, ... } — enough to tell a PFX from anything else."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_byte = data[1]
    offset = 2 if length_byte < 0x80 else 2 + (length_byte & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def read_pfx(data: bytes, password: str, label: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The private key and certificate of one guardian PFX, or a PfxError naming the file (`label`)."""
    if not looks_like_pfx(data):
        raise NotAPfx(_("%(file)s is not a PFX (PKCS#12) file") % {"file": label})
    check_cost(data, password, label)
    try:
        key, cert, others = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        raise WrongPassword(
            _("the password does not open %(file)s (wrong password, or the file is damaged)") % {"file": label}
        ) from None
    check_cost_after_opening(len(others) + (cert is not None), label)
    if cert is None and not others:
        raise NotAPfx(_("%(file)s holds no certificate") % {"file": label})
    if key is None or cert is None:
        raise MissingPrivateKey(
            _("%(file)s holds no private key, so it cannot unlock a VM (export it with its key)") % {"file": label}
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise NotAPfx(_("%(file)s holds a non-RSA key; Hyper-V guardians use RSA keys") % {"file": label})
    return key, cert


def check_cost(data: bytes, password: str, label: str) -> None:
    """Before the loader runs: size, round counts and certificates within the limits of pfx_limits, the encrypted
    parts' too (decrypted here: their own rounds are checked first)."""
    try:
        check_encrypted_parts(check_pfx_cost(data), password)
    except UnreadablePart:
        raise WrongPassword(
            _("the password does not open %(file)s (wrong password, or the file is damaged)") % {"file": label}
        ) from None
    except PfxTooCostly as exc:
        raise TooCostly(_("%(file)s %(problem)s") % {"file": label, "problem": exc}) from None
    except PfxShapeError as exc:
        raise NotAPfx(_("%(file)s %(problem)s") % {"file": label, "problem": exc}) from None


def check_cost_after_opening(certificates: int, label: str) -> None:
    # Certificates inside an encrypted part are only countable now; the rounds to get here were already capped.
    try:
        check_certificate_count(certificates)
    except PfxTooCostly as exc:
        raise TooCostly(_("%(file)s %(problem)s") % {"file": label, "problem": exc}) from None


def check_signing_key(key: rsa.RSAPrivateKey, cert: x509.Certificate, label: str) -> None:
    probe = b"guardian console signing probe"
    signature = key.sign(probe, padding.PKCS1v15(), hashes.SHA256())
    public = cert.public_key()
    try:
        if not isinstance(public, rsa.RSAPublicKey):
            raise InvalidSignature
        public.verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise MismatchedPair(
            _("the private key in %(file)s does not belong to its certificate") % {"file": label}
        ) from None


def check_encryption_key(key: rsa.RSAPrivateKey, cert: x509.Certificate, label: str) -> None:
    probe = b"guardian console encryption probe"
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise MismatchedPair(_("the certificate in %(file)s has no RSA public key") % {"file": label})
    try:
        ok = key.decrypt(public.encrypt(probe, oaep), oaep) == probe
    except ValueError:
        ok = False
    if not ok:
        raise MismatchedPair(_("the private key in %(file)s does not belong to its certificate") % {"file": label})


def windows_subject(subject: str) -> re.Match[str] | None:
    return WINDOWS_SUBJECT.match(subject)


def check_generated_together(signing: CertificateFacts, encryption: CertificateFacts) -> tuple[str, str]:
    """(guardian name, host name) when the subjects follow Windows' pattern; raise when they cannot be a pair."""
    if signing.thumbprint == encryption.thumbprint:
        raise MismatchedPair(
            _("both files hold the same certificate; a guardian needs a signing and an encryption one")
        )
    sign_match, enc_match = windows_subject(signing.subject), windows_subject(encryption.subject)
    if sign_match and sign_match["role"] == "Encryption" and enc_match and enc_match["role"] == "Signing":
        raise MismatchedPair(_("the two files are swapped: the signing file holds the encryption certificate"))
    if sign_match and sign_match["role"] != "Signing":
        raise MismatchedPair(
            _("the signing file holds %(subject)s, not a signing certificate") % {"subject": signing.subject}
        )
    if enc_match and enc_match["role"] != "Encryption":
        raise MismatchedPair(
            _("the encryption file holds %(subject)s, not an encryption certificate") % {"subject": encryption.subject}
        )
    if not (sign_match and enc_match):
        return "", ""
    same_names = (sign_match["guardian"], sign_match["host"]) == (enc_match["guardian"], enc_match["host"])
    same_time = abs(signing.not_before - encryption.not_before) <= SAME_GENERATION
    if not (same_names and same_time):
        raise MismatchedPair(
            _(
                "the two certificates do not belong together: %(signing)s (from %(signing_from)s) and "
                "%(encryption)s (from %(encryption_from)s)"
            )
            % {
                "signing": signing.subject,
                "signing_from": f"{signing.not_before:%Y-%m-%d %H:%M}",
                "encryption": encryption.subject,
                "encryption_from": f"{encryption.not_before:%Y-%m-%d %H:%M}",
            }
        )
    return sign_match["guardian"], sign_match["host"]


def check_pair(
    signing_pfx: bytes,
    encryption_pfx: bytes,
    password: str,
    *,
    allow_expired: bool = False,
    expect_thumbprints: tuple[str, str] | None = None,
    now: datetime | None = None,
) -> GuardianPair:
    """Prove a PFX pair is a usable guardian; return its facts or raise a PfxError with the reason."""
    sign_key, sign_cert = read_pfx(signing_pfx, password, SIGNING_FILE)
    enc_key, enc_cert = read_pfx(encryption_pfx, password, ENCRYPTION_FILE)
    check_signing_key(sign_key, sign_cert, SIGNING_FILE)
    check_encryption_key(enc_key, enc_cert, ENCRYPTION_FILE)
    signing, encryption = facts(sign_cert), facts(enc_cert)
    guardian_name, host_name = check_generated_together(signing, encryption)
    pair = GuardianPair(signing, encryption, guardian_name, host_name)
    if expect_thumbprints and (signing.thumbprint, encryption.thumbprint) != tuple(expect_thumbprints):
        raise MismatchedPair(
            _(
                "the exported certificates (%(signing)s / %(encryption)s) are not the guardian's "
                "(%(expected_signing)s / %(expected_encryption)s)"
            )
            % {
                "signing": signing.thumbprint,
                "encryption": encryption.thumbprint,
                "expected_signing": expect_thumbprints[0],
                "expected_encryption": expect_thumbprints[1],
            }
        )
    if not allow_expired and pair.expired(now):
        raise ExpiredPair(
            _(
                "the pair expired on %(date)s; it can still unlock VMs sealed to it — "
                "store it anyway by accepting expired certificates"
            )
            % {"date": f"{pair.not_after:%Y-%m-%d}"}
        )
    return pair
