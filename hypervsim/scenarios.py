"""Seeds for simulated hosts: the situations the console must recognise and repair.

fresh          new install: no `Shielded VM Local Certificates` store, no guardian, one VM without a TPM
healthy        UntrustedGuardian with private keys; TPM VMs owned by it (running, off with a checkpoint, saved)
reinstalled    VM files survived a reinstall, the guardian did not: the TPM VMs will not start
deleted-certs  UntrustedGuardian still configured but its certificates were deleted: TPM changes fail
migration-source / migration-target   healthy / fresh with live migration enabled (the "migration" lab)
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from hypervsim.certs import Certificate, export_pfx, guardian_pair
from hypervsim.keyprotector import KeyProtector
from hypervsim.model import LOCAL_GUARDIAN, MIGRATION_KERBEROS, Checkpoint, HostModel, SavedState

LAB_DOMAIN = "lab.test"  # the domain of the "migration" scenario's hosts

ARRANGEMENTS: dict[str, list[str]] = {"migration": ["migration-source", "migration-target"]}
BACKUP_PASSWORD = "Backup-Passw0rd!"
_PREVIOUS = "previous-guardian.pem"  # kept beside, not inside, the host's file area


def seed(host: HostModel, scenario: str) -> None:
    try:
        builder = SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))}") from None
    builder(host)


def fresh(host: HostModel) -> None:
    host.add_vm("Srv-Plain", memory_mb=2048)


def healthy(host: HostModel) -> None:
    signing, encryption = _local_guardian(host, "healthy")
    kp = lambda: KeyProtector.create(signing, encryption).to_bytes()  # noqa: E731 - each VM has its own protector
    host.add_vm("Win11-A", state="Running", tpm_enabled=True, key_protector=kp())
    b = host.add_vm("Win11-B", tpm_enabled=True, key_protector=kp())
    b.checkpoints.append(Checkpoint(str(uuid.uuid4()), "Before update", _ago(days=3)))
    c = host.add_vm("Win11-C", state="Saved", tpm_enabled=True, key_protector=kp())
    c.saved_state = SavedState(c.security_digest())
    host.add_vm("Srv-Plain", memory_mb=2048)


def reinstalled(host: HostModel) -> None:
    """The VMs are sealed to the guardian of the previous install, whose pair survives only as a backup."""
    signing, encryption = guardian_pair(LOCAL_GUARDIAN, host.name, key_label=f"reinstalled/{host.name}")
    (host.state_dir / _PREVIOUS).write_text(signing.to_pem() + encryption.to_pem())
    for name in ("Win11-A", "Win11-B"):
        host.add_vm(name, tpm_enabled=True, key_protector=KeyProtector.create(signing, encryption).to_bytes())
    host.add_vm("Srv-Plain", memory_mb=2048)


def deleted_certs(host: HostModel) -> None:
    healthy(host)
    host.store = {}
    for vm in host.vms.values():
        if vm.state != "Off":
            vm.state, vm.saved_state = "Off", None


def migration_source(host: HostModel) -> None:
    healthy(host)
    migration_target(host)


def migration_target(host: HostModel) -> None:
    """Set up as Microsoft's "live migration without Failover Clustering" asks: live migration on, in a domain,
    migrations authenticated with Kerberos (delegation itself is the domain's, granted per session)."""
    host.live_migration = True
    host.domain, host.migration_authentication = LAB_DOMAIN, MIGRATION_KERBEROS


SCENARIOS = {
    "fresh": fresh,
    "healthy": healthy,
    "reinstalled": reinstalled,
    "deleted-certs": deleted_certs,
    "migration-source": migration_source,
    "migration-target": migration_target,
}


def add_tpm_vms(host: HostModel, count: int, prefix: str = "Bench") -> None:
    """More TPM VMs sealed to the host's UntrustedGuardian (made if missing), e.g. for benchmarks of large hosts."""
    with host.changing():
        guardian = host.guardians.get(LOCAL_GUARDIAN)
        if guardian is None or not host.private_key_held(guardian.signing):
            _local_guardian(host, f"bench/{host.name}")
            guardian = host.guardians[LOCAL_GUARDIAN]
        store = host.store or {}
        signing, encryption = store[guardian.signing.thumbprint], store[guardian.encryption.thumbprint]
        for index in range(count):
            kp = KeyProtector.create(signing, encryption).to_bytes()
            host.add_vm(f"{prefix}-{index + 1:03d}", tpm_enabled=True, key_protector=kp)


def has_previous_guardian(host: Any) -> bool:
    """Whether the host is a `reinstalled` one, with a lost guardian whose backup previous_guardian_backup() gives."""
    model: HostModel = getattr(host, "model", host)
    return (model.state_dir / _PREVIOUS).is_file()


def previous_guardian_backup(host: Any) -> tuple[bytes, bytes, str]:
    """(signing_pfx, encryption_pfx, password) of the guardian a `reinstalled` host's VMs are sealed to.

    Written as the well-known export script writes UntrustedGuardian-signing.pfx / -encryption.pfx. Accepts a
    HostModel or anything with a `.model` (a SimHost).
    """
    model: HostModel = getattr(host, "model", host)
    pem = (model.state_dir / _PREVIOUS).read_text()
    marker = "-----BEGIN CERTIFICATE-----"
    signing_pem, encryption_pem = (marker + part for part in pem.split(marker)[1:])
    signing, encryption = Certificate.from_pem(signing_pem), Certificate.from_pem(encryption_pem)
    return (
        export_pfx(signing, BACKUP_PASSWORD, legacy=True),
        export_pfx(encryption, BACKUP_PASSWORD, legacy=True),
        BACKUP_PASSWORD,
    )


def _local_guardian(host: HostModel, scenario: str) -> tuple[Certificate, Certificate]:
    """UntrustedGuardian as Hyper-V creates it on the first TPM enable: store, certificates, guardian."""
    signing, encryption = guardian_pair(LOCAL_GUARDIAN, host.name, key_label=f"{scenario}/{host.name}")
    host.add_guardian(LOCAL_GUARDIAN, signing, encryption)
    return signing, encryption


def _ago(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(**delta)).replace(microsecond=0).isoformat()


def backup_files(host: Any, directory: Path) -> tuple[Path, Path]:
    """Write the previous guardian's backup pair as the export script names the files."""
    signing, encryption, _ = previous_guardian_backup(host)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{LOCAL_GUARDIAN}-signing.pfx").write_bytes(signing)
    (directory / f"{LOCAL_GUARDIAN}-encryption.pfx").write_bytes(encryption)
    return directory / f"{LOCAL_GUARDIAN}-signing.pfx", directory / f"{LOCAL_GUARDIAN}-encryption.pfx"
