"""What a PFX costs to open, read from its DER structure before any password is tried.

Opening a PKCS#12 file runs its key derivations (the MAC's, each encrypted part's, each shrouded key's) as many
rounds as the file asks for: a file asking for 20 million rounds costs seconds of CPU every time it is opened, and
2^31 costs half an hour. So the vault reads the round counts first, with the small DER walk below
(PFX → MacData, and AuthenticatedSafe → ContentInfo → SafeContents → SafeBag → PBE parameters), and refuses a
file that asks for more than Windows or OpenSSL ever write, before `cryptography`'s loader sees it.

Bags inside an *encrypted* SafeContents (Windows and OpenSSL put the certificates there, the shrouded key in the
plain part) can only be read with the password: `pfx_contents.check_encrypted_parts` decrypts those parts (their
own rounds already capped here) and walks them the same way, so a costly key cannot hide inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

# A guardian PFX is a few kilobytes; anything far larger is not one and is not read further.
MAX_PFX_BYTES = 256 * 1024
# Windows writes 2000 rounds, OpenSSL 2048, `cryptography` 20000; 100000 leaves room and still opens in well under
# a second. The total bounds a file that repeats many cheap derivations.
MAX_KDF_ROUNDS = 100_000
MAX_TOTAL_KDF_ROUNDS = 300_000
# A guardian PFX holds one certificate (self-signed) and one key.
MAX_CERTIFICATES = 4
MAX_BAGS = 16
MAX_DEPTH = 24  # nesting of DER elements, so a hostile file cannot recurse without end

PKCS = bytes.fromhex("2a864886f70d01")  # 1.2.840.113549.1
OID_DATA = PKCS + bytes.fromhex("0701")
OID_ENCRYPTED_DATA = PKCS + bytes.fromhex("0706")
OID_PBES2 = PKCS + bytes.fromhex("050d")
OID_PBMAC1 = PKCS + bytes.fromhex("050e")
OID_SHROUDED_KEY_BAG = PKCS + bytes.fromhex("0c0a0102")
OID_CERT_BAG = PKCS + bytes.fromhex("0c0a0103")
OID_SAFE_CONTENTS_BAG = PKCS + bytes.fromhex("0c0a0106")

SEQUENCE, INTEGER, OCTET_STRING, OID = 0x30, 0x02, 0x04, 0x06


class PfxShapeError(ValueError):
    """The file is not a PKCS#12 structure the vault can read, or asks for more work than it allows."""


class PfxTooCostly(PfxShapeError):
    pass


@dataclass(frozen=True)
class Element:
    """One DER (or BER) element: its tag byte and its content octets."""

    tag: int
    body: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)


@dataclass
class PfxCost:
    """The key derivations a PFX asks for (what, rounds) and the certificates visible without the password."""

    derivations: list[tuple[str, int]] = field(default_factory=list)
    bags: int = 0
    certificates: int = 0
    encrypted_parts: list[tuple[Element, bytes]] = field(default_factory=list)  # (algorithm, ciphertext)

    @property
    def total_rounds(self) -> int:
        return sum(rounds for _what, rounds in self.derivations)


def read_element(data: bytes, offset: int = 0, depth: int = 0) -> tuple[Element, int]:
    """The element at `offset` and the offset after it; BER indefinite lengths (some exporters write them) too."""
    if depth > MAX_DEPTH:
        raise PfxShapeError(_("is nested too deeply to be a PFX"))
    if offset + 2 > len(data) or data[offset] & 0x1F == 0x1F:
        raise PfxShapeError(_("is truncated or not DER"))
    tag, first = data[offset], data[offset + 1]
    start = offset + 2
    if first == 0x80:  # indefinite length: children up to the end-of-contents octets
        if not tag & 0x20:
            raise PfxShapeError(_("is not DER"))
        end = start
        while data[end : end + 2] != b"\x00\x00":
            _child, end = read_element(data, end, depth + 1)
        return Element(tag, data[start:end]), end + 2
    length = first
    if first & 0x80:
        count = first & 0x7F
        if count > 4 or start + count > len(data):
            raise PfxShapeError(_("is truncated or not DER"))
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > len(data):
        raise PfxShapeError(_("is truncated"))
    return Element(tag, data[start : start + length]), start + length


