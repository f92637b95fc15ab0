"""`manage.py rotate_encryption_keys`: re-seal every stored secret under the newest key.

Finds every EncryptedField of every installed model (hosts, vault, anything added later). All or nothing: one
transaction, so a secret whose key is missing stops the run with that key's id and nothing is half-rotated.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from console.models import AuditEvent
from hosts import crypto
from hosts.fields import encrypted_fields


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the first key of CONSOLE_ENCRYPTION_KEYS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only count which key seals how many secrets.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        try:
            newest = crypto.keys()[0].id
            with transaction.atomic():
                sealed_by = Counter[str]()
                resealed = sum(self.rotate(model, names, sealed_by, dry_run) for model, names in encrypted_fields())
                if not dry_run:
                    # In the same transaction: the trail shows a rotation exactly when one happened.
                    AuditEvent.record(None, "secrets.rotated", key=newest, resealed=resealed, via="manage.py")
        except crypto.SecretError as error:
            raise CommandError(f"{error}. Nothing was changed.") from None
        for kid, count in sorted(sealed_by.items()):
            self.stdout.write(f"  {count} secret(s) were sealed with key {kid}{' (newest)' if kid == newest else ''}")
        verb = "would be re-sealed" if dry_run else "re-sealed"
        self.stdout.write(self.style.SUCCESS(f"{resealed} secret(s) {verb} under key {newest}."))

    def rotate(self, model: type[models.Model], names: list[str], sealed_by: Counter[str], dry_run: bool) -> int:
        resealed = 0
        rows = model._default_manager.select_for_update().values_list("pk", *names)
        for pk, *values in rows.iterator(chunk_size=200):
            changes = {}
            for name, stored in zip(names, values, strict=True):
                if not stored:
                    continue
                sealed_by[crypto.sealed_with(stored)] += 1
                try:
                    fresh = crypto.reseal(stored)
                except crypto.SecretError as error:
                    raise type(error)(f"{model._meta.label} #{pk} field {name}: {error}") from None
                if fresh != stored:
                    changes[name] = fresh
            if changes and not dry_run:
                # update(), not save(): rotation is not an edit (no updated_at change, no signals).
                model._default_manager.filter(pk=pk).update(**changes)
            resealed += len(changes)
        return resealed
