"""`manage.py check_analysis [--rebuild]`: compare the stored analysis with one computed from scratch and say what
differs; with --rebuild, recompute it from the inventory rows first (say, after rows were restored from a backup or
edited in the database by hand, which no signal sees)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from hosts.inventory import facts, reading
from hosts.inventory.analysis import Inventory


class Command(BaseCommand):
    help = "Compare the stored inventory analysis with a from-scratch one (and rebuild it with --rebuild)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="recompute the stored analysis first")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild"]:
            self.stdout.write(f"Rebuilt: {facts.rebuild()}")
        now = timezone.now()
        stored = {(r.code, r.subject, r.explanation) for r in reading.all_risks(now)}
        fresh = {(r.code, r.subject, r.explanation) for r in Inventory().risks()}
        missing, extra = sorted(fresh - stored), sorted(stored - fresh)
        for code, subject, _ in missing:
            self.stdout.write(f"not stored: {code}: {subject}")
        for code, subject, _ in extra:
            self.stdout.write(f"stored but gone: {code}: {subject}")
        if missing or extra:
            raise CommandError(f"The stored analysis differs: {len(missing)} risks missing, {len(extra)} too many.")
        self.stdout.write(f"The stored analysis matches a from-scratch one: {len(stored)} risks.")
