"""Two-person approval: under the policy, destructive jobs wait for a second admin, who sees the preflight and Show
PowerShell again and approves (the job runs, on a real worker) or rejects it; the requester never decides, a request
expires, an approval counts once, an operator cannot decide, the API waits and decides by the same rules; all audited.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from console.models import AuditEvent
from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from jobs.models import ApprovalRefused, Job, JobState
from jobs.runner import reap
from jobs.services import create_job
from tests.plugins.jobs import wait_for_job
from tests.plugins.powershell import shown_powershell
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.users import client_for, make_user

GUARDIAN = "UntrustedGuardian"


@pytest.fixture
def policy(settings: Any) -> Any:
    settings.TWO_PERSON_APPROVAL = True
    settings.APPROVAL_HOURS = 24
    return settings


@pytest.fixture
def second_admin(db: None) -> Any:
    return make_user("bea", "admin")


@pytest.fixture
def registered_host_row(db: None) -> Host:
    """A registered host that is never contacted (nothing listens on port 9): the jobs here are never run."""
    host = Host(name="HV-ROW", address="127.0.0.1", port=9, transport="http", auth="negotiate", username="lab")
    host.set_password("approval-test-host-password")
    host.full_clean()
    host.save()
    return host


@pytest.fixture
def broken_host(sim_host: Any, registered_host: Any) -> tuple[Any, Host]:
    """A host whose guardian lost its certificates (a reset is due), its inventory read."""
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    assert refresh_host(host).ok
    return sim, host


def actions_of(job: Job) -> list[str]:
    return list(AuditEvent.objects.filter(object_id=str(job.pk)).order_by("pk").values_list("action", flat=True))


def sampled(lines: list[str]) -> list[str]:
    """Show PowerShell's lines with the sample names of temporary files (each rendering picks new ones) made equal."""
    return [re.sub(r"gc-[0-9a-f]{8}", "gc-<sample>", line) for line in lines]


def ask_for_reset(client: Client, host: Host) -> Job:
    response = client.post("/jobs/new/reset/", {"host": host.pk, "guardian": GUARDIAN})
    job = Job.objects.latest("pk")
    assert response["Location"] == f"/jobs/{job.pk}/"
    return job


def test_without_the_policy_a_reset_is_queued_at_once(db: None, admin: Any, registered_host_row: Any) -> None:
    job = create_job(admin, "reset_guardian", hosts=[registered_host_row], params={"guardian_name": GUARDIAN})
    assert job.state == JobState.QUEUED and "job.approval_requested" not in actions_of(job)


@pytest.mark.usefixtures("policy")
def test_each_kind_says_when_it_needs_approval(db: None, admin: Any, registered_host_row: Any) -> None:
    host = registered_host_row
    waits: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {
        ("reset_guardian", ()): {"guardian_name": GUARDIAN},
        ("vtpm", ("Win11-A",)): {"action": "disable", "confirmed": ["Win11-A"]},
        ("migrate_vm", ("Win11-B",)): {"source_after": "remove", "method": "export"},
    }
    for (kind, vms), params in waits.items():
        hosts = [host, host] if kind == "migrate_vm" else [host]
        job = create_job(admin, kind, hosts=hosts, vms=vms, params=params)
        assert job.state == JobState.AWAITING_APPROVAL and job.approval_reason, kind
        assert job.approval_expires_at is not None and job.approval_expires_at > timezone.now() + timedelta(hours=23)
    runs: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {
        ("vtpm", ("Win11-A",)): {"action": "enable"},
        ("migrate_vm", ("Win11-B",)): {"source_after": "off"},
    }
    for (kind, vms), params in runs.items():
        hosts = [host, host] if kind == "migrate_vm" else [host]
        assert create_job(admin, kind, hosts=hosts, vms=vms, params=params).state == JobState.QUEUED, kind
    assert create_job(None, "reset_guardian", hosts=[host]).state == JobState.QUEUED  # the console's own: nobody to ask


