"""Reset a broken guardian: escrow what can still be escrowed, keep the guardian's public metadata for an undo,
remove the guardian, and prove that TPM changes work again. Also the undo, and what Show PowerShell prints for both."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN, Pair
from hosts.inventory.models import VirtualMachine
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ExportGuardian,
    GetGuardians,
    ImportGuardianMetadata,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    ReadFileBytes,
    RemoveFiles,
    RemoveGuardian,
    WriteFileBytes,
)
from hosts.remoting.catalog.inventory import GuardianFacts, ReadHostInventory, ReadVmDetails
from hosts.remoting.catalog.vms import DisableTpm, EnableTpm, GetVM
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.operation import quote
from hosts.vault.models import find_pair
from jobs.kinds import JobFailed
from jobs.models import Job

from ..escrow.plan import escrow_lines, escrow_pair
from ..powershell import PowerShellScript, sample_token


@dataclass
class SealedVm:
    """A VM of the host whose key protector names the guardian being reset."""

    name: str
    state: str
    escrowed: bool  # one of its guardians' pairs is in the vault
    keys_here: bool  # the host holds the private keys of one of its guardians


@dataclass
class ResetPlan:
    guardian: GuardianFacts | None
    sealed: list[SealedVm] = field(default_factory=list)
    to_escrow: list[tuple[str, str, str]] = field(default_factory=list)  # (signing, encryption, guardian name)
    check_vm: str = ""  # an Off VM whose current TPM setting the verification re-applies
    check_tpm_enabled: bool = False
    problem: str = ""  # why the reset does not apply


def _keyed(certificates: list[Any]) -> set[str]:
    return {c.thumbprint.upper() for c in certificates if c.has_private_key}


def is_broken(guardian: GuardianFacts, keyed: set[str]) -> bool:
    """A guardian that lacks its private signing key, or whose encryption key is not in the store."""
    return not guardian.has_private_signing_key or guardian.encryption_thumbprint.upper() not in keyed


def plan_reset(session: Any, host: Any, guardian_name: str = UNTRUSTED_GUARDIAN) -> ResetPlan:
    """Read the host live and say what a reset of `guardian_name` would do."""
    inventory = session.run(ReadHostInventory())
    inventory.facts.require_local()
    guardian = next((g for g in inventory.guardians if g.name.lower() == guardian_name.lower()), None)
    if guardian is None:
        return ResetPlan(None, problem=f"{host} has no guardian named '{guardian_name}': there is nothing to reset.")
    keyed = _keyed(inventory.certificates)
    plan = ResetPlan(guardian)
    if not is_broken(guardian, keyed):
        plan.problem = (
            f"Guardian '{guardian.name}' on {host} has its private keys: it is not broken, and removing it would "
            "only cut its VMs off. Nothing to reset."
        )
        return plan
    identity = (guardian.signing_thumbprint.upper(), guardian.encryption_thumbprint.upper())
    details = session.run(ReadVmDetails([vm.name for vm in inventory.vms]))
    sealed: list[list[Pair]] = []
    for vm in inventory.vms:
        kp = details[vm.name].key_protector if vm.name in details else None
        if kp is None or not kp.present or identity not in {(g.signing, g.encryption) for g in kp.guardians}:
            continue
        pairs = [(g.signing, g.encryption) for g in kp.guardians]
        escrowed = any(find_pair(*p) is not None for p in pairs)
        plan.sealed.append(SealedVm(vm.name, vm.state, escrowed, any(set(p) <= keyed for p in pairs)))
        sealed.append(pairs)
    plan.to_escrow = pairs_to_escrow(identity, guardian.name, sealed, keyed)
    plan.check_vm, plan.check_tpm_enabled = check_candidate(
        [(vm.name, vm.state, d.tpm_enabled, d.security_read) for vm in inventory.vms if (d := details.get(vm.name))]
    )
    return plan


def pairs_to_escrow(identity: Pair, name: str, sealed: list[list[Pair]], keyed: set[str]) -> list[tuple[str, str, str]]:
    """(signing, encryption, guardian name) of what a reset escrows first: the guardian's own pair when the host
    holds its keys, and each pair of a VM sealed to it (`sealed`: their pairs) that the host holds keys for —
    but not those the vault has already."""
    wanted: dict[Pair, str] = {identity: name} if set(identity) <= keyed else {}
    for pairs in sealed:
        for pair in pairs:
            if set(pair) <= keyed:
                wanted.setdefault(pair, name if pair == identity else "")
    return [(s, e, n) for (s, e), n in wanted.items() if find_pair(s, e) is None]


def check_candidate(vms: list[tuple[str, str, bool, bool]]) -> tuple[str, bool]:
    """From (name, state, TPM enabled, security read) of each VM: an Off VM whose TPM setting can be re-applied
    as a check, preferring one whose TPM is off (re-applying "off" changes nothing at all). ("", False) when no
    VM is Off."""
    readable = [(name, tpm) for name, state, tpm, read in vms if state == "Off" and read]
    return next(((name, tpm) for name, tpm in readable if not tpm), readable[0] if readable else ("", False))


def escrow_before_reset(run: Any, session: Any, host: Any, plan: ResetPlan) -> int:
    """Escrow every pair the host still holds keys for and the vault lacks; stop the reset if one fails."""

    for signing, encryption, name in plan.to_escrow:
        with run.step(f"Escrow {name or 'guardian'} {signing[:8]}/{encryption[:8]} from {host} before the reset"):
            try:
                escrow_pair(session, host, signing, encryption, guardian_name=name, user=run.user, log=run.log)
            except (JobFailed, RemotingError) as exc:
                raise JobFailed(
                    f"Could not escrow {signing[:8]}/{encryption[:8]} first, so the guardian was NOT removed and "
                    f"nothing changed on {host}: {exc}"
                ) from None
    return len(plan.to_escrow)


def keep_metadata(session: Any, guardian_name: str) -> str:
    """The guardian's public metadata (Export-HgsGuardian XML, no private key), base64, for the undo."""
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        session.run(ExportGuardian(guardian_name, temp))
        return base64.b64encode(session.run(ReadFileBytes(temp))).decode()
    finally:
        session.run(RemoveFiles([temp]))


