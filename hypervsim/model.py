"""The simulated host's state: OS facts, HGS client, certificate store, guardians, VMs and files, kept on disk.

Everything lives in the host's state directory (host.json plus one PEM file per certificate in the store), so a
restarted simulator finds the host as it left it. Cmdlets change the model only inside `with host.changing():`,
which holds the host lock and saves afterwards.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypervsim import logon
from hypervsim.certs import Certificate
from hypervsim.keyprotector import NO_KEY_PROTECTOR
from hypervsim.strict import Strictness

LOCAL_GUARDIAN = "UntrustedGuardian"  # the guardian Hyper-V uses and creates in Local mode
STORE_PATH = r"Cert:\LocalMachine\Shielded VM Local Certificates"
LAB_SHARE_UNC = r"\\LAB\share"
MIGRATION_CREDSSP, MIGRATION_KERBEROS = "CredSSP", "Kerberos"  # VirtualMachineMigrationAuthenticationType
VM_ROOT = r"C:\ProgramData\Microsoft\Windows\Hyper-V"
VHD_ROOT = r"C:\ProgramData\Microsoft\Windows\Virtual Hard Disks"
HOME = r"C:\Users\labadmin\Documents"
LAB_SWITCH = "LabSwitch"  # the external virtual switch every simulated host has
SECURE_BOOT_TEMPLATES = ("MicrosoftWindows", "MicrosoftUEFICertificateAuthority", "OpenSourceShieldedVM")
STANDARD_FOLDERS = (r"C:\Windows\Temp", HOME, VM_ROOT, VHD_ROOT)
_BAD_COMPONENT = re.compile(r'[<>:"|?*\x00-\x1f]')


@dataclass(frozen=True)
class Edition:
    """What Win32_OperatingSystem says the host runs: ProductType 1 is a workstation (client), 3 a server."""

    caption: str
    version: str
    build: str
    product_type: int


EDITIONS = {
    "server": Edition("Microsoft Windows Server 2022 Datacenter", "10.0.20348", "20348", 3),
    # Hyper-V on a desktop PC, as many of the console's users run it: no domain, local accounts.
    "client": Edition("Microsoft Windows 11 Pro", "10.0.22631", "22631", 1),
}


class PathOutsideArea(ValueError):
    """A Windows path that does not map into this host's file area or the lab share."""


class ShareAccessDenied(PathOutsideArea):
    """A share, asked for by a session whose logon cannot reach another machine (the second hop)."""


class ShareGone(PathOutsideArea):
    """A host's share that was there and is no longer (removed, or its host left the network)."""


class DriveMissing(PathOutsideArea):
    """A path on a PowerShell drive this session does not have."""

    def __init__(self, drive: str) -> None:
        super().__init__(drive)
        self.drive = drive


@dataclass
class SmbShare:
    """A folder a host shares (New-SmbShare), and the local accounts allowed to read it with their passwords.

    `vanishes_after` (runtime only, a fault): the share disappears after that many more paths were opened through it,
    as when its host stops sharing or drops off the network in the middle of a copy."""

    name: str
    path: str  # the local folder on the sharing host
    accounts: dict[str, str] = field(default_factory=dict)  # user (as the host spells it) -> password
    vanishes_after: int | None = field(default=None, compare=False)

    def accepts(self, host_name: str, user: str, password: str) -> bool:
        """Whether a local account of the host matches: `user`, `HOST\\user` and `.\\user` name the same one."""
        wanted = _account(host_name, user)
        return any(_account(host_name, u) == wanted and p == password for u, p in self.accounts.items())


def _account(host_name: str, user: str) -> str:
    domain, _, name = user.rpartition("\\")
    if domain in ("", ".") or domain.casefold() == host_name.casefold():
        return name.casefold()
    return user.casefold()


@dataclass
class Guardian:
    """An HGS guardian entry: a name and the public certificates; private keys live in the store, if anywhere."""

    name: str
    signing: Certificate
    encryption: Certificate


@dataclass
class Checkpoint:
    id: str
    name: str
    created: str  # ISO 8601 UTC


