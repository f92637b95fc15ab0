"""`manage.py generate_encryption_key`: print a new key for CONSOLE_ENCRYPTION_KEYS and how to roll it in."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand

from hosts import crypto


class Command(BaseCommand):
    help = "Print a new encryption key for CONSOLE_ENCRYPTION_KEYS (newest first), then run rotate_encryption_keys."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print only the key (for scripts).")

    def handle(self, *args: Any, quiet: bool = False, **options: Any) -> None:
        key = Fernet.generate_key().decode()
        if quiet:
            self.stdout.write(key)
            return
        self.stdout.write(key)
        self.stdout.write(
            f"\nKey id {crypto.key_id(key)}. To rotate: put it FIRST in CONSOLE_ENCRYPTION_KEYS, keep the old keys "
            "after it, restart the console and workers, run `manage.py rotate_encryption_keys`, then remove the old "
            "keys.",
        )
