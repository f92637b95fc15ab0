"""The disaster-recovery kit: an admin downloads the whole vault as one encrypted file, `verify_recovery_kit` checks
it, a wrong passphrase or a changed byte is refused, and — the point of it — a VM comes back on a freshly installed
host by running only the PowerShell printed in the kit's README, without the console."""

from __future__ import annotations

import io
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from console.models import AuditEvent
from hosts.inventory.refresh import refresh_host
from hosts.remoting import open_session
from hosts.remoting.operation import Cmd, Operation, PipelineResult
from hosts.vault import recovery_kit
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.tasks import write_recovery_kit
from jobs.workflows.recovery_kit.kit import KIT_FOLDER, build, write_scheduled_copy
from tests.hosts.test_vault_support import assert_no_secret
from tests.plugins.powershell import parse_line

pytestmark = pytest.mark.django_db

PASSPHRASE = "correct horse battery staple 42"
HOSTILE = "Ops' guardian’; Remove-Item C:\\ -Recurse #"


def reinstalled_lab(
    sim_host: Any, registered_host: Any, admin: Any, guardian_name: str = "UntrustedGuardian"
) -> tuple[Any, Any]:
    """HV02's story: a host reinstalled with its VM files kept (no store, no guardian), its inventory read, and the
    backup of the lost guardian in the vault."""
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    assert refresh_host(host).ok
    signing, encryption, password = previous_guardian_backup(sim)
    store_pair(
        signing, encryption, password, user=admin, origin="upload", allow_expired=True, guardian_name=guardian_name
    )
    return sim, host


