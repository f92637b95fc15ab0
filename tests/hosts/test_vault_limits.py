"""PFX limits: a file that asks for too much work is refused before it is opened, on upload and on every open."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import pkcs12
from django.test import Client

from hosts import crypto
from hosts.fields import seal_bytes
from hosts.vault import pfx
from hosts.vault.models import EscrowedPair
from hosts.vault.pfx_contents import check_encrypted_parts
from hosts.vault.pfx_limits import MAX_KDF_ROUNDS, OID_DATA, Element, children, octets, pfx_cost, read_element
from hosts.vault.services import store_pair
from tests.hosts.test_vault import upload
from tests.hosts.test_vault_support import PASSWORD, certificate, make_pair, rsa_key

HOSTILE_ROUNDS = 20_000_000


@cache
def guardian_pfx(
    rounds: int, *, role: str = "Signing", slot: int = 0, extra_certs: int = 0, legacy: bool = False
) -> bytes:
    """A Windows-style guardian PFX whose key derivations (encrypted part, key) ask for `rounds` rounds.

    Past the limit the file is written with 2,000 rounds and its round counts are then rewritten: it is refused
    before any derivation runs, so what it would decrypt to does not matter, and writing it for real would run the
    20 million rounds (seconds of CPU in each pytest process)."""
    if rounds > MAX_KDF_ROUNDS:
        data = with_kdf_rounds(guardian_pfx(2000, role=role, slot=slot, extra_certs=extra_certs, legacy=legacy), rounds)
        assert dict(pfx_cost(data).derivations) == {"MAC": 2048, "encrypted part": rounds, "private key": rounds}
        return data
    key = rsa_key(slot)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    cert = certificate(key, role, "UntrustedGuardian", "HV01", start, 3650)
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(rounds)
    if legacy:  # Windows Server 2016's 3DES/SHA-1 files
        legacy_mac = hashes.SHA1()  # noqa: S303 - the format old PFX files use
        builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(legacy_mac)
    others = [cert] * extra_certs
    return pkcs12.serialize_key_and_certificates(
        b"guardian", key, cert, others or None, builder.build(PASSWORD.encode())
    )


def hostile_pair() -> tuple[bytes, bytes]:
    _signing, encryption = make_pair()
    return guardian_pfx(HOSTILE_ROUNDS), encryption


@pytest.mark.parametrize("legacy", [False, True])
def test_round_counts_are_read_from_the_structure(legacy: bool) -> None:
    cost = pfx_cost(guardian_pfx(2000, legacy=legacy))
    assert sorted(what for what, _rounds in cost.derivations) == ["MAC", "encrypted part", "private key"]
    assert dict(cost.derivations) == {"MAC": 2048, "encrypted part": 2000, "private key": 2000}  # MAC: the library's


def der(tag: int, body: bytes) -> bytes:
    length = len(body).to_bytes((len(body).bit_length() + 7) // 8 or 1, "big")
    return bytes([tag]) + (length if len(body) < 0x80 else bytes([0x80 | len(length)]) + length) + body


def with_mac_rounds(data: bytes, rounds: int) -> bytes:
    """The PFX with its MacData's round count replaced (no library writes a MAC with other than 2048 rounds)."""
    version, auth_safe, mac_data = children(read_element(data)[0])
    digest, salt, _rounds = children(mac_data)
    mac = der(
        0x30, b"".join(der(part.tag, part.body) for part in (digest, salt)) + der(0x02, rounds.to_bytes(4, "big"))
    )
    return der(0x30, der(version.tag, version.body) + der(auth_safe.tag, auth_safe.body) + mac)