def children(element: Element, depth: int = 0) -> list[Element]:
    items, offset = [], 0
    while offset < len(element.body):
        item, offset = read_element(element.body, offset, depth + 1)
        items.append(item)
    return items


def expect(element: Element, tag: int, what: str) -> Element:
    if element.tag != tag:
        raise PfxShapeError(_("is not a PFX (%(part)s is malformed)") % {"part": what})
    return element


def octets(element: Element) -> bytes:
    """An OCTET STRING's bytes, joining the pieces of a BER constructed one."""
    if element.tag == OCTET_STRING:
        return element.body
    if element.tag == OCTET_STRING | 0x20:
        return b"".join(octets(piece) for piece in children(element))
    raise PfxShapeError(_("is not a PFX (an OCTET STRING is malformed)"))


def integer(element: Element, what: str) -> int:
    return int.from_bytes(expect(element, INTEGER, what).body, "big", signed=True)


def explicit_content(content_info: list[Element]) -> Element:
    """The [0] EXPLICIT content of a ContentInfo (or of a SafeBag)."""
    if len(content_info) < 2 or content_info[1].tag != 0xA0:
        raise PfxShapeError(_("is not a PFX (content is missing)"))
    return children(content_info[1])[0]


def pbe_rounds(algorithm: Element) -> int:
    """Rounds of a password-based AlgorithmIdentifier: PBES2/PBMAC1 (PBKDF2 parameters) or PKCS#12/PBES1 PBE."""
    parts = children(expect(algorithm, SEQUENCE, "an encryption algorithm"))
    if len(parts) < 2 or parts[0].tag != OID:
        raise PfxShapeError(_("is not a PFX (an encryption algorithm is malformed)"))
    params = children(expect(parts[1], SEQUENCE, "encryption parameters"))
    if parts[0].body in (OID_PBES2, OID_PBMAC1):
        kdf = children(expect(params[0], SEQUENCE, "a key derivation"))
        params = children(expect(kdf[1], SEQUENCE, "key derivation parameters"))
    if len(params) < 2:
        raise PfxShapeError(_("is not a PFX (encryption parameters are malformed)"))
    return integer(params[1], "a round count")


def walk_safe_contents(data: bytes, cost: PfxCost, depth: int) -> None:
    for bag in children(expect(read_element(data, 0, depth)[0], SEQUENCE, "SafeContents"), depth):
        cost.bags += 1
        if cost.bags > MAX_BAGS:
            raise PfxTooCostly(
                _("holds more than %(count)d items; a guardian PFX holds a certificate and a key") % {"count": MAX_BAGS}
            )
        parts = children(expect(bag, SEQUENCE, "a SafeBag"), depth)
        kind = expect(parts[0], OID, "a SafeBag").body
        if kind == OID_CERT_BAG:
            cost.certificates += 1
        elif kind == OID_SHROUDED_KEY_BAG:
            key_info = children(expect(explicit_content(parts), SEQUENCE, "a shrouded key"), depth)
            cost.derivations.append(("private key", pbe_rounds(key_info[0])))
        elif kind == OID_SAFE_CONTENTS_BAG:
            walk_safe_contents(explicit_content(parts).body, cost, depth + 4)


def walk_authenticated_safe(content: bytes, cost: PfxCost) -> None:
    for info in children(expect(read_element(content)[0], SEQUENCE, "AuthenticatedSafe")):
        parts = children(expect(info, SEQUENCE, "a ContentInfo"))
        kind = expect(parts[0], OID, "a ContentInfo").body
        if kind == OID_DATA:
            walk_safe_contents(octets(explicit_content(parts)), cost, 2)
        elif kind == OID_ENCRYPTED_DATA:
            encrypted = children(expect(explicit_content(parts), SEQUENCE, "EncryptedData"))
            content_info = children(expect(encrypted[1], SEQUENCE, "EncryptedContentInfo"))
            cost.derivations.append(("encrypted part", pbe_rounds(content_info[1])))
            cost.encrypted_parts.append((content_info[1], ciphertext(content_info)))
        else:
            raise PfxShapeError(_("uses a PKCS#12 layout the console does not read (public-key protection)"))


