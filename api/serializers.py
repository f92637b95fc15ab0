"""What the API shows of each row: metadata only (no password, no PFX, no CA bundle), and the job start's shape."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from console.models import AuditEvent
from hosts.inventory.models import Guardian, VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.models import Job, JobLogLine
from jobs.workflows.preflights import WORKFLOWS


class HostSerializer(serializers.ModelSerializer):  # type: ignore[misc]  # DRF has no type hints here
    class Meta:
        model = Host
        fields = [
            "id", "name", "address", "transport", "port", "auth", "cert_check", "username", "configuration_name",
            "created_at", "last_test_at", "last_test_ok", "last_test_message",
        ]  # fmt: skip


class VirtualMachineSerializer(serializers.ModelSerializer):  # type: ignore[misc]
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "id", "host", "host_name", "vm_id", "name", "state", "generation", "tpm_enabled", "shielded",
            "has_saved_state", "checkpoint_count", "has_key_protector", "kp_readable", "kp_guardian_thumbprints",
            "problems",
        ]  # fmt: skip


class GuardianSerializer(serializers.ModelSerializer):  # type: ignore[misc]
    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = Guardian
        fields = [
            "id", "host", "host_name", "name", "signing_thumbprint", "encryption_thumbprint", "signing_subject",
            "encryption_subject", "has_private_signing_key", "has_private_encryption_key",
        ]  # fmt: skip


class RiskSerializer(serializers.Serializer):  # type: ignore[misc]
    code = serializers.CharField()
    title = serializers.CharField()
    explanation = serializers.CharField()
    subject = serializers.CharField()
    host = serializers.SerializerMethodField()
    vm = serializers.SerializerMethodField()

    def get_host(self, risk: Any) -> int | None:
        return risk.host.pk if risk.host is not None else None

    def get_vm(self, risk: Any) -> int | None:
        return risk.vm.pk if risk.vm is not None else None


class VaultEntrySerializer(serializers.ModelSerializer):  # type: ignore[misc]
    class Meta:
        model = EscrowedPair
        fields = [
            "id", "signing_thumbprint", "encryption_thumbprint", "guardian_name", "source_host_name", "origin",
            "signing_subject", "encryption_subject", "not_before", "not_after", "sha256", "created_at",
        ]  # fmt: skip


class JobSerializer(serializers.ModelSerializer):  # type: ignore[misc]
    label = serializers.CharField(read_only=True)
    state_label = serializers.CharField(read_only=True, help_text='The state as people read it ("partly failed").')

    class Meta:
        model = Job
        fields = [
            "id", "kind", "label", "state", "state_label", "host_names", "vms", "params", "requested_by_name",
            "rerun_of", "created_at", "started_at", "finished_at", "cancel_requested", "summary", "error", "results",
            "last_seq", "approval_reason", "approval_expires_at", "decided_by_name", "decided_at",
        ]  # fmt: skip


class LogLineSerializer(serializers.ModelSerializer):  # type: ignore[misc]
    class Meta:
        model = JobLogLine
        fields = ["seq", "at", "level", "text"]


class JobLogSerializer(serializers.Serializer):  # type: ignore[misc]
    state = serializers.CharField()
    ended = serializers.BooleanField(help_text="The job has ended and every line up to last_seq is in `lines`.")
    last_seq = serializers.IntegerField()
    lines = LogLineSerializer(many=True)


class AuditEventSerializer(serializers.ModelSerializer):  # type: ignore[misc]
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "username", "action", "object_type", "object_id", "object_repr", "detail"]


class JobStartSerializer(serializers.Serializer):  # type: ignore[misc]
    workflow = serializers.ChoiceField(choices=sorted(WORKFLOWS))
    choices = serializers.DictField(
        required=False,
        default=dict,
        help_text="The fields of the workflow's page, named as its form names them (host, guardian, vm, …; a list "
        "for a multiple choice); vtpm off also needs 'confirm-<VM name>': '<VM name>' per VM, as its page asks.",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Only the preflight: start nothing.")


class DecisionSerializer(serializers.Serializer):  # type: ignore[misc]
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    note = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class NewJobSerializer(serializers.Serializer):  # type: ignore[misc]
    kind = serializers.CharField()
    hosts = serializers.ListField(child=serializers.CharField())
    vms = serializers.ListField(child=serializers.CharField())
    params = serializers.DictField()


class PreflightSerializer(serializers.Serializer):  # type: ignore[misc]
    workflow = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField())
    impact = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    powershell = serializers.ListField(child=serializers.CharField())
    problems = serializers.ListField(child=serializers.CharField())
    job = NewJobSerializer(allow_null=True)
    started = JobSerializer(allow_null=True, help_text="The job created (null on a dry run or a refusal).")