@dataclass
class SavedState:
    """What a saved state was made under; it resumes only while the VM's security settings are unchanged."""

    security_digest: str


@dataclass
class VirtualMachine:
    id: str
    name: str
    generation: int = 2
    state: str = "Off"
    tpm_enabled: bool = False
    key_protector: bytes = NO_KEY_PROTECTOR
    # The key protector the VM last started with (Set-VMKeyProtector -RestoreLastKnownGoodKeyProtector); b"" = none.
    last_good_key_protector: bytes = b""
    checkpoints: list[Checkpoint] = field(default_factory=list)
    saved_state: SavedState | None = None
    path: str = VM_ROOT
    vhd_paths: list[str] = field(default_factory=list)
    memory_mb: int = 4096
    processor_count: int = 2
    # [{"name": ..., "switch": ... ("" = not connected)}] in the order Get-VMNetworkAdapter lists them
    network_adapters: list[dict[str, str]] = field(default_factory=list)
    secure_boot: bool = True  # generation 2 only, like the template
    secure_boot_template: str = "MicrosoftWindows"
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def configuration_location(self) -> str:
        return self.path

    @property
    def config_file(self) -> str:
        return rf"{self.path}\Virtual Machines\{self.id.upper()}.vmcx"

    def security_digest(self) -> str:
        """Identifies the security settings a saved state was made under (TPM on/off and key protector)."""
        marker = b"tpm" if self.tpm_enabled else b"notpm"
        return hashlib.sha256(marker + self.key_protector).hexdigest()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["key_protector"] = base64.b64encode(self.key_protector).decode()
        data["last_good_key_protector"] = base64.b64encode(self.last_good_key_protector).decode()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VirtualMachine:
        data = dict(data)
        data["key_protector"] = base64.b64decode(data["key_protector"])
        data["last_good_key_protector"] = base64.b64decode(data.get("last_good_key_protector", ""))
        data["checkpoints"] = [Checkpoint(**c) for c in data.get("checkpoints", [])]
        saved = data.get("saved_state")
        data["saved_state"] = SavedState(**saved) if saved else None
        return cls(**data)


@dataclass
class LabContext:
    """What hosts of one lab share: the lab share directory, and each other by computer name (for Move-VM)."""

    share: Path
    hosts: dict[str, HostModel] = field(default_factory=dict)

    def register(self, host: HostModel) -> None:
        self.hosts[host.name.casefold()] = host

    def peer(self, computer_name: str) -> HostModel | None:
        name = computer_name.split(".")[0].casefold()  # HV02.lab.local answers as HV02
        return self.hosts.get(name)