def remove_guardian(run: Any, session: Any, host: Any, guardian: GuardianFacts) -> None:
    undo = {
        "host": host.name,
        "guardian_name": guardian.name,
        "signing_thumbprint": guardian.signing_thumbprint.upper(),
        "encryption_thumbprint": guardian.encryption_thumbprint.upper(),
    }
    with run.step(f"Keep guardian '{guardian.name}' of {host} for an undo"):
        undo["metadata_xml"] = keep_metadata(session, guardian.name)
        run.record("removed_guardian", undo)
        run.log(
            f"Recorded for the undo: '{guardian.name}' signing {undo['signing_thumbprint']}, "
            f"encryption {undo['encryption_thumbprint']}"
        )
    with run.step(f"Remove-HgsGuardian '{guardian.name}' on {host}", destructive=True) as step:
        if step.needed:
            session.run(RemoveGuardian(guardian.name))
            run.log(f"Removed guardian '{guardian.name}' from {host}; its certificates, if any, stay in the store")


def verify_tpm_changes(run: Any, session: Any, host: Any, plan: ResetPlan) -> str:
    """Re-apply an Off VM's current TPM setting: it changes nothing, and fails while a broken guardian is there."""
    with run.step(f"Check that TPM changes work on {host}"):
        remaining = [g for g in session.run(GetGuardians()) if plan.guardian and g.name == plan.guardian.name]
        if remaining:
            raise JobFailed(f"Guardian '{remaining[0].name}' is still on {host} after Remove-HgsGuardian.")
        if not plan.check_vm:
            run.log(
                f"No VM on {host} is Off, so no TPM setting could be re-applied as a check. The broken guardian is "
                "gone; the next TPM change will create a fresh UntrustedGuardian with private keys.",
                "warning",
            )
            return "guardian removed (no Off VM to check a TPM change with)"
        vm = session.run(GetVM(plan.check_vm))
        if vm is None or vm.state != "Off":
            return f"guardian removed; VM '{plan.check_vm}' is no longer Off, so the check was skipped"
        op = EnableTpm(plan.check_vm) if plan.check_tpm_enabled else DisableTpm(plan.check_vm)
        try:
            session.run(op)
        except RemoteCommandError as exc:
            raise JobFailed(
                f"The guardian was removed, but re-applying the TPM setting of '{plan.check_vm}' still fails: "
                f"{exc.message}. Look at Get-HgsGuardian on {host} for another guardian without private keys."
            ) from None
        setting = "on" if plan.check_tpm_enabled else "off"
        run.log(f"TPM changes work again on {host}: re-applied “TPM {setting}” to '{plan.check_vm}' (no change)")
        return f"TPM changes work again (checked on '{plan.check_vm}')"


