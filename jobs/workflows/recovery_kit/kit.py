"""Building the disaster-recovery kit (the format is hosts/vault/recovery_kit.py): every pair of the vault as the
seed scripts' PFX files with their password, an index (guardian → VMs → hosts) and a README whose PowerShell
restores any VM on a freshly installed host without the console.

The README's commands are the catalog's own operations (`restore_operations`) rendered by the one renderer
(jobs.workflows.powershell), so every name is quoted there; the tests run those printed lines against a simulated
host. The passphrase is the caller's: it goes into the KDF and nowhere else (not the index, the audit or a log).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from console.models import AuditEvent
from hosts import crypto
from hosts.inventory.models import KeyHolding, KeyProtectorEntry, KnownGuardian
from hosts.remoting.catalog.guardians import (
    STORE_PATH,
    CreateShieldedStore,
    GetGuardians,
    ImportPfx,
    NewGuardianByThumbprints,
)
from hosts.remoting.catalog.vms import GetVM, StartVM
from hosts.remoting.operation import Operation, Secret
from hosts.vault import recovery_kit
from hosts.vault.models import EscrowedPair

from ..powershell import PowerShellScript

log = logging.getLogger(__name__)

# Where the README expects the kit's guardians/ folder on the host being restored (the paths are printed in full,
# so a person who puts it elsewhere changes one prefix).
KIT_FOLDER = "C:\\GuardianRecoveryKit"
DEFAULT_NAME = "UntrustedGuardian"


@dataclass
class KitVm:
    name: str
    host: str
    vm_id: str


@dataclass
class KitGuardian:
    """One escrowed pair as the kit holds it: its folder, files, and who depends on it by the last inventory."""

    number: int
    pair: EscrowedPair
    vms: list[KitVm] = field(default_factory=list)
    key_hosts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.pair.guardian_name or DEFAULT_NAME

    @property
    def file_stem(self) -> str:
        """The guardian's name as a file name (a name from a host may hold any character)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._")[:60] or DEFAULT_NAME

    @property
    def folder(self) -> str:
        return f"guardians/{self.number:02d}-{self.file_stem}-{self.pair.signing_thumbprint[:8]}"

    @property
    def files(self) -> tuple[str, str]:
        """The seed scripts' names (<guardian>-signing.pfx, <guardian>-encryption.pfx) in the pair's folder."""
        return f"{self.folder}/{self.file_stem}-signing.pfx", f"{self.folder}/{self.file_stem}-encryption.pfx"

    def on_host(self, path: str) -> str:
        return KIT_FOLDER + "\\" + path.replace("/", "\\")


def import_operations(guardian: KitGuardian) -> list[Operation[Any]]:
    """Make a fresh host hold the pair, as the console's import job does: the store, both PFX files into it (the
    password a prompt; the keys not exportable), the guardian by thumbprints, and the check."""
    password = Secret("")
    signing, encryption = (guardian.on_host(path) for path in guardian.files)
    pair = guardian.pair
    return [
        CreateShieldedStore(),
        ImportPfx(signing, password),
        ImportPfx(encryption, password),
        NewGuardianByThumbprints(guardian.name, pair.signing_thumbprint, pair.encryption_thumbprint),
        GetGuardians(),
    ]


def start_operations(vm: KitVm) -> list[Operation[Any]]:
    return [StartVM(vm.name), GetVM(vm.name)]


def restore_operations(guardian: KitGuardian, vm: KitVm | None = None) -> list[Operation[Any]]:
    """What restoring one VM (or only the guardian) on a fresh host runs, in order: what the README prints."""
    return import_operations(guardian) + (start_operations(vm) if vm is not None else [])


def lines(operations: list[Operation[Any]]) -> list[str]:
    return PowerShellScript().add(*operations).lines()


# -- the inventory's view of each pair ------------------------------------------------------------------------------


def kit_guardians(pairs: list[EscrowedPair]) -> list[KitGuardian]:
    """Each pair with the VMs sealed to it and the hosts holding its keys, from the stored analysis (three queries)."""
    known = KnownGuardian.objects.filter(vault_entry__in=pairs).prefetch_related(
        Prefetch("entries", KeyProtectorEntry.objects.select_related("vm__host").order_by("vm__name")),
        Prefetch("holdings", KeyHolding.objects.filter(has_private_keys=True).select_related("host")),
    )
    by_pair = {g.pair: g for g in known}
    result = []
    for number, pair in enumerate(pairs, start=1):
        entry = KitGuardian(number, pair)
        found = by_pair.get((pair.signing_thumbprint, pair.encryption_thumbprint))
        if found is not None:
            seen: dict[int, KitVm] = {}
            for sealed in found.entries.all():
                seen.setdefault(sealed.vm_id, KitVm(sealed.vm.name, str(sealed.vm.host), sealed.vm.vm_id))
            entry.vms = list(seen.values())
            entry.key_hosts = sorted(str(h.host) for h in found.holdings.all())
        result.append(entry)
    return result


