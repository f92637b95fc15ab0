"""The simulated VM key protector: one row per guardian, each embedding its certificates and the sealed transport key.

The real container format is undocumented; what matters to clients is that the owner signs it and that a host can
unwrap it only with the private key of some row's encryption certificate. It has two spellings, and parse() reads
both. The binary one embeds the DER certificates of every guardian (thumbprints can be recovered by locating X.509
structures); it is what the model stores. Layout (big-endian):

    b"HGKP" | u16 version | u16 rows | u16 owner row | 16-byte protector id
    per row: u32 len + signing DER | u32 len + encryption DER | u32 len + transport key sealed (RSA-OAEP) to it
    u32 len + owner signature (RSA PKCS#1 v1.5, SHA-256) over everything before it

The opaque one is what a host strict about `opaque_key_protector` hands out: XML with the certificates in base64, as
the real format is believed to be (domain.md), so no DER certificate can be found by scanning the bytes. The
signature in it is the same one, over the binary body.
"""

from __future__ import annotations

import base64
import os
import struct
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

import defusedxml.ElementTree as SafeXml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hypervsim.certs import Certificate

MAGIC = b"HGKP"
VERSION = 1
NO_KEY_PROTECTOR = bytes([0, 0, 0, 4])  # what Get-VMKeyProtector returns for a VM that never had one
XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
XML_PARTS = ("SigningCertificate", "EncryptionCertificate", "WrappedKey")
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

    def to_xml(self) -> bytes:
        """The opaque spelling: the same protector as XML, certificates and keys in base64."""
        root = ElementTree.Element(
            "KeyProtector",
            Version=str(VERSION),
            Id=str(uuid.UUID(bytes=self.protector_id)),
            Owner=str(self.owner_index),
        )
        for row in self.rows:
            element = ElementTree.SubElement(root, "Guardian")
            for tag, part in zip(XML_PARTS, (row.signing.der, row.encryption.der, row.sealed_key), strict=True):
                ElementTree.SubElement(element, tag).text = base64.b64encode(part).decode()
        ElementTree.SubElement(root, "Signature").text = base64.b64encode(self.signature).decode()
        return XML_DECLARATION + ElementTree.tostring(root)

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


def spelled(data: bytes, opaque: bool) -> bytes:
    """A protector's bytes as a host hands them out: the opaque (XML) spelling when asked for, else as stored.
    Bytes that are no key protector (a VM's 0,0,0,4) stay as they are."""
    if not opaque:
        return data
    try:
        return parse(data).to_xml()
    except KeyProtectorError:
        return data


def parse(data: bytes) -> KeyProtector:
    """Read a key protector in either spelling; KeyProtectorError when it is not a well-formed, owner-signed one."""
    kp = _parse_xml(data) if data.lstrip().startswith(b"<") else _parse_binary(data)
    if not kp.verify():
        raise KeyProtectorError("key protector signature is not valid")
    return kp


def _parse_xml(data: bytes) -> KeyProtector:
    try:
        root = SafeXml.fromstring(data)
        rows = tuple(
            GuardianRow(*(_certificate(g, XML_PARTS[0]), _certificate(g, XML_PARTS[1])), _b64(g, XML_PARTS[2]))
            for g in root.findall("Guardian")
        )
        owner = int(root.get("Owner", "0"))
        protector_id = uuid.UUID(root.get("Id", "")).bytes
        signature = _b64(root, "Signature")
    except (ValueError, TypeError, SafeXml.ParseError) as exc:
        raise KeyProtectorError("not a key protector") from exc
    if root.tag != "KeyProtector" or root.get("Version") != str(VERSION) or not rows or not 0 <= owner < len(rows):
        raise KeyProtectorError("unsupported key protector")
    return KeyProtector(rows, owner, protector_id, signature)


def _b64(parent: ElementTree.Element, tag: str) -> bytes:
    return base64.b64decode(parent.findtext(tag) or "", validate=True)


def _certificate(parent: ElementTree.Element, tag: str) -> Certificate:
    cert = Certificate(_b64(parent, tag))
    cert.x509  # noqa: B018 - parse now so a bad certificate fails here (ValueError)
    return cert


def _parse_binary(data: bytes) -> KeyProtector:
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
    if not reader.done():
        raise KeyProtectorError("trailing bytes after the key protector")
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