class FileArea:
    """Maps Windows paths onto directories: drives under <state>/files/<letter>, \\\\LAB\\share onto the lab share,
    \\\\<host>\\<share> onto a lab host's shared folder, `<drive>:\\` onto the session's PowerShell drives."""

    def __init__(self, root: Path, share: Path | None = None, second_hop: Callable[[], bool] = lambda: False) -> None:
        self.root = root
        self.share = share
        self._second_hop = second_hop  # whether the share asks the session's logon, as Windows does
        self.lab: LabContext | None = None  # the hosts whose shares a UNC path may name

    def denied(self, windows_path: str) -> bool:
        """Whether the current session's logon is refused on this path (a share it has no credentials for)."""
        text = windows_path.replace("/", "\\").strip().casefold()
        unc = text == LAB_SHARE_UNC.casefold() or text.startswith(LAB_SHARE_UNC.casefold() + "\\")
        server = LAB_SHARE_UNC.strip("\\").split("\\")[0]
        return unc and self._second_hop() and not logon.current().can_reach(logon.SHARE_SERVICE, server)

    def resolve(self, windows_path: str) -> Path:
        """The local path for a Windows path; PathOutsideArea if it could escape or is not a path we serve."""
        text = windows_path.replace("/", "\\").strip()
        if self.denied(text):
            raise ShareAccessDenied(windows_path)
        drive = re.match(r"^([^\\:/]{2,}):(\\|$)", text)
        if drive:
            return self._on_drive(drive.group(1), text[drive.end() :], windows_path)
        if _host_share(text):
            return self._on_host_share(text, windows_path)
        if text.casefold().startswith(LAB_SHARE_UNC.casefold() + "\\") or text.casefold() == LAB_SHARE_UNC.casefold():
            if self.share is None:
                raise PathOutsideArea(windows_path)
            base, rest = self.share, text[len(LAB_SHARE_UNC) :]
        elif re.match(r"^[A-Za-z]:(\\|$)", text):
            base, rest = self.root / text[0].upper(), text[2:]
        elif text.startswith("\\") or ":" in text:
            raise PathOutsideArea(windows_path)
        else:
            return self.resolve(HOME + "\\" + text)
        return self._walk(base, [p for p in rest.split("\\") if p not in ("", ".")], windows_path)

    def _on_drive(self, name: str, rest: str, original: str) -> Path:
        found = logon.current().drives.get(name.casefold())
        if found is None:
            raise DriveMissing(name)
        return self.resolve(found.root + "\\" + rest)

    def _on_host_share(self, text: str, original: str) -> Path:
        """A path on a share of a lab host: its folder there, if the session may read it (docs/domain.md)."""
        server, name, *rest = text.lstrip("\\").split("\\")
        root = f"\\\\{server}\\{name}"
        peer = self.lab.peer(server) if self.lab is not None else None
        share = peer.shares.get(name.casefold()) if peer is not None and peer.on_network else None
        if share is None:
            raise PathOutsideArea(original)
        session = logon.current()
        if self._second_hop() and not (session.can_reach(logon.SHARE_SERVICE) or session.connected_to(root)):
            raise ShareAccessDenied(original)
        assert peer is not None
        if share.vanishes_after is not None:
            share.vanishes_after -= 1
            if share.vanishes_after < 0:
                peer.shares.pop(name.casefold(), None)
                raise ShareGone(original)
        with logon.impersonating(logon.LOCAL_SYSTEM):  # the file server reads its own folder
            return peer.files.resolve("\\".join([share.path, *rest]))

    def _walk(self, base: Path, parts: list[str], original: str) -> Path:
        current = base
        for part in parts:
            if part == ".." or _BAD_COMPONENT.search(part) or part.endswith((" ", ".")):
                raise PathOutsideArea(original)
            current = current / _existing_case(current, part)
        # resolve() follows symlinks as far as the path exists: a link pointing out of the area is caught here
        if not current.resolve().is_relative_to(base.resolve()):
            raise PathOutsideArea(original)
        return current

    def snapshot(self, under: str = "C:\\") -> dict[str, bytes]:
        """Every file below a Windows folder, by Windows path (for tests that look for leftovers)."""
        top = self.resolve(under)
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        return {self.windows_path(p): p.read_bytes() for p in files}

    def windows_path(self, local: Path) -> str:
        """The Windows spelling of a local path inside the area (inverse of resolve)."""
        if self.share is not None and local.is_relative_to(self.share):
            return "\\".join([LAB_SHARE_UNC, *local.relative_to(self.share).parts])
        if not local.is_relative_to(self.root):
            return str(local)  # a file of another host, read through its share
        drive, *rest = local.relative_to(self.root).parts
        return f"{drive}:\\" + "\\".join(rest)


def _host_share(text: str) -> bool:
    """\\\\server\\share[\\...] naming a host's share (the lab share \\\\LAB\\share has its own folder)."""
    if not text.startswith("\\\\"):
        return False
    parts = text[2:].split("\\")
    return len(parts) >= 2 and all(parts[:2]) and parts[0].casefold() != "lab"


