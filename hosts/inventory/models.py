"""What each registered host holds, as of its last refresh: facts, guardians, store certificates and VMs; and what
that means, stored: the guardian identities across hosts, where their keys are, which VMs are sealed to them, and
per VM whether it can start anywhere and what threatens it.

A refresh updates a host's rows in one transaction, keeping the rows (and so their pages) of what is still there,
and in the same transaction the stored analysis of what the change affects (facts.py). A host that cannot be reached
keeps its last inventory, marked stale with the time and the error of the failed attempt.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import pgettext_lazy

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
    # Get-VMHost's VirtualMachineMigrationEnabled at the last refresh (None: not read yet): the migration wizard
    # refuses live migration from it before asking the hosts.
    live_migration_enabled = models.BooleanField(null=True, blank=True)

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
    thumbprint = models.CharField(max_length=40, db_index=True)  # where a guardian's keys are, across hosts
    subject = models.CharField(max_length=500, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True, db_index=True)  # the expiry risk is a range query
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
    # Derived, not read (facts.py): it has lost the private keys it should have (rules.needs_reset).
    needs_reset = models.BooleanField(default=False, db_index=True)

    DERIVED_FIELDS = ("needs_reset",)  # what a refresh leaves to the analysis

    class Meta:
        ordering = ["host__name", "name"]
        indexes = [models.Index(fields=["signing_thumbprint", "encryption_thumbprint"], name="inventory_guardian_pair")]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    @property
    def identity(self) -> tuple[str, str]:
        return (self.signing_thumbprint, self.encryption_thumbprint)


class VirtualMachine(models.Model):
    """A VM of the host, with its vTPM state and the guardians its key protector is sealed to."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="vms")
    vm_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200, db_index=True)  # the VM list's order and search
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
    # SHA-256 of the key protector's bytes when the host itself named its guardians (ConvertTo-HgsKeyProtector), ""
    # otherwise: the next refresh does not send those same bytes to the host again (keyprotectors.py).
    kp_sha256 = models.CharField(max_length=64, blank=True, default="")
    details_read = models.BooleanField(default=True)  # False: security/KP of this VM could not be read
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name", "host__name"]
        # Is a VM's name taken on other hosts (names are case-insensitive)? The migration wizard asks it of a host's
        # VMs at once, in the database.
        indexes = [models.Index(Lower("name"), name="inventory_vm_lower_name")]

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


# -- the stored analysis (facts.py writes these; pages read them) ---------------------------------------------------


class LabAnalysis(models.Model):
    """The one row that serialises updates of the stored analysis (they lock it), and when it last changed."""

    updated_at = models.DateTimeField(null=True, blank=True)
    updates = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "lab analysis"

    def __str__(self) -> str:
        return f"analysis updated {self.updates} times, last at {self.updated_at}"


