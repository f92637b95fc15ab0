"""`manage.py capture_host HOST`: record what a registered host answers to every read-only operation of the catalog,
as received (CLIXML), in one JSON file — to check the console's parsers against a real host, or to serve that host
again with `python -m hypervsim serve --capture FILE`. Nothing on the host changes (see hosts/remoting/capture.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console.models import AuditEvent
from hosts import crypto
from hosts.models import Host
from hosts.remoting import capture, open_session
from hosts.remoting.errors import RemotingError


class Command(BaseCommand):
    help = "Record a registered host's answers to every read-only operation of the console, in one JSON file."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("host", help="the host's display name (as on its page) or its number")
        parser.add_argument("--output", type=Path, help="the file to write (default: capture-<host>-<date>.json)")
        parser.add_argument(
            "--anonymise",
            action="store_true",
            help="replace the host's names, the account and their domains with HOST, USER and DOMAIN",
        )
        parser.add_argument(
            "--also",
            action="append",
            default=[],
            metavar="WORD",
            help="with --anonymise, one more name to replace (repeatable): another domain, a VM named after someone",
        )

    def handle(self, *args: Any, host: str, output: Path | None, anonymise: bool, also: list[str], **_: Any) -> None:
        registered = self.find(host)
        try:
            with open_session(registered.connection_spec(), record=True) as session:
                recorded = capture.record_host(session, registered.name, registered.username)
        except (RemotingError, crypto.SecretError) as error:
            raise CommandError(f"{registered} could not be reached: {error}") from None
        if anonymise:
            hidden = capture.names_to_hide(self.names_of(registered, recorded), registered.username, also)
            recorded = capture.anonymise(recorded, hidden)
        path = output or Path(f"capture-{recorded['host']}-{timezone.now():%Y%m%d-%H%M}.json")
        path.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        AuditEvent.record(None, "host.captured", registered, anonymised=anonymise, via="manage.py")
        self.report(recorded, path)

    @staticmethod
    def find(name_or_number: str) -> Host:
        found = Host.objects.filter(name__iexact=name_or_number).first()
        if found is None and name_or_number.isdigit():
            found = Host.objects.filter(pk=int(name_or_number)).first()
        if found is None:
            raise CommandError(f"No registered host is called {name_or_number!r}.")
        return found

    @staticmethod
    def names_of(host: Host, recorded: dict[str, Any]) -> list[str]:
        """The host's names: as registered, its address, and the computer name it gave for itself."""
        names = [host.name, host.address]
        for entry in recorded["operations"]:
            if entry["operation"] == "TestConnection" and entry["outcome"] == "ok":
                names.append(capture.read_back(entry).computer_name)
        return names

    def report(self, recorded: dict[str, Any], path: Path) -> None:
        operations = recorded["operations"]
        failed = [entry for entry in operations if entry["outcome"] != "ok"]
        for entry in failed:
            self.stdout.write(f"  {entry['operation']}: {entry['outcome']}")
        for skipped in recorded["skipped"]:
            self.stdout.write(f"  not captured: {skipped['operation']}, {skipped['why']}")
        summary = f"{len(operations)} operations captured ({len(failed)} answered with an error) in {path}"
        self.stdout.write(self.style.SUCCESS(summary))
        if recorded["anonymised"]:
            self.stdout.write(
                "Names were replaced in the text; certificates and key protectors are kept as bytes, and the "
                "certificates Windows makes name the host in their subject."
            )