def reset_guardian(run: Any, session: Any, host: Any, guardian_name: str = UNTRUSTED_GUARDIAN) -> str:
    """The whole reset; returns a one-line summary. Raises JobFailed with what is left when a step fails."""
    with run.step(f"Read what is sealed to '{guardian_name}' on {host}"):
        try:
            plan = plan_reset(session, host, guardian_name)
        except RemotingError as exc:
            raise JobFailed(f"Nothing was changed: {host} could not be read — {exc}") from None
        if plan.problem:
            raise JobFailed(plan.problem)
        describe_plan(run, host, plan)
    assert plan.guardian is not None
    escrowed = escrow_before_reset(run, session, host, plan)
    run.check_cancelled()
    remove_guardian(run, session, host, plan.guardian)
    checked = verify_tpm_changes(run, session, host, plan)
    run.record("sealed_vms", [vm.name for vm in plan.sealed])
    return f"Removed '{plan.guardian.name}' from {host} ({escrowed} pair(s) escrowed first); {checked}"


def describe_plan(run: Any, host: Any, plan: ResetPlan) -> None:
    if not plan.sealed:
        run.log(f"No VM on {host} is sealed to this guardian")
    for vm in plan.sealed:
        where = "escrowed in the vault" if vm.escrowed else "NOT escrowed anywhere"
        keys = "its keys are on this host" if vm.keys_here else "no private key for it on this host"
        level = "info" if vm.escrowed or vm.keys_here else "warning"
        run.log(f"VM '{vm.name}' ({vm.state}) is sealed to it: {where}; {keys}", level)
    run.log(f"{len(plan.to_escrow)} pair(s) to escrow before removing the guardian")


def undo_reset(run: Any, session: Any, host: Any, removed: dict[str, Any]) -> str:
    """Re-create the removed guardian: by thumbprints when its certificates are in the store, else from the
    metadata kept before the reset (its public certificates, as it was)."""
    name = removed["guardian_name"]
    key = (removed["signing_thumbprint"], removed["encryption_thumbprint"])
    with run.step(f"Check that '{name}' can come back on {host}"):
        existing = next((g for g in session.run(GetGuardians()) if g.name.lower() == name.lower()), None)
        if existing is not None:
            if (existing.signing_thumbprint.upper(), existing.encryption_thumbprint.upper()) == key:
                return f"'{name}' is already on {host} with the same certificates; nothing to undo"
            raise JobFailed(
                f"{host} has a new guardian named '{name}' now (signing {existing.signing_thumbprint}), made after "
                "the reset — enabling a TPM creates one. The undo would have to remove it, and VMs sealed since then "
                f"would lose their owner, so nothing was changed. If you are sure: Remove-HgsGuardian -Name '{name}' "
                "on the host, then run the undo again."
            )
        store = session.run(ListShieldedCertificates())
    with run.step(f"Re-create guardian '{name}' on {host}", destructive=True) as step:
        if not step.needed:
            return f"'{name}' re-created on {host}"
        if store.exists and store.find(key[0]) and store.find(key[1]):
            session.run(NewGuardianByThumbprints(name, *key))
            how = "by thumbprints"
        else:
            restore_from_metadata(session, name, removed.get("metadata_xml", ""))
            how = "from its metadata kept before the reset (its certificates are no longer in the store)"
        run.log(f"Re-created '{name}' on {host} {how}")
    return f"'{name}' re-created on {host} {how.split(' (')[0]}"


