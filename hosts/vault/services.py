"""Putting pairs into the vault: the one way every caller stores a pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from console.models import AuditEvent
from hosts.models import Host

from .models import EscrowedPair, find_pair
from .pfx import check_pair


@dataclass
class StoreOutcome:
    pair: EscrowedPair
    created: bool


def store_pair(
    signing_pfx: bytes,
    encryption_pfx: bytes,
    password: str,
    *,
    user: Any,
    origin: str,
    source_host: Host | None = None,
    allow_expired: bool = False,
    expect_thumbprints: tuple[str, str] | None = None,
    guardian_name: str = "",
) -> StoreOutcome:
    """Check a pair and store it once. An already escrowed pair is left as it is (escrow is idempotent).

    Raises pfx.PfxError (with the reason for the person) when the pair is not usable.
    """
    checked = check_pair(
        signing_pfx, encryption_pfx, password, allow_expired=allow_expired, expect_thumbprints=expect_thumbprints
    )
    existing = find_pair(checked.signing.thumbprint, checked.encryption.thumbprint)
    if existing is not None:
        return StoreOutcome(existing, created=False)
    row = EscrowedPair.seal(
        checked,
        signing_pfx,
        encryption_pfx,
        password,
        guardian_name=guardian_name,
        origin=origin,
        source_host=source_host,
        source_host_name=str(source_host) if source_host is not None else checked.host_name,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    try:
        with transaction.atomic():
            row.save()
            AuditEvent.record(
                user,
                "vault.upload" if origin == EscrowedPair.ORIGIN_UPLOAD else "vault.escrow",
                row,
                signing_thumbprint=row.signing_thumbprint,
                encryption_thumbprint=row.encryption_thumbprint,
                source_host=row.source_host_name,
            )
    except IntegrityError:  # stored concurrently by another job or person: theirs counts
        found = find_pair(checked.signing.thumbprint, checked.encryption.thumbprint)
        if found is None:
            raise
        return StoreOutcome(found, created=False)
    return StoreOutcome(row, created=True)


def thumbprint_pairs(value: Any) -> list[tuple[str, str]]:
    """Inventory stores key protector guardians as {signing, encryption} dicts (one, or a list of them)."""
    items = value if isinstance(value, list) else [value]
    pairs = []
    for item in items:
        if isinstance(item, dict) and item.get("signing") and item.get("encryption"):
            pairs.append((str(item["signing"]).upper(), str(item["encryption"]).upper()))
    return pairs
