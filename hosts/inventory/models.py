"""What each registered host holds, as of its last refresh: facts, guardians, store certificates and VMs.

A refresh updates a host's rows in one transaction, keeping the rows (and so their pages) of what is still there.
A host that cannot be reached keeps its last inventory, marked stale with the time and the error of the failed attempt.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from hosts.models import Host


class HostInventory(models.Model):
    """The inventory state of one host: when it was last read, and whether that still holds."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, related_name="inventory")
    facts = models.JSONField(default=dict, blank=True)  # computer name, OS, HGS mode, store presence
    mode = models.CharField(max_length=32, blank=True)  # HGS client mode: Local | HostGuardianService
    refreshed_at = models.DateTimeField(null=True, blank=True)  # last successful refresh
    attempted_at = models.DateTimeField(null=True, blank=True)  # last attempt, successful or not
    stale = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=16, blank=True)
    problems = models.JSONField(default=list, blank=True)  # partial failures of the last refresh (one VM, …)
    requests = models.PositiveIntegerField(default=0)  # WinRM HTTP requests the last refresh cost

    class Meta:
        verbose_name_plural = "host inventories"

    def __str__(self) -> str:
        return f"inventory of {self.host}"

    @property
    def local_mode(self) -> bool:
        return self.mode == "Local"

    @property
    def health(self) -> str:
        """ok | stale | never — for the dashboard's host list."""
        if self.refreshed_at is None:
            return "stale" if self.stale else "never"
        return "stale" if self.stale else "ok"


class Certificate(models.Model):
    """A certificate of the host's 'Shielded VM Local Certificates' store."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="certificates")
    thumbprint = models.CharField(max_length=40)
    subject = models.CharField(max_length=500, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    has_private_key = models.BooleanField(default=False)

    class Meta:
        ordering = ["host__name", "subject"]
        constraints = [models.UniqueConstraint(fields=["host", "thumbprint"], name="inventory_cert_per_host")]

    def __str__(self) -> str:
        return f"{self.subject or self.thumbprint} on {self.host}"


class Guardian(models.Model):
    """An HGS guardian as Get-HgsGuardian lists it on one host. Its identity is its certificate pair."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="guardians")
    name = models.CharField(max_length=200)
    signing_thumbprint = models.CharField(max_length=40, blank=True)
    encryption_thumbprint = models.CharField(max_length=40, blank=True)
    signing_subject = models.CharField(max_length=500, blank=True)
    encryption_subject = models.CharField(max_length=500, blank=True)
    has_private_signing_key = models.BooleanField(default=False)
    # Whether the store holds the private key of the encryption certificate (what unwrapping a KP needs).
    has_private_encryption_key = models.BooleanField(default=False)

    class Meta:
        ordering = ["host__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    @property
    def identity(self) -> tuple[str, str]:
        return (self.signing_thumbprint, self.encryption_thumbprint)


class VirtualMachine(models.Model):
    """A VM of the host, with its vTPM state and the guardians its key protector is sealed to."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="vms")
    vm_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    state = models.CharField(max_length=32, blank=True)
    generation = models.PositiveSmallIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True)
    tpm_enabled = models.BooleanField(default=False)
    shielded = models.BooleanField(default=False)
    has_saved_state = models.BooleanField(default=False)
    checkpoint_count = models.PositiveIntegerField(default=0)
    has_key_protector = models.BooleanField(default=False)
    kp_readable = models.BooleanField(default=True)
    # {"signing": thumbprint, "encryption": thumbprint} of the owner, {} when there is no key protector.
    kp_owner_thumbprints = models.JSONField(default=dict, blank=True)
    # [{"signing": …, "encryption": …}, …]: every guardian the key protector is sealed to, owner included.
    kp_guardian_thumbprints = models.JSONField(default=list, blank=True)
    details_read = models.BooleanField(default=True)  # False: security/KP of this VM could not be read
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name", "host__name"]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    @property
    def guardian_pairs(self) -> list[tuple[str, str]]:
        return [(g.get("signing", ""), g.get("encryption", "")) for g in self.kp_guardian_thumbprints]

    @property
    def owner_pair(self) -> tuple[str, str] | None:
        owner: dict[str, Any] = self.kp_owner_thumbprints or {}
        return (owner.get("signing", ""), owner.get("encryption", "")) if owner else None

    @property
    def protected(self) -> bool:
        """A VM whose start depends on guardians: TPM enabled (or shielded) with a key protector."""
        return self.has_key_protector and (self.tpm_enabled or self.shielded)