def restore_from_metadata(session: Any, name: str, metadata_b64: str) -> None:
    if not metadata_b64:
        raise JobFailed(
            f"The certificates of '{name}' are no longer in the store and the reset kept no metadata: it cannot be "
            "re-created. (It had already lost its private keys, so no VM lost access through the reset.)"
        )
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        session.run(WriteFileBytes(temp, base64.b64decode(metadata_b64)))
        session.run(ImportGuardianMetadata(temp, name))
    finally:
        session.run(RemoveFiles([temp]))


def removed_guardian_of(job_id: Any) -> dict[str, Any] | None:

    if not str(job_id).isdigit():
        return None
    job = Job.objects.filter(pk=int(job_id), kind="reset_guardian").first()
    removed = job.results.get("removed_guardian") if job is not None else None
    return removed if isinstance(removed, dict) else None


def reset_script(host: Any, guardian_name: str, guardian: Any) -> PowerShellScript:
    """What the reset will send to `host`, as far as its last inventory tells: the VMs it reads, the pairs it
    escrows first, the guardian it removes and the TPM setting it re-applies as the check."""

    vms = list(VirtualMachine.objects.filter(host=host).order_by("name"))
    script = PowerShellScript().add(ReadHostInventory(), ReadVmDetails([vm.name for vm in vms]))
    if guardian is not None:
        keyed = set(host.certificates.filter(has_private_key=True).values_list("thumbprint", flat=True))
        sealed = [vm.guardian_pairs for vm in vms if guardian.identity in vm.guardian_pairs]
        for signing, encryption, name in pairs_to_escrow(guardian.identity, guardian.name, sealed, keyed):
            script.comment(f"Escrowed first (the vault lacks it): {name or 'pair'} {signing[:8]}/{encryption[:8]}")
            escrow_lines(script, signing, encryption)
    temp = f"{TEMP_DIR}\\gc-{sample_token()}-guardian.xml"
    script.add(ExportGuardian(guardian_name, temp), ReadFileBytes(temp), RemoveFiles([temp]))
    script.add(RemoveGuardian(guardian_name), GetGuardians())
    check_vm, tpm_on = check_candidate([(vm.name, vm.state, vm.tpm_enabled, vm.details_read) for vm in vms])
    if not check_vm:
        return script.comment("No VM is Off: no TPM setting is re-applied as a check.")
    script.comment(f"The check: re-apply “TPM {'on' if tpm_on else 'off'}” to '{check_vm}' (no change)")
    return script.add(GetVM(check_vm), EnableTpm(check_vm) if tpm_on else DisableTpm(check_vm))


def fallback_script(job: Any, removed: dict[str, Any]) -> PowerShellScript:
    """The undo from the public metadata the reset kept, with that metadata inline so the lines run as shown."""
    temp, name = f"{TEMP_DIR}\\gc-{sample_token()}-guardian.xml", removed["guardian_name"]
    script = PowerShellScript()
    if removed.get("metadata_xml"):
        kept = f"[Convert]::FromBase64String({quote(str(removed['metadata_xml']))})"
        script.bind("file", "$guardianXml", kept, f"The public metadata of '{name}' that job #{job.pk} kept:")
    else:
        script.comment(f"Job #{job.pk} kept no metadata of '{name}': this way back is closed.")
    return script.add(WriteFileBytes(temp, b""), ImportGuardianMetadata(temp, name), RemoveFiles([temp]))