class KnownGuardian(models.Model):
    """A guardian identity of the lab — its certificate pair, held by some host or named by some key protector —
    with what the analysis concluded about it."""

    signing_thumbprint = models.CharField(max_length=40)
    encryption_thumbprint = models.CharField(max_length=40)
    display_name = models.CharField(max_length=500)
    sort_name = models.CharField(max_length=500, db_index=True)  # display_name in lower case: the page's order
    subject = models.CharField(max_length=500, blank=True)
    not_after = models.DateTimeField(null=True, blank=True, db_index=True)  # its earliest-expiring certificate
    escrowed = models.BooleanField(default=False, db_index=True)
    vault_entry = models.ForeignKey(
        "vault.EscrowedPair", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    vault_name = models.CharField(max_length=200, blank=True)  # the guardian name the vault knows it by
    key_host_count = models.PositiveIntegerField(default=0, db_index=True)  # hosts holding both private keys

    class Meta:
        ordering = ["sort_name", "signing_thumbprint"]
        constraints = [
            models.UniqueConstraint(fields=["signing_thumbprint", "encryption_thumbprint"], name="inventory_known_pair")
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def pair(self) -> tuple[str, str]:
        return (self.signing_thumbprint, self.encryption_thumbprint)

    @property
    def key(self) -> str:
        """The guardian's anchor on the guardians page, and its filter value on the VM list."""
        return f"{self.signing_thumbprint}-{self.encryption_thumbprint}"


class KeyHolding(models.Model):
    """A host that holds a known guardian: a guardian row there, or one of its certificates in the store."""

    guardian = models.ForeignKey(KnownGuardian, on_delete=models.CASCADE, related_name="holdings")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    names = models.JSONField(default=list, blank=True)  # the guardian's names on that host
    has_private_keys = models.BooleanField(default=False)  # both private keys: what escrow needs
    holds_encryption_key = models.BooleanField(default=False)  # what unwrapping a key protector needs
    starts_vms = models.BooleanField(default=False)  # holds_encryption_key on a host whose own keys count (Local)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["guardian", "host"], name="inventory_holding_once")]

    def __str__(self) -> str:
        return f"{self.guardian} on host {self.host_id}"


class KeyProtectorEntry(models.Model):
    """A guardian a VM's key protector names: one of its rows, or its owner."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="key_protector_entries")
    guardian = models.ForeignKey(KnownGuardian, on_delete=models.CASCADE, related_name="entries")
    listed = models.BooleanField(default=True)  # one of the key protector's rows (False: named as owner only)
    owner = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)  # the row's place in the key protector
    subject = models.CharField(max_length=500, blank=True)  # the signing certificate's subject the row embeds

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vm", "guardian"], name="inventory_entry_once")]

    def __str__(self) -> str:
        return f"{self.vm_id} sealed to {self.guardian_id}"


class VmFacts(models.Model):
    """What the analysis concluded about a VM."""

    vm = models.OneToOneField(VirtualMachine, on_delete=models.CASCADE, primary_key=True, related_name="facts")
    startable = models.BooleanField(default=True, db_index=True)  # some registered host can start it
    risk = models.CharField(max_length=32, blank=True, db_index=True)  # vm_cannot_start | single_copy | ""
    key_hosts = models.PositiveIntegerField(default=0)  # hosts holding a private key its key protector trusts
    holder = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    escrowed = models.BooleanField(default=False)  # the vault holds a pair its key protector is sealed to
    escrow_signing = models.CharField(max_length=40, blank=True)  # the pair to escrow from the one holder
    escrow_encryption = models.CharField(max_length=40, blank=True)
    keys_expire_at = models.DateTimeField(null=True, blank=True, db_index=True)  # earliest expiry of its guardians

    class Meta:
        verbose_name_plural = "VM facts"

    def __str__(self) -> str:
        return f"facts of VM {self.vm_id}"


# -- what the team has given up on (pages hide its risks; the marks page lists them) -------------------------------


class Mark(models.Model):
    """A VM (by host and VM id, which survive a refresh) or a guardian (by its pair) the team has marked lost — no
    way back, stop warning — or retired — taken out of service on purpose. Its risks leave the dashboard and the risk
    lists, which then show only what can still be acted on; deleting the mark (unmark) brings them back."""

    LOST, RETIRED = "lost", "retired"
    STATES = [(LOST, pgettext_lazy("marked", "lost")), (RETIRED, pgettext_lazy("marked", "retired"))]

    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.CASCADE, related_name="+")  # a VM's
    vm_id = models.CharField(max_length=64, blank=True)
    signing_thumbprint = models.CharField(max_length=40, blank=True)
    encryption_thumbprint = models.CharField(max_length=40, blank=True)
    name = models.CharField(max_length=500)  # what it was called when marked ("Win11-A on HV02")
    state = models.CharField(max_length=16, choices=STATES)
    marked_by = models.CharField(max_length=150, blank=True)  # the username, kept if the user goes
    marked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-marked_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "vm_id"], condition=models.Q(vm_id__gt=""), name="inventory_mark_vm_once"
            ),
            models.UniqueConstraint(
                fields=["signing_thumbprint", "encryption_thumbprint"],
                condition=models.Q(signing_thumbprint__gt=""),
                name="inventory_mark_guardian_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} marked {self.state}"

    @property
    def is_vm(self) -> bool:
        return bool(self.vm_id)
