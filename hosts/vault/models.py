"""The guardian vault: escrowed PFX pairs, encrypted at rest, checked for tampering every time they are opened."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy

from console.models import AuditEvent
from hosts import crypto
from hosts.fields import EncryptedField, open_bytes, open_text, seal_bytes, seal_text
from hosts.models import Host

from .pfx import GuardianPair, PfxError, check_pair


class EscrowedPair(models.Model):
    """One guardian's signing + encryption PFX and their password, as the well-known export script writes them.

    Identity is the pair of thumbprints (a key protector stores certificates, not names). The three secrets are
    sealed by hosts.crypto; `sha256` binds the thumbprints to both PFX files so a blob swapped between rows, or
    altered in any way, is detected by `open()` and never used.

    Opening both PFX files costs about 60 ms each (the password's key derivation), too much for a page view. They
    were opened when the pair was stored; `opened_seal` (sealed, so it can be neither read nor forged without the
    encryption key) records which password opened which files then, so `confirm_intact()` proves the same guarantee
    by decrypting and hashing only. Downloads, imports and the nightly `verify_vault` still open the files.
    """

    ORIGIN_ESCROW, ORIGIN_UPLOAD = "escrow", "upload"
    ORIGINS = [(ORIGIN_ESCROW, gettext_lazy("escrowed from a host")), (ORIGIN_UPLOAD, gettext_lazy("uploaded"))]

    signing_thumbprint = models.CharField(max_length=40, db_index=True)
    encryption_thumbprint = models.CharField(max_length=40, db_index=True)
    guardian_name = models.CharField(max_length=200, blank=True)
    source_host = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_host_name = models.CharField(max_length=200, blank=True)  # kept when the host is deleted
    origin = models.CharField(max_length=10, choices=ORIGINS, default=ORIGIN_ESCROW)
    signing_subject = models.CharField(max_length=400, blank=True)
    encryption_subject = models.CharField(max_length=400, blank=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    signing_pfx = EncryptedField()
    encryption_pfx = EncryptedField()
    pfx_password = EncryptedField()
    sha256 = models.CharField(max_length=64)
    opened_seal = EncryptedField()  # opened_digest() of the files and password opened together; empty: never yet
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["signing_thumbprint", "encryption_thumbprint"], name="vault_unique_pair")
        ]

    def __str__(self) -> str:
        name = self.guardian_name or "guardian"
        return f"{name} {self.signing_thumbprint[:8]}/{self.encryption_thumbprint[:8]}"

    @staticmethod
    def digest(signing_thumbprint: str, encryption_thumbprint: str, signing_pfx: bytes, encryption_pfx: bytes) -> str:
        """SHA-256 over the identity and both files (length-prefixed, so parts cannot shift into each other).

        The password is left out on purpose: a plain hash of a person's password would invite guessing; it is
        bound instead by having to open both files in `open()`.
        """
        h = hashlib.sha256()
        for part in (signing_thumbprint.encode(), encryption_thumbprint.encode(), signing_pfx, encryption_pfx):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.hexdigest()

    @staticmethod
    def opened_digest(sha256: str, password: str) -> str:
        """SHA-256 over the files' digest and the password that opens them; only ever stored sealed (a readable
        hash of a password would invite guessing)."""
        h = hashlib.sha256()
        for part in (sha256.encode(), password.encode()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.hexdigest()

    @classmethod
    def seal(
        cls,
        pair: GuardianPair,
        signing_pfx: bytes,
        encryption_pfx: bytes,
        password: str,
        **fields: Any,
    ) -> EscrowedPair:
        """An unsaved row holding a checked pair, its secrets sealed."""
        sign, enc = pair.signing.thumbprint, pair.encryption.thumbprint
        sha256 = cls.digest(sign, enc, signing_pfx, encryption_pfx)
        return cls(
            signing_thumbprint=sign,
            encryption_thumbprint=enc,
            guardian_name=fields.pop("guardian_name", "") or pair.guardian_name,
            signing_subject=pair.signing.subject,
            encryption_subject=pair.encryption.subject,
            not_before=pair.not_before,
            not_after=pair.not_after,
            signing_pfx=seal_bytes(signing_pfx),
            encryption_pfx=seal_bytes(encryption_pfx),
            pfx_password=seal_text(password),
            sha256=sha256,
            opened_seal=seal_text(cls.opened_digest(sha256, password)),  # `pair` is checked: its files opened
            **fields,
        )

    def unseal(self) -> tuple[bytes, bytes, str]:
        """The three secrets, decrypted and bound to the thumbprints by the SHA-256, without opening the PFX files
        (fast enough for a list page); raises as `open` does."""
        signing, encryption = open_bytes(self.signing_pfx), open_bytes(self.encryption_pfx)
        password = open_text(self.pfx_password)
        if self.digest(self.signing_thumbprint, self.encryption_thumbprint, signing, encryption) != self.sha256:
            raise crypto.TamperedSecretError(f"vault entry {self} fails its SHA-256 check (damaged or tampered)")
        return signing, encryption, password

    def open(self) -> tuple[bytes, bytes, str]:
        """(signing PFX, encryption PFX, password), or TamperedSecretError / SecretError saying what is wrong."""
        signing, encryption, password = self.unseal()
        try:
            check_pair(
                signing,
                encryption,
                password,
                allow_expired=True,
                expect_thumbprints=(self.signing_thumbprint, self.encryption_thumbprint),
            )
        except PfxError as exc:
            raise crypto.TamperedSecretError(f"vault entry {self} is damaged or tampered: {exc}") from None
        return signing, encryption, password

    def confirm_intact(self) -> None:
        """What a page shows about the entry's integrity, as `open()` finds it, without opening the files when
        the record says they opened with this password before; raises as `open` does."""
        _signing, _encryption, password = self.unseal()
        if not self.opened_recorded(password):  # never recorded, or something changed: only opening can tell why
            self.open()

    def opened_recorded(self, password: str) -> bool:
        if not self.opened_seal:  # stored before the console kept the record
            return False
        try:
            return open_text(self.opened_seal) == self.opened_digest(self.sha256, password)
        except crypto.SecretError:  # a damaged record proves nothing either way
            return False

    def record_opened(self) -> None:
        """Note, after `open()` succeeded, that its files open with its password: `confirm_intact()` then needs no
        opening."""
        _signing, _encryption, password = self.unseal()
        self.opened_seal = seal_text(self.opened_digest(self.sha256, password))
        self.save(update_fields=["opened_seal"])

    # A template never decrypts or opens a pair: a page that renders a list must not pay (or leak) for it.
    unseal.alters_data = True  # type: ignore[attr-defined]
    open.alters_data = True  # type: ignore[attr-defined]
    confirm_intact.alters_data = True  # type: ignore[attr-defined]
    opened_recorded.alters_data = True  # type: ignore[attr-defined]
    record_opened.alters_data = True  # type: ignore[attr-defined]

    def expired(self) -> bool:
        from django.utils import timezone

        return self.not_after < timezone.now()

    @property
    def placed_on(self) -> list[str]:
        """Hosts the console imported this pair's keys to, newest first, each once (prefetch `placements`)."""
        return list(dict.fromkeys(placement.host_name for placement in self.placements.all()))


