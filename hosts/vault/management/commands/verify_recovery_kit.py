"""`manage.py verify_recovery_kit FILE`: open a disaster-recovery kit, check it and list what it holds.

The passphrase is asked for on the terminal (not echoed), or read from the environment variable
RECOVERY_KIT_PASSPHRASE (for a script) — never a command-line argument, which anyone on the machine sees in `ps`.
Exit status 1 with a clear reason for a wrong passphrase, a changed byte or a pair that does not open.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hosts.vault import recovery_kit

PASSPHRASE_VARIABLE = "RECOVERY_KIT_PASSPHRASE"  # noqa: S105 - the name of a variable


class Command(BaseCommand):
    help = "Check a recovery kit's integrity (the passphrase from a prompt or RECOVERY_KIT_PASSPHRASE) and list it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the kit (.gckit)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        passphrase = os.environ.get(PASSPHRASE_VARIABLE) or getpass.getpass("Passphrase of the kit: ")
        try:
            contents = recovery_kit.read(data, passphrase)
        except recovery_kit.KitError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(contents.text(recovery_kit.INDEX_TEXT))
        for name in sorted(contents.files):
            self.stdout.write(f"{len(contents.files[name]):>9}  {name}")
        if contents.problems:
            raise CommandError("The kit opened, but these pairs do not: " + "; ".join(contents.problems))
        count = len(contents.index.get("guardians", []))
        self.stdout.write(self.style.SUCCESS(f"{path}: intact; {count} guardian pair(s), each opens with its password"))
