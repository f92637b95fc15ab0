"""The simulated VM key protector: one row per guardian, each embedding its certificates and the sealed transport key.

The real container format is undocumented; what matters to clients is that the raw bytes embed the DER certificates
of every guardian (so thumbprints can be recovered by locating X.509 structures), that the owner signs it, and that a
host can unwrap it only with the private key of some row's encryption certificate. Layout (big-endian):

    b"HGKP" | u16 version | u16 rows | u16 owner row | 16-byte protector id
    per row: u32 len + signing DER | u32 len + encryption DER | u32 len + transport key sealed (RSA-OAEP) to it
    u32 len + owner signature (RSA PKCS#1 v1.5, SHA-256) over everything before it
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hypervsim.certs import Certificate

MAGIC = b"HGKP"
VERSION = 1
NO_KEY_PROTECTOR = bytes([0, 0, 0, 4])  # what Get-VMKeyProtector returns for a VM that never had one
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class KeyProtectorError(ValueError):
    """The bytes are not a key protector, or an operation on it is not allowed."""


@dataclass(frozen=True)
class GuardianRow:
    signing: Certificate
    encryption: Certificate
    sealed_key: bytes


@dataclass(frozen=True)
class KeyProtector:
    rows: tuple[GuardianRow, ...]
    owner_index: int
    protector_id: bytes
    signature: bytes

    @property
    def owner(self) -> GuardianRow:
        return self.rows[self.owner_index]

    @classmethod
    def create(cls, signing: Certificate, encryption: Certificate) -> KeyProtector:
        """A new protector owned by this guardian, with a fresh transport key."""
        if signing.key is None:
            raise KeyProtectorError("owner has no private signing key")
        transport_key = os.urandom(32)
        row = GuardianRow(signing.public_only(), encryption.public_only(), _seal(encryption, transport_key))
        return _signed((row,), 0, os.urandom(16), signing.key)

    def unwrap(self, store: dict[str, Certificate]) -> bytes | None:
        """The transport key, when the store holds the private key of some row's encryption certificate."""
        for row in self.rows:
            held = store.get(row.encryption.thumbprint)
            if held is not None and held.key is not None:
                try:
                    return held.key.decrypt(row.sealed_key, _OAEP)
                except ValueError:
                    continue
        return None

    def grant(self, store: dict[str, Certificate], signing: Certificate, encryption: Certificate) -> KeyProtector:
        """This protector with one more guardian; needs the owner's private keys from the store."""
        owner_signing = store.get(self.owner.signing.thumbprint)
        if owner_signing is None or owner_signing.key is None:
            raise KeyProtectorError("owner signing key not available")
        transport_key = self.unwrap(store)
        if transport_key is None:
            raise KeyProtectorError("key protector could not be unwrapped")
        if any(r.encryption.thumbprint == encryption.thumbprint for r in self.rows):
            return self
        row = GuardianRow(signing.public_only(), encryption.public_only(), _seal(encryption, transport_key))
        return _signed((*self.rows, row), self.owner_index, self.protector_id, owner_signing.key)

    def revoke(self, store: dict[str, Certificate], encryption_thumbprint: str) -> KeyProtector:
        """This protector without the guardian of that encryption certificate; re-signed with the owner's key.

        The owner's row stays: revoking the owner would leave a protector nobody can sign changes to.
        """
        owner_signing = store.get(self.owner.signing.thumbprint)
        if owner_signing is None or owner_signing.key is None:
            raise KeyProtectorError("owner signing key not available")
        keep = [i for i, r in enumerate(self.rows) if r.encryption.thumbprint != encryption_thumbprint.upper()]
        if self.owner_index not in keep:
            raise KeyProtectorError("the owner guardian cannot be revoked")
        if len(keep) == len(self.rows):
            return self
        rows = tuple(self.rows[i] for i in keep)
        return _signed(rows, keep.index(self.owner_index), self.protector_id, owner_signing.key)

    def body(self) -> bytes:
        out = [MAGIC, struct.pack(">HHH", VERSION, len(self.rows), self.owner_index), self.protector_id]
        for row in self.rows:
            for part in (row.signing.der, row.encryption.der, row.sealed_key):
                out.append(struct.pack(">I", len(part)) + part)
        return b"".join(out)

    def to_bytes(self) -> bytes:
        return self.body() + struct.pack(">I", len(self.signature)) + self.signature

    def verify(self) -> bool:
        public_key = self.owner.signing.x509.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        try:
            public_key.verify(self.signature, self.body(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def _seal(encryption: Certificate, transport_key: bytes) -> bytes:
    public_key = encryption.x509.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    return public_key.encrypt(transport_key, _OAEP)


def _signed(rows: tuple[GuardianRow, ...], owner: int, pid: bytes, key: rsa.RSAPrivateKey) -> KeyProtector:
    unsigned = KeyProtector(rows, owner, pid, b"")
    return KeyProtector(rows, owner, pid, key.sign(unsigned.body(), padding.PKCS1v15(), hashes.SHA256()))


def has_key_protector(data: bytes) -> bool:
    return len(data) >= 16


def parse(data: bytes) -> KeyProtector:
    """Read a key protector; KeyProtectorError when the bytes are not a well-formed, owner-signed one."""
    reader = _Reader(data)
    if reader.take(4) != MAGIC:
        raise KeyProtectorError("not a key protector")
    version, count, owner = struct.unpack(">HHH", reader.take(6))
    if version != VERSION or count == 0 or owner >= count or count > 64:
        raise KeyProtectorError("unsupported key protector")
    pid = reader.take(16)
    rows = []
    for _ in range(count):
        signing, encryption = Certificate(reader.chunk()), Certificate(reader.chunk())
        try:
            signing.x509, encryption.x509  # noqa: B018 - parse now so a bad certificate fails here
        except ValueError as exc:
            raise KeyProtectorError("bad certificate in key protector") from exc
        rows.append(GuardianRow(signing, encryption, reader.chunk()))
    kp = KeyProtector(tuple(rows), owner, pid, reader.chunk())
    if not reader.done() or not kp.verify():
        raise KeyProtectorError("key protector signature is not valid")
    return kp


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise KeyProtectorError("truncated key protector")
        part = self.data[self.pos : self.pos + n]
        self.pos += n
        return part

    def chunk(self) -> bytes:
        (length,) = struct.unpack(">I", self.take(4))
        return self.take(length)

    def done(self) -> bool:
        return self.pos == len(self.data)
