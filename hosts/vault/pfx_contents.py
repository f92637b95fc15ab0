"""The encrypted parts of a PFX, decrypted with the password so their bags obey the same limits as the plain ones.

Only what guardian PFX files use is read: PBES2 (PBKDF2 + AES-CBC, Windows Server 2019 and later, OpenSSL 3) and
PKCS#12 PBE with SHA-1 and TripleDES (Windows Server 2016). A file encrypting its certificates any other way is
refused: a part the console cannot read could hide a key that asks for billions of rounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.utils.translation import gettext as _

from .pfx_limits import (
    OID,
    OID_PBES2,
    PKCS,
    SEQUENCE,
    Element,
    PfxCost,
    PfxShapeError,
    check_limits,
    children,
    expect,
    integer,
    octets,
    read_element,
    walk_safe_contents,
)

OID_PBE_SHA1_3DES = {PKCS + bytes.fromhex("0c0103"): 24, PKCS + bytes.fromhex("0c0104"): 16}  # key bytes
_DIGEST = bytes.fromhex("2a864886f70d02")  # 1.2.840.113549.2: the HMAC PRFs of PBKDF2
PBKDF2_PRFS: dict[bytes, hashes.HashAlgorithm] = {
    _DIGEST + b"\x07": hashes.SHA1(),  # noqa: S303 - PBKDF2's default PRF, as old files use it
    _DIGEST + b"\x08": hashes.SHA224(),
    _DIGEST + b"\x09": hashes.SHA256(),
    _DIGEST + b"\x0a": hashes.SHA384(),
    _DIGEST + b"\x0b": hashes.SHA512(),
}
_AES = bytes.fromhex("6086480165030401")  # 2.16.840.1.101.3.4.1
AES_CBC = {_AES + b"\x02": 16, _AES + b"\x16": 24, _AES + b"\x2a": 32}
DES_EDE3_CBC = bytes.fromhex("2a864886f70d0307")


class UnreadablePart(ValueError):
    """The password does not decrypt an encrypted part (a wrong password, or a damaged file)."""


def check_encrypted_parts(cost: PfxCost, password: str) -> None:
    """Decrypt each encrypted part, walk its bags into `cost` and apply the limits again.

    Raises UnreadablePart when the password does not decrypt a part, PfxShapeError/PfxTooCostly as pfx_limits does.
    """
    try:
        for algorithm, encrypted in cost.encrypted_parts:
            walk_safe_contents(readable_contents(algorithm, encrypted, password), cost, 2)
    except IndexError:
        raise PfxShapeError(_("is not a PFX (an encrypted part is malformed)")) from None
    check_limits(cost)


def readable_contents(algorithm: Element, encrypted: bytes, password: str) -> bytes:
    # A wrong key still unpads correctly once in 256 tries: only a decryption that reads as SafeContents counts.
    for plaintext in decryptions(algorithm, encrypted, password):
        if plaintext is not None and is_safe_contents(plaintext):
            return plaintext
    raise UnreadablePart(_("the password does not decrypt the file"))


def decryptions(algorithm: Element, encrypted: bytes, password: str) -> Iterator[bytes | None]:
    parts = children(expect(algorithm, SEQUENCE, "an encryption algorithm"))
    scheme, params = expect(parts[0], OID, "an encryption algorithm").body, parts[1]
    if scheme == OID_PBES2:
        yield decrypt_pbes2(params, encrypted, password)
    elif scheme in OID_PBE_SHA1_3DES:
        # An empty password is either no password or an empty one, as OpenSSL tries both.
        for secret in [bmp_password(password)] if password else [b"", b"\x00\x00"]:
            yield decrypt_pkcs12_3des(scheme, params, encrypted, secret)
    else:
        raise PfxShapeError(_("encrypts its certificates in a way the console does not read: export it with AES-256"))


def is_safe_contents(data: bytes) -> bool:
    try:
        element, end = read_element(data)
        return element.tag == SEQUENCE and end == len(data) and all(bag.tag == SEQUENCE for bag in children(element))
    except PfxShapeError:
        return False


def decrypt_pbes2(params: Element, encrypted: bytes, password: str) -> bytes | None:
    kdf, scheme = children(expect(params, SEQUENCE, "PBES2 parameters"))[:2]
    kdf_params = children(children(kdf)[1])
    salt, rounds = octets(kdf_params[0]), integer(kdf_params[1], "a round count")
    prf_oid = next((children(p)[0].body for p in kdf_params[2:] if p.tag == SEQUENCE), _DIGEST + b"\x07")
    cipher_oid, iv = children(scheme)[0].body, octets(children(scheme)[1])
    if prf_oid not in PBKDF2_PRFS or (cipher_oid not in AES_CBC and cipher_oid != DES_EDE3_CBC):
        raise PfxShapeError(_("encrypts its certificates in a way the console does not read: export it with AES-256"))
    length = AES_CBC.get(cipher_oid, 24)
    key = PBKDF2HMAC(PBKDF2_PRFS[prf_oid], length, salt, rounds).derive(password.encode())
    algorithm = algorithms.AES(key) if cipher_oid in AES_CBC else TripleDES(key)
    return cbc_decrypt(algorithm, iv, encrypted)


def decrypt_pkcs12_3des(scheme: bytes, params: Element, encrypted: bytes, secret: bytes) -> bytes | None:
    salt_element, rounds_element = children(expect(params, SEQUENCE, "PBE parameters"))[:2]
    salt, rounds = octets(salt_element), integer(rounds_element, "a round count")
    key = pkcs12_kdf(secret, salt, rounds, 1, OID_PBE_SHA1_3DES[scheme])
    iv = pkcs12_kdf(secret, salt, rounds, 2, 8)
    return cbc_decrypt(TripleDES(key), iv, encrypted)


def cbc_decrypt(algorithm: algorithms.AES | TripleDES, iv: bytes, encrypted: bytes) -> bytes | None:
    """The plaintext, or None when the key does not decrypt it (bad padding or length)."""
    try:
        decryptor = Cipher(algorithm, modes.CBC(iv)).decryptor()
        padded = decryptor.update(encrypted) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithm.block_size).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


def bmp_password(password: str) -> bytes:
    """The password as PKCS#12's PBE reads it: UTF-16BE with a closing NUL character."""
    return password.encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(secret: bytes, salt: bytes, rounds: int, purpose: int, size: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-1 (u = 20, v = 64): `purpose` 1 derives a key, 2 an IV."""
    u, v = 20, 64

    def stretch(data: bytes) -> bytes:  # repeated to a whole number of v-byte blocks
        length = v * -(-len(data) // v)
        return (data * (length // len(data) + 1))[:length] if data else b""

    block = stretch(salt) + stretch(secret)
    out = b""
    while len(out) < size:
        digest = bytes([purpose]) * v + block
        for _round in range(rounds):
            digest = hashlib.sha1(digest).digest()  # noqa: S324 - the KDF RFC 7292 defines
        out += digest
        b = int.from_bytes((digest * (v // u + 1))[:v], "big") + 1
        block = b"".join(
            ((int.from_bytes(block[i : i + v], "big") + b) % (1 << (8 * v))).to_bytes(v, "big")
            for i in range(0, len(block), v)
        )
    return out[:size]