def verify(path: Path, passphrase: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RECOVERY_KIT_PASSPHRASE", passphrase)
    out = io.StringIO()
    call_command("verify_recovery_kit", str(path), stdout=out)
    return out.getvalue()


def test_a_kit_from_the_vault_verifies_and_lists_its_guardians_vms_and_hosts(
    sim_host: Any, registered_host: Any, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, _host = reinstalled_lab(sim_host, registered_host, admin)
    kit = build(PASSPHRASE)
    assert kit.guardians == 1 and kit.skipped == []
    path = tmp_path / "kit.gckit"
    path.write_bytes(kit.data)
    listing = verify(path, PASSPHRASE, monkeypatch)
    assert "intact; 1 guardian pair(s)" in listing
    assert "VM Win11-A on HV01" in listing and "VM Win11-B on HV01" in listing
    assert "UntrustedGuardian-signing.pfx" in listing and "UntrustedGuardian-encryption.pfx" in listing
    contents = recovery_kit.read(kit.data, PASSPHRASE)
    [entry] = contents.index["guardians"]
    assert [vm["name"] for vm in entry["vms"]] == ["Win11-A", "Win11-B"] and entry["vms"][0]["host"] == "HV01"
    assert contents.text(f"{entry['folder']}/pfx-password.txt").strip() == previous_guardian_backup(sim)[2]
    assert PASSPHRASE.encode() not in kit.data and PASSPHRASE not in json.dumps(contents.index)


def test_a_wrong_passphrase_or_any_changed_byte_is_refused(
    sim_host: Any, registered_host: Any, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reinstalled_lab(sim_host, registered_host, admin)
    data = build(PASSPHRASE).data
    path = tmp_path / "kit.gckit"
    path.write_bytes(data)
    with pytest.raises(CommandError, match="passphrase is wrong, or the file was altered"):
        verify(path, PASSPHRASE + "!", monkeypatch)
    for offset in (recovery_kit.HEADER_SIZE - 1, 12, len(data) // 2, len(data) - 1):  # nonce, salt, body, tag
        tampered = bytearray(data)
        tampered[offset] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises(CommandError, match="altered"):
            verify(path, PASSPHRASE, monkeypatch)
    cheaper = bytearray(data)
    cheaper[7] = 15  # log2(N) 14 → 15 in the authenticated header: another key, refused like any changed byte
    with pytest.raises(recovery_kit.KitError, match="altered"):
        recovery_kit.read(bytes(cheaper), PASSPHRASE)
    absurd = bytearray(data)
    absurd[7] = 40  # refused before any key derivation
    with pytest.raises(recovery_kit.KitError, match="no kit is written with"):
        recovery_kit.read(bytes(absurd), PASSPHRASE)
    path.write_bytes(b"PK\x03\x04 a zip, not a kit")
    with pytest.raises(CommandError, match="not a Guardian Console recovery kit"):
        verify(path, PASSPHRASE, monkeypatch)


def test_a_damaged_vault_entry_is_left_out_and_named(
    sim_host: Any, registered_host: Any, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reinstalled_lab(sim_host, registered_host, admin)
    EscrowedPair.objects.update(sha256="0" * 64)  # as if a row's blobs had been swapped or altered
    kit = build(PASSPHRASE)
    assert kit.guardians == 0 and len(kit.skipped) == 1 and "SHA-256" in kit.skipped[0]
    contents = recovery_kit.read(kit.data, PASSPHRASE)
    assert contents.index["guardians"] == [] and contents.index["left_out"] == kit.skipped
    assert "LEFT OUT" in contents.text(recovery_kit.INDEX_TEXT) and "LEFT OUT" in contents.text(recovery_kit.README)
    assert not any(name.endswith(".pfx") for name in contents.files)


# -- restoring with the README only ---------------------------------------------------------------------------------


@dataclass
class Pasted(Operation[PipelineResult]):
    """One line of the README as the structured commands it stands for, sent as they are."""

    cmds: list[Cmd]
    name: ClassVar[str] = "pasted"
    read_only: ClassVar[bool] = False

    def statements(self) -> list[list[Cmd]]:
        return [self.cmds]

    def cmdlets(self) -> set[str]:  # type: ignore[override]
        return {cmd.name for cmd in self.cmds}

    def parse(self, result: PipelineResult) -> PipelineResult:
        return result


def test_a_vm_comes_back_on_a_fresh_host_with_only_the_readme(sim_host: Any, registered_host: Any, admin: Any) -> None:
    # A name that would be code if pasted into PowerShell unquoted: the README quotes it, the host gets it as is.
    sim, host = reinstalled_lab(sim_host, registered_host, admin, guardian_name=HOSTILE)
    contents = recovery_kit.read(build(PASSPHRASE).data, PASSPHRASE)
    folder, lines = restore_lines(contents.text(recovery_kit.README), "Win11-A")
    assert lines[0].startswith("New-Item") and lines[-2:] == ["Start-VM -Name 'Win11-A'", "Get-VM -Name 'Win11-A'"]
    for name, data in contents.files.items():  # the person copies the kit's guardians folder to the host
        if name.startswith("guardians/"):
            sim.model.write_file(KIT_FOLDER + "\\" + name.replace("/", "\\"), data)
    typed = contents.text(f"{folder}/pfx-password.txt").strip()  # what they paste at each password prompt
    assert sim.model.store is None and sim.model.vm("Win11-A").state == "Off"
    with open_session(host.connection_spec()) as session:
        for line in lines:
            result = session.run(Pasted([Cmd(name, params) for name, params in parse_line(line, typed)]))
            assert not result.errors, (line, result.errors)
    assert sim.model.vm("Win11-A").state == "Running"
    guardian = sim.model.guardian(HOSTILE)
    assert guardian is not None and sim.model.private_key_held(guardian.signing)
    assert folder.startswith("guardians/01-Ops_guardian_Remove-Item_C_-Recurse-")  # a file name from the name


def restore_lines(readme: str, vm_name: str) -> tuple[str, list[str]]:
    """The README's lines for restoring `vm_name`: its guardian's import, then the VM's own lines; and the guardian's
    folder in the kit (where its pfx-password.txt is). The README: "== <folder>: …" sections of titled blocks
    ("Import the guardian:", "Start VM <name> (…):") whose commands are indented (comments start with #)."""
    blocks: dict[str, dict[str, list[str]]] = {}
    folder = title = ""
    for line in readme.splitlines():
        if line.startswith("== "):
            folder, title = line[3:].split(":")[0], ""
            blocks[folder] = {}
        elif folder and line.endswith(":") and not line.startswith(" "):
            title = line
            blocks[folder][title] = []
        elif title and line.startswith("    ") and not line.lstrip().startswith("#"):
            blocks[folder][title].append(line.strip())
    for folder, titled in blocks.items():
        vm = next((lines for title, lines in titled.items() if title.startswith(f"Start VM {vm_name} (")), None)
        if vm is not None:
            return folder, titled["Import the guardian:"] + vm
    raise AssertionError(f"the README restores no VM named {vm_name}")


# -- the download page ----------------------------------------------------------------------------------------------


def test_an_admin_downloads_the_kit_with_a_strong_passphrase_audited_without_it(
    sim_host: Any, registered_host: Any, admin: Any, admin_client: Client, operator_client: Client
) -> None:
    reinstalled_lab(sim_host, registered_host, admin)
    assert operator_client.get("/vault/recovery-kit/").status_code == 403
    assert 'id="recovery-kit-link"' in admin_client.get("/vault/").content.decode()
    weak = admin_client.post("/vault/recovery-kit/", {"passphrase": "password", "repeat": "password"})
    assert weak.status_code == 200 and "at least 16 characters" in weak.content.decode()
    differ = admin_client.post("/vault/recovery-kit/", {"passphrase": PASSPHRASE, "repeat": PASSPHRASE + "x"})
    assert "The two passphrases differ" in differ.content.decode()
    assert not AuditEvent.objects.filter(action="vault.recovery_kit").exists()
    response = admin_client.post("/vault/recovery-kit/", {"passphrase": PASSPHRASE, "repeat": PASSPHRASE})
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith('attachment; filename="guardian-recovery-kit-')
    assert recovery_kit.read(response.content, PASSPHRASE).index["guardians"][0]["name"] == "UntrustedGuardian"
    event = AuditEvent.objects.get(action="vault.recovery_kit")
    assert event.username == "ada" and event.detail["guardians"] == 1
    assert_no_secret(PASSPHRASE, *(str(e.detail) for e in AuditEvent.objects.all()))


def test_the_kit_needs_the_second_factor_like_a_vault_download(settings: Any, admin_client: Client) -> None:
    settings.ADMIN_2FA = "required"
    response = admin_client.get("/vault/recovery-kit/")
    assert response.status_code == 302 and response["Location"].startswith("/account/two-factor/")
    posted = admin_client.post("/vault/recovery-kit/", {"passphrase": PASSPHRASE, "repeat": PASSPHRASE})
    assert posted.status_code == 302 and not AuditEvent.objects.filter(action="vault.recovery_kit").exists()


# -- the scheduled copy ---------------------------------------------------------------------------------------------


def test_scheduled_copies_are_private_files_rotated_and_audited(
    sim_host: Any, registered_host: Any, admin: Any, settings: Any, tmp_path: Path
) -> None:
    import datetime as dt

    reinstalled_lab(sim_host, registered_host, admin)
    folder, secret = tmp_path / "kits", tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    settings.RECOVERY_KIT_DIR, settings.RECOVERY_KIT_PASSPHRASE_FILE, settings.RECOVERY_KIT_KEEP = (
        str(folder),
        str(secret),
        2,
    )
    start = dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.UTC)
    written = [write_scheduled_copy(start + dt.timedelta(days=day)) for day in range(3)]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in written[1:] if p is not None]
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert recovery_kit.read(path.read_bytes(), PASSPHRASE).index["guardians"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    events = AuditEvent.objects.filter(action="vault.recovery_kit_copy").order_by("pk")
    assert events.count() == 3 and events.last().detail["removed"] == [written[0].name]  # type: ignore[union-attr]
    assert_no_secret(PASSPHRASE, *(str(e.detail) for e in events))
    secret.write_text("short\n")
    with pytest.raises(ValidationError):
        write_recovery_kit()
    assert len(list(folder.iterdir())) == 2
    settings.RECOVERY_KIT_DIR = ""
    assert write_recovery_kit() == ""  # not configured: nothing written
