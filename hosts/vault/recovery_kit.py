"""The disaster-recovery kit's file format: a ZIP archive sealed with a passphrase.

    header  = b"GCKIT" | version (1) | KDF (1 = scrypt) | log2(N) | r | p | salt (16 bytes) | nonce (12 bytes)
    payload = AES-256-GCM(key = scrypt(passphrase, salt, N, r, p), nonce, ZIP, associated data = header)

The header is authenticated as associated data, so changing any of its bytes (a cheaper KDF, another salt) fails the
tag exactly as a changed byte of the archive does. GCM cannot tell a wrong passphrase from a changed byte: the
refusal says both. A header asking for an absurd scrypt cost is refused before any work (a crafted file cannot make
the console or `verify_recovery_kit` use gigabytes of memory).

What is inside (written by jobs/workflows/recovery_kit, read back here): index.json, index.txt, README.txt and, per
escrowed pair, guardians/<NN>-<name>-<signing thumbprint start>/ with <name>-signing.pfx, <name>-encryption.pfx (the
seed scripts' UntrustedGuardian-*.pfx naming) and pfx-password.txt.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from .pfx import PfxError, check_pair

MAGIC = b"GCKIT"
VERSION = 1
KDF_SCRYPT = 1
SCRYPT_R, SCRYPT_P = 8, 1
LOG2N_RANGE = range(14, 21)  # 2^14 (tests) … 2^20 (1 GiB of memory: a bound, not a choice)
_HEADER = struct.Struct(">5sBBBBB16s12s")
HEADER_SIZE = _HEADER.size
MIN_PASSPHRASE = 16
INDEX_JSON, INDEX_TEXT, README = "index.json", "index.txt", "README.txt"
PASSWORD_FILE = "pfx-password.txt"  # noqa: S105 - a file name, not a password


class KitError(ValueError):
    """A kit refused; str() says why, for the person holding the file (never the passphrase)."""


def check_passphrase(passphrase: str) -> None:
    """At least MIN_PASSPHRASE characters and none of the console's password rules broken (not a common password);
    raises ValidationError with the reasons."""
    short = len(passphrase) < MIN_PASSPHRASE
    problems = [_("Use at least %(count)d characters.") % {"count": MIN_PASSPHRASE}] if short else []
    try:
        validate_password(passphrase)
    except ValidationError as exc:
        problems += list(exc.messages)
    if problems:
        raise ValidationError(problems)


def _key(passphrase: str, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal(archive: bytes, passphrase: str, log2n: int) -> bytes:
    """The archive encrypted under the passphrase, header first."""
    if log2n not in LOG2N_RANGE:
        raise ValueError(f"scrypt cost 2^{log2n} is outside 2^{LOG2N_RANGE.start}…2^{LOG2N_RANGE.stop - 1}")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2n, SCRYPT_R, SCRYPT_P, salt, nonce)
    return header + AESGCM(_key(passphrase, salt, log2n, SCRYPT_R, SCRYPT_P)).encrypt(nonce, archive, header)


def unseal(data: bytes, passphrase: str) -> bytes:
    """The archive inside a kit, or KitError saying why not."""
    if len(data) < HEADER_SIZE + 16 or not data.startswith(MAGIC):
        raise KitError(_("This is not a Guardian Console recovery kit (its first bytes are not a kit header)."))
    magic, version, kdf, log2n, r, p, salt, nonce = _HEADER.unpack(data[:HEADER_SIZE])
    if version != VERSION or kdf != KDF_SCRYPT:
        raise KitError(
            _("This kit's format (version %(version)d, KDF %(kdf)d) is not one this console reads.")
            % {"version": version, "kdf": kdf}
        )
    if log2n not in LOG2N_RANGE or (r, p) != (SCRYPT_R, SCRYPT_P):
        raise KitError(_("This kit's header asks for key-derivation parameters no kit is written with: refused."))
    try:
        return AESGCM(_key(passphrase, salt, log2n, r, p)).decrypt(nonce, data[HEADER_SIZE:], data[:HEADER_SIZE])
    except InvalidTag:
        raise KitError(
            _(
                "Refused: the passphrase is wrong, or the file was altered or damaged (the authentication tag does "
                "not match). Nothing in it can be trusted; try the passphrase again, or use another copy of the kit."
            )
        ) from None


@dataclass
class KitContents:
    """A kit opened and checked: its files, its index, and per guardian folder what the check of its pair found."""

    files: dict[str, bytes]
    index: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def text(self, name: str) -> str:
        return self.files[name].decode("utf-8")


def read(data: bytes, passphrase: str) -> KitContents:
    """Unseal a kit and check it: the archive and its index read, and every guardian's two PFX files open with the
    password beside them and match the thumbprints the index records."""
    with zipfile.ZipFile(io.BytesIO(unseal(data, passphrase))) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    if INDEX_JSON not in files or README not in files:
        raise KitError(_("The kit opened but holds no index or README: it was not written by the console."))
    contents = KitContents(files, json.loads(files[INDEX_JSON]))
    for guardian in contents.index.get("guardians", []):
        contents.problems += _check_guardian(files, guardian)
    return contents


def _check_guardian(files: dict[str, bytes], guardian: dict[str, Any]) -> list[str]:
    folder = guardian["folder"]
    try:
        signing, encryption = files[guardian["signing_file"]], files[guardian["encryption_file"]]
        password = files[f"{folder}/{PASSWORD_FILE}"].decode("utf-8").strip()
    except KeyError as exc:
        return [_("%(folder)s: %(file)s is missing") % {"folder": folder, "file": exc.args[0]}]
    expected = (guardian["signing_thumbprint"], guardian["encryption_thumbprint"])
    try:
        check_pair(signing, encryption, password, allow_expired=True, expect_thumbprints=expected)
    except PfxError as exc:
        return [f"{folder}: {exc}"]
    return []