def find_pair(signing_thumbprint: str, encryption_thumbprint: str) -> EscrowedPair | None:
    return EscrowedPair.objects.filter(
        signing_thumbprint=signing_thumbprint.upper(), encryption_thumbprint=encryption_thumbprint.upper()
    ).first()


def pairs_in_vault(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (signing, encryption) pairs the vault holds, in upper case: one query for them all."""
    wanted = {(signing.upper(), encryption.upper()) for signing, encryption in pairs}
    held = EscrowedPair.objects.filter(signing_thumbprint__in={signing for signing, _ in wanted})
    return {pair for pair in held.values_list("signing_thumbprint", "encryption_thumbprint") if pair in wanted}


class Placement(models.Model):
    """A vault pair's private keys put on a host by the console (an import), and who asked for it.

    Append-only: one row per import, so the vault can say where each pair's keys have gone. Host and user are kept
    by name as well, so the record outlives a deleted host or account.
    """

    pair = models.ForeignKey(EscrowedPair, on_delete=models.CASCADE, related_name="placements")
    host = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    host_name = models.CharField(max_length=64)
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    placed_by_name = models.CharField(max_length=150, blank=True)  # empty: the console itself (no person)
    placed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-placed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pair} on {self.host_name}"


def record_placement(pair: EscrowedPair, host: Host, user: Any, **detail: Any) -> Placement:
    """Note that `pair`'s private keys were imported to `host` at `user`'s request (None: the system), with an
    audit event (carrying `detail`, e.g. the job and whether the keys are exportable). Call it once the host holds
    the keys, inside the caller's transaction if it has one."""
    person = user if getattr(user, "is_authenticated", False) else None
    placement = Placement.objects.create(
        pair=pair,
        host=host,
        host_name=str(host),
        placed_by=person,
        placed_by_name=person.get_username() if person is not None else "",
    )
    AuditEvent.record(user, "vault.placed", pair, host=str(host), signing_thumbprint=pair.signing_thumbprint, **detail)
    return placement