def _existing_case(directory: Path, name: str) -> str:
    """Windows paths are case-insensitive: reuse an existing entry's spelling."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.casefold() == name.casefold():
                return entry.name
    return name


class HostModel:
    """One simulated Hyper-V host (Windows Server 2022, or Windows 11 Pro; HGS client in Local mode)."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.state_dir = state_dir
        self.name = name
        self.present(EDITIONS["server"])
        self.installed = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        self.hgs_mode = "Local"
        self.store: dict[str, Certificate] | None = None  # None: the store was never created on this host
        self.guardians: dict[str, Guardian] = {}
        self.vms: dict[str, VirtualMachine] = {}
        self.live_migration = False
        self.switches: list[str] = [LAB_SWITCH]
        # Second-hop facts (docs/domain.md): None is a workgroup host; a domain name joins it. Hyper-V's default
        # migration authentication is CredSSP; the WSMan CredSSP server role is off until Enable-WSManCredSSP.
        self.domain: str | None = None
        self.migration_authentication = MIGRATION_CREDSSP
        self.credssp_server = False
        # The domain's word on this host's computer account (Active Directory, not the host): where it may delegate
        # a Kerberos logon to (constrained delegation, hypervsim/logon.py). Nothing until an admin grants it.
        self.delegation = logon.Delegation()
        self.shares: dict[str, SmbShare] = {}  # by name, casefolded
        self.lock = threading.RLock()
        self.files = FileArea(state_dir / "files", second_hop=lambda: self.strict.second_hop)
        self.lab: LabContext | None = None
        self.on_network = True  # runtime only (SimHost.down/up): a lab peer that is down cannot be migrated to
        self.strict = Strictness.default()  # runtime only: where this host is as strict as Windows

    # -- persistence -----------------------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, state_dir: Path, name: str, scenario: str | None = None) -> HostModel:
        """The host saved in state_dir, or a new one seeded with the scenario (default: fresh)."""
        host = cls(state_dir, name)
        for folder in STANDARD_FOLDERS:
            host.files.resolve(folder).mkdir(parents=True, exist_ok=True)
        if (state_dir / "host.json").exists():
            host._load()
            return host
        from hypervsim.scenarios import seed  # scenarios build on the model

        state_dir.mkdir(parents=True, exist_ok=True)
        seed(host, scenario or "fresh")
        host.save()
        return host

    def attach(self, lab: LabContext) -> None:
        """Join a lab: its share becomes reachable as \\\\LAB\\share and peers can find this host."""
        lab.share.mkdir(parents=True, exist_ok=True)
        self.files.share = lab.share
        self.files.lab = self.lab = lab
        lab.register(self)

    def save(self) -> None:
        with self.lock:
            self._write_store()
            data = {
                "name": self.name,
                "os": [self.os_caption, self.os_version, self.os_build, self.installed],
                "product_type": self.product_type,
                "hgs_mode": self.hgs_mode,
                "store_exists": self.store is not None,
                "guardians": [
                    {
                        "name": g.name,
                        "signing": g.signing.public_only().to_pem(),
                        "encryption": g.encryption.public_only().to_pem(),
                    }
                    for g in self.guardians.values()
                ],
                "vms": [vm.to_json() for vm in self.vms.values()],
                "live_migration": self.live_migration,
                "switches": self.switches,
                "membership": [self.domain, self.migration_authentication, self.credssp_server],
                "delegation": [list(self.delegation.allowed_to), self.delegation.any_protocol],
                "shares": [[s.name, s.path, s.accounts] for s in self.shares.values()],
            }
            _atomic_write(self.state_dir / "host.json", json.dumps(data, indent=1))

    def _write_store(self) -> None:
        store_dir = self.state_dir / "store"
        store_dir.mkdir(parents=True, exist_ok=True)
        wanted = set(self.store or {})
        for existing in store_dir.glob("*.pem"):
            if existing.stem not in wanted:
                existing.unlink()
        for thumb, cert in (self.store or {}).items():
            target = store_dir / f"{thumb}.pem"
            if not target.exists() or (cert.key is not None) != ("PRIVATE KEY" in target.read_text()):
                _atomic_write(target, cert.to_pem())

    def _load(self) -> None:
        data = json.loads((self.state_dir / "host.json").read_text())
        self.name = data["name"]
        self.os_caption, self.os_version, self.os_build, self.installed = data["os"]
        self.product_type = data.get("product_type", EDITIONS["server"].product_type)
        self.hgs_mode = data["hgs_mode"]
        self.live_migration = data["live_migration"]
        self.switches = data.get("switches", [LAB_SWITCH])
        self.domain, self.migration_authentication, self.credssp_server = data.get(
            "membership", [None, MIGRATION_CREDSSP, False]
        )
        allowed_to, any_protocol = data.get("delegation", [[], False])
        self.delegation = logon.Delegation(tuple(allowed_to), any_protocol)
        self.shares = {n.casefold(): SmbShare(n, p, a) for n, p, a in data.get("shares", [])}
        self.store = None
        if data["store_exists"]:
            self.store = {}
            for pem in sorted((self.state_dir / "store").glob("*.pem")):
                cert = Certificate.from_pem(pem.read_text())
                self.store[cert.thumbprint] = cert
        self.guardians = {
            g["name"]: Guardian(g["name"], Certificate.from_pem(g["signing"]), Certificate.from_pem(g["encryption"]))
            for g in data["guardians"]
        }
        self.vms = {v["id"]: VirtualMachine.from_json(v) for v in data["vms"]}

    @contextmanager
    def changing(self) -> Iterator[HostModel]:
        """Hold the host lock for a change and save it afterwards (also when the change failed half-way)."""
        with self.lock:
            try:
                yield self
            finally:
                self.save()

    def present(self, edition: Edition) -> None:
        """Run this Windows edition (what Win32_OperatingSystem reports)."""
        self.os_caption, self.os_version, self.os_build = edition.caption, edition.version, edition.build
        self.product_type = edition.product_type

    @property
    def workgroup(self) -> bool:
        return self.domain is None

    # -- lookups ---------------------------------------------------------------------------------------------

    def vm(self, name: str) -> VirtualMachine:
        """The VM with this name (case-insensitive) or id; KeyError when there is none."""
        for vm in self.vms.values():
            if vm.name.casefold() == name.casefold() or vm.id == name.lower():
                return vm
        raise KeyError(name)

    def guardian(self, name: str) -> Guardian | None:
        return next((g for g in self.guardians.values() if g.name.casefold() == name.casefold()), None)

    def add_guardian(self, name: str, signing: Certificate, encryption: Certificate) -> Guardian:
        """Register a guardian; its certificates go into the store (made if missing), private keys kept."""
        if self.store is None:
            self.store = {}  # the HGS client creates its store the first time it keeps a certificate
        for cert in (signing, encryption):
            if cert.thumbprint not in self.store or cert.key is not None:
                self.store[cert.thumbprint] = cert
        guardian = Guardian(name, signing.public_only(), encryption.public_only())
        self.guardians[name] = guardian
        return guardian

    def private_key_held(self, cert: Certificate) -> bool:
        held = (self.store or {}).get(cert.thumbprint)
        return held is not None and held.key is not None

    def add_vm(self, name: str, **fields: Any) -> VirtualMachine:
        vm_id = fields.pop("id", None) or str(uuid.uuid4())
        vm = VirtualMachine(id=vm_id, name=name, **fields)
        if vm.tpm_enabled and not vm.last_good_key_protector:
            vm.last_good_key_protector = vm.key_protector  # a seeded VM has run with the protector it has
        if not vm.vhd_paths:
            vm.vhd_paths = [rf"{VHD_ROOT}\{name}.vhdx"]
        if "network_adapters" not in fields:
            vm.network_adapters = [{"name": "Network Adapter", "switch": LAB_SWITCH}]
        self.vms[vm.id] = vm
        for vhd in vm.vhd_paths:
            self.write_file(vhd, b"vhdx" + name.encode())
        return vm

    def share_folder(self, name: str, path: str, accounts: dict[str, str]) -> SmbShare:
        """Share a local folder (New-SmbShare -Name -Path -ReadAccess) readable by these local accounts."""
        self.files.resolve(path).mkdir(parents=True, exist_ok=True)
        share = self.shares[name.casefold()] = SmbShare(name, path, dict(accounts))
        return share

    def write_file(self, windows_path: str, data: bytes) -> Path:
        local = self.files.resolve(windows_path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return local


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