def ciphertext(content_info: list[Element]) -> bytes:
    """The [0] IMPLICIT encryptedContent of an EncryptedContentInfo (primitive, or BER pieces)."""
    if len(content_info) < 3 or content_info[2].tag not in (0x80, 0xA0):
        raise PfxShapeError(_("is not a PFX (an encrypted part has no content)"))
    content = content_info[2]
    return content.body if content.tag == 0x80 else b"".join(octets(piece) for piece in children(content))


def mac_rounds(mac_data: Element) -> int:
    parts = children(expect(mac_data, SEQUENCE, "MacData"))
    digest_algorithm = children(expect(parts[0], SEQUENCE, "the MAC"))[0]
    if children(digest_algorithm)[0].body == OID_PBMAC1:
        return pbe_rounds(digest_algorithm)
    return integer(parts[2], "the MAC round count") if len(parts) > 2 else 1  # DEFAULT 1


def pfx_cost(data: bytes) -> PfxCost:
    """The derivations and visible certificates of a PFX; PfxShapeError when it is not one the vault reads."""
    try:
        outer, _end = read_element(data)
        parts = children(expect(outer, SEQUENCE, "the file"))
        auth_safe = children(expect(parts[1], SEQUENCE, "AuthenticatedSafe"))
        if expect(auth_safe[0], OID, "AuthenticatedSafe").body != OID_DATA:
            raise PfxShapeError(_("uses a PKCS#12 layout the console does not read (public-key protection)"))
        cost = PfxCost()
        if len(parts) > 2:
            cost.derivations.append(("MAC", mac_rounds(parts[2])))
        walk_authenticated_safe(octets(explicit_content(auth_safe)), cost)
    except IndexError:
        raise PfxShapeError(_("is truncated or not a PFX")) from None
    return cost


def check_pfx_cost(data: bytes) -> PfxCost:
    """Refuse (PfxShapeError, PfxTooCostly) a file too large, too costly to open, or with too many certificates."""
    if len(data) > MAX_PFX_BYTES:
        raise PfxTooCostly(
            _("is %(size)d bytes; a guardian PFX is a few kilobytes (at most %(limit)d)")
            % {"size": len(data), "limit": MAX_PFX_BYTES}
        )
    cost = pfx_cost(data)
    check_limits(cost)
    return cost


def check_limits(cost: PfxCost) -> None:
    for what, rounds in cost.derivations:
        if rounds > MAX_KDF_ROUNDS or rounds < 1:
            raise PfxTooCostly(
                _(
                    "asks for %(rounds)s key-derivation rounds (%(what)s); the console opens at most %(limit)s "
                    "(Windows writes 2,000): export it again with default settings"
                )
                % {"rounds": f"{rounds:,}", "what": what, "limit": f"{MAX_KDF_ROUNDS:,}"}
            )
    if cost.total_rounds > MAX_TOTAL_KDF_ROUNDS:
        raise PfxTooCostly(
            _(
                "asks for %(rounds)s key-derivation rounds in all; the console opens at most %(limit)s: "
                "export it again with default settings"
            )
            % {"rounds": f"{cost.total_rounds:,}", "limit": f"{MAX_TOTAL_KDF_ROUNDS:,}"}
        )
    check_certificate_count(cost.certificates)


def check_certificate_count(count: int) -> None:
    if count > MAX_CERTIFICATES:
        raise PfxTooCostly(
            _("holds %(count)d certificates; a guardian PFX holds one (at most %(limit)d)")
            % {"count": count, "limit": MAX_CERTIFICATES}
        )