def with_kdf_rounds(data: bytes, rounds: int, written: int = 2000) -> bytes:
    """The PFX with each round count `written` (the INTEGER after a salt's OCTET STRING, in PBKDF2's and PKCS#12's
    parameters) replaced by `rounds`, in the OCTET STRINGs that hold the authenticated safe and its parts too."""

    def rewrite(element: Element) -> bytes:
        if element.tag == 0x04:  # an OCTET STRING: DER inside (the safe and its parts), or bytes (salts, keys)
            with contextlib.suppress(ValueError, IndexError):
                inner, end = read_element(element.body)
                if end == len(element.body) and inner.constructed:
                    return der(0x04, rewrite(inner))
            return reencode(element)
        if not element.constructed:
            return reencode(element)
        parts, previous = [], None
        for child in children(element):
            after_salt = previous is not None and previous.tag == 0x04
            if after_salt and child.tag == 0x02 and int.from_bytes(child.body, "big") == written:
                parts.append(der(0x02, rounds.to_bytes(rounds.bit_length() // 8 + 1, "big")))
            else:
                parts.append(rewrite(child))
            previous = child
        return der(element.tag, b"".join(parts))

    return rewrite(read_element(data)[0])


def test_indefinite_lengths_as_some_exporters_write_them_are_read_too() -> None:
    data = guardian_pfx(2000)
    ber = b"\x30\x80" + read_element(data)[0].body + b"\x00\x00"
    assert pfx_cost(ber).derivations == pfx_cost(data).derivations


def test_pairs_as_windows_and_this_library_write_them_still_open() -> None:
    signing, encryption = make_pair()
    assert pfx.check_pair(signing, encryption, PASSWORD).guardian_name == "UntrustedGuardian"
    assert pfx.read_pfx(guardian_pfx(2000, legacy=True), PASSWORD, "legacy.pfx")
    assert pfx.read_pfx(guardian_pfx(MAX_KDF_ROUNDS), PASSWORD, "at-the-limit.pfx")


def test_twenty_million_rounds_are_refused_in_well_under_a_second() -> None:
    signing, encryption = hostile_pair()
    started = time.monotonic()
    with pytest.raises(pfx.TooCostly, match="UntrustedGuardian-signing.pfx asks for 20,000,000 key-derivation rounds"):
        pfx.check_pair(signing, encryption, PASSWORD)
    assert time.monotonic() - started < 0.5


def test_upload_of_a_twenty_million_round_pair_is_refused_with_a_clear_message(operator_client: Client) -> None:
    signing, encryption = hostile_pair()
    started = time.monotonic()
    page = upload(operator_client, signing, encryption).content.decode()
    assert time.monotonic() - started < 1.0
    assert "asks for 20,000,000 key-derivation rounds" in page and "export it again with default settings" in page
    assert EscrowedPair.objects.count() == 0


def test_a_stored_costly_pair_is_refused_on_every_open_without_running_its_rounds(viewer_client: Client) -> None:
    # A row written before the limit existed: the detail page and downloads refuse it quickly, the list never opens it.
    signing, encryption = make_pair()
    row = store_pair(signing, encryption, PASSWORD, user=None, origin=EscrowedPair.ORIGIN_UPLOAD).pair
    costly = guardian_pfx(HOSTILE_ROUNDS)
    row.signing_pfx = seal_bytes(costly)
    row.sha256 = EscrowedPair.digest(row.signing_thumbprint, row.encryption_thumbprint, costly, encryption)
    row.save()
    started = time.monotonic()
    with pytest.raises(crypto.TamperedSecretError, match="key-derivation rounds"):
        row.open()
    assert "key-derivation rounds" in viewer_client.get(f"/vault/{row.pk}/").content.decode()
    assert viewer_client.get("/vault/").status_code == 200
    assert time.monotonic() - started < 1.0


def test_a_mac_asking_for_two_billion_rounds_is_refused() -> None:
    data = with_mac_rounds(guardian_pfx(2000), 2**31 - 1)
    assert dict(pfx_cost(data).derivations)["MAC"] == 2**31 - 1
    with pytest.raises(pfx.TooCostly, match=r"asks for 2,147,483,647 key-derivation rounds \(MAC\)"):
        pfx.read_pfx(data, PASSWORD, "mac.pfx")


def hide_the_key_in_an_encrypted_part(rounds: int) -> bytes:
    """A PFX whose shrouded key (asking for `rounds`) sits inside an encrypted part that asks for 2,000 only, as no
    exporter writes it but an attacker can: the key's rounds are visible only after decrypting that part."""
    base, costly = guardian_pfx(2000), guardian_pfx(rounds)
    certs_part, _key_part = authenticated_safe(base)
    _certs, plain_key_part = authenticated_safe(costly)
    key_contents = octets(children(children(plain_key_part)[1])[0])
    encrypted_data = children(children(certs_part)[1])[0]
    version, content_info = children(encrypted_data)
    content_type, algorithm, _ciphertext = children(content_info)
    kdf, scheme = children(children(algorithm)[1])
    salt, iterations = (part.body for part in children(children(kdf)[1])[:2])
    iv = children(scheme)[1].body
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, int.from_bytes(iterations, "big")).derive(PASSWORD.encode())
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(key_contents) + padder.finalize()) + encryptor.finalize()
    hidden_info = der(0x30, reencode(content_type) + reencode(algorithm) + der(0x80, ciphertext))
    hidden_part = der(0x30, reencode(children(certs_part)[0]) + der(0xA0, der(0x30, reencode(version) + hidden_info)))
    auth_safe = der(0x30, reencode(certs_part) + hidden_part)
    data_info = der(0x30, der(0x06, OID_DATA) + der(0xA0, der(0x04, auth_safe)))
    return der(0x30, der(0x02, b"\x03") + data_info)  # no MAC: it is optional


def authenticated_safe(data: bytes) -> list[Element]:
    outer = children(read_element(data)[0])
    content = octets(children(children(outer[1])[1])[0])
    return children(read_element(content)[0])


def reencode(element: Element) -> bytes:
    return der(element.tag, element.body)


def test_a_costly_key_hidden_in_an_encrypted_part_is_found_before_the_loader_runs() -> None:
    assert pfx.read_pfx(hide_the_key_in_an_encrypted_part(2000), PASSWORD, "hidden.pfx")  # the layout itself opens
    hidden = hide_the_key_in_an_encrypted_part(HOSTILE_ROUNDS)
    started = time.monotonic()
    with pytest.raises(pfx.TooCostly, match=r"20,000,000 key-derivation rounds \(private key\)"):
        pfx.read_pfx(hidden, PASSWORD, "hidden.pfx")
    assert time.monotonic() - started < 0.5
    with pytest.raises(pfx.WrongPassword):
        pfx.read_pfx(hidden, "not-the-password", "hidden.pfx")


@pytest.mark.parametrize("legacy", [False, True])
def test_encrypted_parts_decrypt_to_their_certificates(legacy: bool) -> None:
    cost = pfx_cost(guardian_pfx(2000, legacy=legacy))
    check_encrypted_parts(cost, PASSWORD)
    assert cost.certificates == 1 and cost.bags == 2


def test_too_many_certificates_are_refused() -> None:
    with pytest.raises(pfx.TooCostly, match="holds 6 certificates"):
        pfx.read_pfx(guardian_pfx(2000, extra_certs=5), PASSWORD, "crowded.pfx")


def test_an_oversized_file_is_refused_on_open_too() -> None:
    data = guardian_pfx(2000)
    with pytest.raises(pfx.TooCostly, match="a guardian PFX is a few kilobytes"):
        pfx.read_pfx(data + bytes(300 * 1024), PASSWORD, "big.pfx")


@pytest.mark.parametrize("cut", [10, 100, 1000])
def test_a_truncated_file_is_not_a_pfx(cut: int) -> None:
    with pytest.raises(pfx.NotAPfx):
        pfx.read_pfx(guardian_pfx(2000)[:cut], PASSWORD, "cut.pfx")


@pytest.mark.parametrize("legacy", [False, True])
def test_a_damaged_file_is_refused_as_a_pfx_error_never_a_crash(legacy: bool) -> None:
    data = guardian_pfx(2000, legacy=legacy)
    for position in range(0, len(data), 7):
        damaged = data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1 :]
        with contextlib.suppress(pfx.PfxError):  # refused or (a harmless byte) opened: anything else fails
            pfx.read_pfx(damaged, PASSWORD, "damaged.pfx")


def test_the_vault_list_never_opens_a_pfx(viewer_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    store_pair(*make_pair(), PASSWORD, user=None, origin=EscrowedPair.ORIGIN_UPLOAD)

    def no_opening(*_args: object) -> None:
        raise AssertionError("a list page opened a PFX")

    monkeypatch.setattr(pfx.pkcs12, "load_key_and_certificates", no_opening)
    page = viewer_client.get("/vault/")
    assert page.status_code == 200 and "UntrustedGuardian" in page.content.decode()