@pytest.mark.usefixtures("policy")
def test_importing_a_pair_waits_only_for_a_host_that_never_held_it(
    db: None, admin: Any, registered_host_row: Any
) -> None:
    from hosts.vault.models import EscrowedPair
    from hosts.vault.services import store_pair
    from tests.hosts.test_vault_support import make_pair

    signing, encryption = make_pair(host="HV-OLD", password="Pfx-Passw0rd!1", slot=3)  # noqa: S106
    pair = store_pair(signing, encryption, "Pfx-Passw0rd!1", user=admin, origin=EscrowedPair.ORIGIN_UPLOAD).pair
    new_host = create_job(admin, "import_guardian", hosts=[registered_host_row], params={"vault_entry": pair.pk})
    assert new_host.state == JobState.AWAITING_APPROVAL and "has never held" in new_host.approval_reason
    EscrowedPair.objects.filter(pk=pair.pk).update(source_host=registered_host_row)  # it was escrowed from there
    held = create_job(admin, "import_guardian", hosts=[registered_host_row], params={"vault_entry": pair.pk})
    assert held.state == JobState.QUEUED


@pytest.mark.usefixtures("policy")
def test_the_requester_cannot_approve_and_an_operator_cannot_decide(
    broken_host: Any, admin: Any, admin_client: Client, operator_client: Client
) -> None:
    _sim, host = broken_host
    job = ask_for_reset(admin_client, host)
    assert job.state == JobState.AWAITING_APPROVAL
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="job-approval"' in page and f"/jobs/{job.pk}/approval/" in page
    own = admin_client.get(f"/jobs/{job.pk}/approval/").content.decode()
    assert 'id="approval-own"' in own and 'id="approve"' not in own  # no button for the requester
    refused = admin_client.post(f"/jobs/{job.pk}/approval/", {"decision": "approve"})
    assert refused.status_code == 409
    assert "you asked for it: another admin must decide" in refused.content.decode()
    with pytest.raises(ApprovalRefused):
        job.reject(admin)
    assert operator_client.post(f"/jobs/{job.pk}/approval/", {"decision": "approve"}).status_code == 403
    assert operator_client.get(f"/jobs/{job.pk}/approval/").status_code == 403
    assert 'id="review-approval"' not in operator_client.get(f"/jobs/{job.pk}/").content.decode()
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_APPROVAL and not job.decided_by_name
    assert actions_of(job) == ["job.create", "job.approval_requested", "job.approval_refused", "job.approval_refused"]


@pytest.mark.worker
@pytest.mark.usefixtures("policy")
def test_a_second_admin_sees_the_preflight_approves_and_the_reset_runs(
    celery_worker_process: Any, transactional_db: None, broken_host: Any, admin: Any, second_admin: Any
) -> None:
    sim, host = broken_host
    job = ask_for_reset(client_for(admin), host)
    reviewer = client_for(second_admin)
    review = reviewer.get(f"/jobs/{job.pk}/approval/").content.decode()
    assert "A guardian reset removes guardian &#x27;UntrustedGuardian&#x27;" in review
    # The same preflight and Show PowerShell as the reset page shows for these choices.
    on_page = shown_powershell(reviewer.get(f"/jobs/new/reset/?host={host.pk}&guardian={GUARDIAN}").content.decode())
    assert (
        sampled(shown_powershell(review)) == sampled(on_page)
        and "Remove-HgsGuardian -Name 'UntrustedGuardian'" in on_page
    )
    time_before = timezone.now()
    assert sim.model.guardian(GUARDIAN) is not None  # nothing ran while it waited
    response = reviewer.post(f"/jobs/{job.pk}/approval/", {"decision": "approve"})
    assert response["Location"] == f"/jobs/{job.pk}/"
    job = wait_for_job(job)
    assert job.state == JobState.SUCCEEDED, job.error
    assert sim.model.guardian(GUARDIAN) is None
    assert job.decided_by_name == "bea" and job.decided_at is not None and job.decided_at >= time_before
    assert job.started_at is not None and job.started_at >= job.decided_at
    actions = actions_of(job)
    assert actions[:3] == ["job.create", "job.approval_requested", "job.approved"] and "job.succeeded" in actions
    approved = AuditEvent.objects.get(action="job.approved", object_id=str(job.pk))
    assert approved.username == "bea" and approved.detail["requested_by"] == "ada"
    # A replay of the same approval counts for nothing, and is audited.
    replay = reviewer.post(f"/jobs/{job.pk}/approval/", {"decision": "approve"})
    assert replay.status_code == 409 and "already decided by bea: an approval counts once" in replay.content.decode()
    assert Job.objects.count() == 1 and actions_of(job).count("job.approval_refused") == 1