# -- the archive ----------------------------------------------------------------------------------------------------


@dataclass
class BuiltKit:
    data: bytes
    guardians: int
    skipped: list[str]  # vault entries that failed their check: named in the index, not in the kit


def build(passphrase: str, now: dt.datetime | None = None) -> BuiltKit:
    """The whole vault as one encrypted kit. A damaged entry is left out and named in the index.

    Each entry is checked as the vault's list checks it (decrypted, its SHA-256 binding both files to their
    thumbprints) rather than by opening both PFX files (`open`, about 0.1 s a pair): a kit of a large vault stays a
    matter of seconds in a request. `verify_recovery_kit` opens every pair of a kit with its password."""
    now = now or timezone.now()
    pairs = list(EscrowedPair.objects.order_by("guardian_name", "signing_thumbprint"))
    files: dict[str, bytes] = {}
    good, skipped = [], []
    for guardian in kit_guardians(pairs):
        try:
            signing, encryption, password = guardian.pair.unseal()
        except crypto.SecretError as exc:
            skipped.append(f"{guardian.pair}: {exc}")
            continue
        signing_file, encryption_file = guardian.files
        files[signing_file], files[encryption_file] = signing, encryption
        files[f"{guardian.folder}/{recovery_kit.PASSWORD_FILE}"] = (password + "\r\n").encode()
        good.append(guardian)
    files[recovery_kit.INDEX_JSON] = json.dumps(index(good, skipped, now), indent=2).encode()
    files[recovery_kit.INDEX_TEXT] = index_text(good, skipped, now).encode()
    files[recovery_kit.README] = readme(good, skipped, now).encode()
    data = recovery_kit.seal(zipped(files), passphrase, settings.RECOVERY_KIT_SCRYPT_LOG2N)
    return BuiltKit(data, len(good), skipped)


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return buffer.getvalue()


def index(guardians: list[KitGuardian], skipped: list[str], now: dt.datetime) -> dict[str, Any]:
    return {
        "format": recovery_kit.VERSION,
        "created_at": now.isoformat(),
        "kit_folder_on_host": KIT_FOLDER,
        "guardians": [
            {
                "folder": g.folder,
                "name": g.name,
                "signing_thumbprint": g.pair.signing_thumbprint,
                "encryption_thumbprint": g.pair.encryption_thumbprint,
                "signing_file": g.files[0],
                "encryption_file": g.files[1],
                "not_after": g.pair.not_after.isoformat(),
                "source_host": g.pair.source_host_name,
                "hosts_with_keys": g.key_hosts,
                "vms": [{"name": vm.name, "host": vm.host, "vm_id": vm.vm_id} for vm in g.vms],
            }
            for g in guardians
        ],
        "left_out": skipped,
    }


# The kit's prose is in the language active when it is built (the downloader's, or the default for the scheduled
# copy); its layout ("== <folder>: …" sections, titles ending in ":", indented commands) and commands never change.
def index_text(guardians: list[KitGuardian], skipped: list[str], now: dt.datetime) -> str:
    title = ngettext(
        "Guardian Console recovery kit, %(when)s UTC: %(count)d guardian",
        "Guardian Console recovery kit, %(when)s UTC: %(count)d guardians",
        len(guardians),
    ) % {"when": f"{now:%Y-%m-%d %H:%M}", "count": len(guardians)}
    out = [title, ""]
    for g in guardians:
        pair = g.pair
        out.append(f"{g.folder}  {plain(g.name)}")
        out.append(
            "  "
            + _("signing %(signing)s  encryption %(encryption)s")
            % {"signing": pair.signing_thumbprint, "encryption": pair.encryption_thumbprint}
        )
        out.append(
            "  "
            + _("valid until %(date)s; escrowed from %(host)s")
            % {"date": f"{pair.not_after:%Y-%m-%d}", "host": pair.source_host_name or "-"}
        )
        hosts = ", ".join(g.key_hosts) or _("no registered host")
        out.append("  " + _("private keys also on: %(hosts)s") % {"hosts": hosts})
        for vm in g.vms:
            shown = {"vm": plain(vm.name), "host": plain(vm.host), "id": vm.vm_id}
            out.append("  " + _("VM %(vm)s on %(host)s (%(id)s)") % shown)
        if not g.vms:
            out.append("  " + _("no VM of the last inventory is sealed to it"))
        out.append("")
    out += [_("LEFT OUT (failed the vault's check): %(entry)s") % {"entry": plain(item)} for item in skipped]
    return "\r\n".join(out) + "\r\n"