@pytest.mark.usefixtures("policy")
def test_a_rejected_job_never_runs(broken_host: Any, admin_client: Client, second_admin: Any) -> None:
    sim, host = broken_host
    job = ask_for_reset(admin_client, host)
    reviewer = client_for(second_admin)
    response = reviewer.post(f"/jobs/{job.pk}/approval/", {"decision": "reject", "note": "escrow it first"})
    assert response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.started_at is None and job.finished_at is not None
    assert job.summary == "Rejected by bea: escrow it first Nothing was sent to a host."
    assert reviewer.post(f"/jobs/{job.pk}/approval/", {"decision": "approve"}).status_code == 409
    assert reviewer.post(f"/jobs/{job.pk}/approval/", {"decision": "maybe"}).status_code == 200  # the form refuses
    assert AuditEvent.objects.get(action="job.rejected").detail["note"] == "escrow it first"
    assert sim.model.guardian(GUARDIAN) is not None
    closed = reviewer.get(f"/jobs/{job.pk}/approval/").content.decode()
    assert 'id="approval-closed"' in closed and 'id="approval-form"' not in closed


@pytest.mark.usefixtures("policy")
def test_an_expired_request_cannot_be_approved_and_the_reaper_ends_it(
    broken_host: Any, admin_client: Client, second_admin: Any
) -> None:
    _sim, host = broken_host
    late, overdue = ask_for_reset(admin_client, host), ask_for_reset(admin_client, host)
    past = timezone.now() - timedelta(minutes=1)
    Job.objects.filter(pk__in=[late.pk, overdue.pk]).update(approval_expires_at=past)
    response = client_for(second_admin).post(f"/jobs/{late.pk}/approval/", {"decision": "approve"})
    assert (
        response.status_code == 409 and f"the request expired at {past:%Y-%m-%d %H:%M} UTC" in response.content.decode()
    )
    reap()
    for job in (late, overdue):
        job.refresh_from_db()
        assert job.state == JobState.CANCELLED and job.started_at is None and not job.decided_by_name
        assert "expired without a decision" in job.summary and "job.approval_expired" in actions_of(job)


@pytest.mark.usefixtures("policy")
def test_approving_needs_the_second_factor_as_starting_does(
    broken_host: Any, admin_client: Client, second_admin: Any, settings: Any
) -> None:
    _sim, host = broken_host
    job = ask_for_reset(admin_client, host)
    settings.ADMIN_2FA = "required"
    refused = client_for(second_admin).post(f"/jobs/{job.pk}/approval/", {"decision": "approve"})
    assert refused.status_code == 302 and refused["Location"].startswith("/account/two-factor/")  # set it up first
    job.refresh_from_db()
    assert job.state == JobState.AWAITING_APPROVAL
    settings.ADMIN_2FA = "off"  # the control: the same request once the factor is not asked for
    approved = client_for(second_admin).post(f"/jobs/{job.pk}/approval/", {"decision": "approve"})
    assert approved["Location"] == f"/jobs/{job.pk}/"


def api_as(user: Any, role: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'script', role, 1)[1]}")


@pytest.mark.worker
@pytest.mark.usefixtures("policy")
def test_the_api_starts_a_reset_that_waits_and_a_second_admin_approves_it(
    celery_worker_process: Any,
    transactional_db: None,
    broken_host: Any,
    admin: Any,
    second_admin: Any,
    operator: Any,
) -> None:
    sim, host = broken_host
    requester, approver, op = api_as(admin, "admin"), api_as(second_admin, "admin"), api_as(operator, "operator")
    body = {"workflow": "reset", "choices": {"host": host.pk, "guardian": GUARDIAN}}
    started = requester.post("/api/jobs/", body, content_type="application/json")
    assert started.status_code == 201, started.content
    job_id = started.json()["started"]["id"]
    assert started.json()["started"]["state"] == "approval" and started.json()["started"]["approval_reason"]

    def decide(client: Client, decision: str) -> Any:
        return client.post(f"/api/jobs/{job_id}/decision/", {"decision": decision}, content_type="application/json")

    own = decide(requester, "approve")
    assert own.status_code == 409 and "you asked for it" in own.json()["detail"]
    assert decide(op, "approve").status_code == 403
    assert decide(approver, "perhaps").status_code == 400
    approved = decide(approver, "approve")
    assert approved.status_code == 200 and approved.json()["decided_by_name"] == "bea"
    job = wait_for_job(Job.objects.get(pk=job_id))
    assert job.state == JobState.SUCCEEDED, job.error
    assert sim.model.guardian(GUARDIAN) is None
    replay = decide(approver, "approve")
    assert replay.status_code == 409 and "an approval counts once" in replay.json()["detail"]