README_INTRO = gettext_lazy("""GUARDIAN CONSOLE RECOVERY KIT - restoring VMs without the console

This kit holds every guardian pair of the console's vault, as the well-known export script writes them
(<guardian>-signing.pfx and <guardian>-encryption.pfx), each with the password that opens both (pfx-password.txt
in the same folder). index.txt says which VM is sealed to which guardian and where it ran.

On the host to restore (freshly installed, with Hyper-V and the VM's files in place), in an elevated Windows
PowerShell:
  0. Copy the kit's guardians folder to {folder}\\guardians (or change that prefix in the lines below).
  1. Find the VM in index.txt and go to the section of its guardian below.
  2. Run the section's lines in order. Each Import-PfxCertificate asks for the password: paste the one from that
     guardian's pfx-password.txt. Skip the New-Item line if Test-Path '{store}' says True
     (the store exists once a VM's TPM was enabled on this host). If New-HgsGuardian says the name exists with
     other certificates, give -Name another name. Get-HgsGuardian must then show it with HasPrivateSigningKey True.
  3. Run the two lines of each VM of that guardian that this host has: Start-VM, then Get-VM shows it Running.
  4. Delete {folder} from the host afterwards: it holds private keys.
The private keys are imported non-exportable, as the console's own import does.
""")


def plain(text: str) -> str:
    """A name from a host on one line of prose: a control character (a line break) could otherwise start a line
    that looks like a command. Commands themselves are quoted by the renderer."""
    return "".join(c if c.isprintable() else "?" for c in text)


def readme(guardians: list[KitGuardian], skipped: list[str], now: dt.datetime) -> str:
    intro = str(README_INTRO).format(folder=KIT_FOLDER, store=STORE_PATH)
    out = [intro, _("Written %(when)s UTC.") % {"when": f"{now:%Y-%m-%d %H:%M}"}, ""]
    out += [
        _("LEFT OUT (failed the vault's check; restore it from another copy): %(entry)s") % {"entry": plain(item)}
        for item in skipped
    ]
    for g in guardians:
        pair = g.pair
        out.append(f"== {g.folder}: " + _("guardian %(name)s") % {"name": plain(g.name)} + " ==")
        out.append(
            "   "
            + _("signing %(signing)s, encryption %(encryption)s")
            % {"signing": pair.signing_thumbprint, "encryption": pair.encryption_thumbprint}
        )
        out.append("   " + _("password: %(file)s") % {"file": f"{g.folder}/{recovery_kit.PASSWORD_FILE}"})
        out.append(_("Import the guardian") + ":")
        out += [f"    {line}" for line in lines(import_operations(g))]
        for vm in g.vms:
            out.append(_("Start VM %(vm)s (it ran on %(host)s)") % {"vm": plain(vm.name), "host": plain(vm.host)} + ":")
            out += [f"    {line}" for line in lines(start_operations(vm))]
        out.append("")
    return "\r\n".join(out) + "\r\n"


# -- the scheduled copy ---------------------------------------------------------------------------------------------

COPY_PREFIX, COPY_SUFFIX = "guardian-recovery-kit-", ".gckit"


def file_name(now: dt.datetime) -> str:
    return f"{COPY_PREFIX}{now:%Y%m%d-%H%M%S}{COPY_SUFFIX}"


def write_scheduled_copy(now: dt.datetime | None = None) -> Path | None:
    """Write a kit to RECOVERY_KIT_DIR (0600, the folder 0700) with the passphrase read now from its file, and keep
    the newest RECOVERY_KIT_KEEP copies. None when no folder or passphrase file is configured. Audited; a passphrase
    file that is missing or too weak is refused (ValidationError / OSError) without writing anything."""
    folder, secret_file = settings.RECOVERY_KIT_DIR, settings.RECOVERY_KIT_PASSPHRASE_FILE
    if not folder or not secret_file:
        return None
    now = now or timezone.now()
    passphrase = Path(secret_file).read_text(encoding="utf-8").strip()
    recovery_kit.check_passphrase(passphrase)
    kit = build(passphrase, now)
    target = Path(folder)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = target / file_name(now)
    partial = target / f".{path.name}.partial"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(kit.data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)  # a reader never sees half a kit
    removed = rotate(target, settings.RECOVERY_KIT_KEEP)
    AuditEvent.record(
        None, "vault.recovery_kit_copy", file=str(path), guardians=kit.guardians, left_out=kit.skipped, removed=removed
    )
    written = ngettext(
        "Recovery kit written to %(path)s (%(count)d guardian); %(removed)d older copies removed",
        "Recovery kit written to %(path)s (%(count)d guardians); %(removed)d older copies removed",
        kit.guardians,
    )
    log.info(written, {"path": path, "count": kit.guardians, "removed": len(removed)})
    return path


def rotate(folder: Path, keep: int) -> list[str]:
    """Remove all but the `keep` newest copies (their names sort by time); the names removed."""
    copies = sorted(folder.glob(f"{COPY_PREFIX}*{COPY_SUFFIX}"))
    old = copies[: max(len(copies) - max(keep, 1), 0)]
    for path in old:
        path.unlink(missing_ok=True)
    return [path.name for path in old]