@pytest.mark.usefixtures("policy")
def test_the_approver_sees_the_vtpm_preflight_with_what_the_requester_confirmed(
    sim_host: Any, registered_host: Any, admin_client: Client, second_admin: Any
) -> None:
    host = registered_host(sim_host("healthy"))
    assert refresh_host(host).ok
    chosen = {"host": host.pk, "action": "disable", "vm": ["Win11-B", "Win11-C"], "confirm-Win11-B": "Win11-B"}
    admin_client.post("/jobs/new/vtpm/", chosen | {"confirm-Win11-C": "Win11-C", "saved-Win11-C": "remove"})
    job = Job.objects.get()
    assert job.state == JobState.AWAITING_APPROVAL and "'Win11-B', 'Win11-C'" in job.approval_reason
    review = client_for(second_admin).get(f"/jobs/{job.pk}/approval/").content.decode()
    shown = shown_powershell(review)
    assert "Disable-VMTPM -VMName 'Win11-B'" in shown and "Remove-VMSavedState -VMName 'Win11-C'" in shown
    assert "would not start this job now" not in review  # the typed names and the ticked box came along


@pytest.mark.usefixtures("policy")
@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_approver_sees_the_migration_preflight_run_live_again(
    sim_lab: Any, registered_host: Any, operator_client: Client, admin: Any
) -> None:
    """An operator's migration that removes the source copy waits for an admin, who sees both hosts checked again."""
    # The export method from NTLM sessions: the second hop is the migration tests' subject, not this one's.
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = (registered_host(sim) for sim in lab.hosts)
    assert refresh_host(source).ok
    choose = {"form": "1", "preview": "1", "host": source.pk, "target": target.pk, "vm": "Win11-B"}
    choose |= {"method": "export", "unseal": "authorise", "source_after": "remove", "confirm_name": "Win11-B"}
    assert operator_client.post("/jobs/new/migrate/", choose).status_code == 302
    job = Job.objects.get()
    assert job.state == JobState.AWAITING_APPROVAL and "removes the VM's source copy from HV01" in job.approval_reason
    review = client_for(admin).get(f"/jobs/{job.pk}/approval/").content.decode()
    shown = shown_powershell(review)
    assert any(line.startswith("Export-VM -Name 'Win11-B'") for line in shown)
    assert any(line.startswith("Remove-VM") for line in shown)  # the removal of the source copy
    assert "would not start this job now" not in review
    assert client_for(admin).post(f"/jobs/{job.pk}/approval/", {"decision": "approve"}).status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.decided_by_name == "ada"


def test_why_a_job_waits_is_said_in_the_readers_language(policy: Any, admin: Any, second_admin: Any) -> None:
    """The reason is stored as its requester read it; the approver reads it in their own language."""
    host = Host.objects.create(name="HV01", address="hv01.lab.example", username="LAB\\hv")
    job = create_job(admin, "reset_guardian", [host], params={"guardian_name": GUARDIAN})
    assert job.approval_reason.startswith("A guardian reset removes guardian 'UntrustedGuardian' from HV01")
    japanese = client_for(second_admin)
    japanese.post("/account/", {"language": "ja", "time_zone": "UTC"})
    page = japanese.get(f"/jobs/{job.pk}/approval/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    reason = re.search(r'<td id="approval-reason">(.*?)</td>', page, re.S)
    assert reason and "ガーディアン" in reason.group(1) and "A guardian reset" not in page
    assert "A guardian reset removes guardian" in client_for(admin).get(f"/jobs/{job.pk}/").content.decode()
