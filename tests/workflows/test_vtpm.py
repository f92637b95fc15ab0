"""Turning a VM's vTPM off and on, over the simulator's `healthy` host; the confirmations the page demands."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.remoting import open_session
from hosts.remoting.catalog.vms import StartVM, StopVM
from jobs.kinds import JobFailed, JobPartlyFailed
from jobs.models import Job
from jobs.workflows.vtpm.plan import TpmChange, change_vtpm, change_vtpms, changes_from
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hosts.test_vault_support")]


def cmdlets(sim: Any) -> list[str]:
    return [c["cmdlet"] for c in sim.command_log]


def test_tpm_off_then_on_again_on_a_healthy_vm(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        assert change_vtpm(run, session, host, TpmChange("Win11-B", "disable")) == "Win11-B: TPM off"
        assert not sim.model.vm("Win11-B").tpm_enabled
        assert change_vtpm(run, session, host, TpmChange("Win11-B", "enable")) == "Win11-B: TPM on"
    assert sim.model.vm("Win11-B").tpm_enabled
    assert "Set-VMKeyProtector" not in cmdlets(sim)  # it kept its key protector: no new one


def test_enabling_seals_a_vm_without_key_protector_to_the_local_guardian(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        change_vtpm(DirectRun(), session, host, TpmChange("Srv-Plain", "enable"))
        session.run(StartVM("Srv-Plain"))  # the host holds the guardian's keys: it starts
    assert cmdlets(sim).index("Set-VMKeyProtector") < cmdlets(sim).index("Enable-VMTPM")
    assert sim.model.vm("Srv-Plain").tpm_enabled and sim.model.vm("Srv-Plain").state == "Running"


def test_a_saved_state_is_removed_only_when_chosen(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        with pytest.raises(JobFailed, match="saved state"):
            change_vtpm(DirectRun(), session, host, TpmChange("Win11-C", "disable"))
        assert sim.model.vm("Win11-C").state == "Saved" and sim.model.vm("Win11-C").tpm_enabled
        change_vtpm(DirectRun(), session, host, TpmChange("Win11-C", "disable", remove_saved_state=True))
    assert sim.model.vm("Win11-C").state == "Off" and not sim.model.vm("Win11-C").tpm_enabled
    assert cmdlets(sim).index("Remove-VMSavedState") < cmdlets(sim).index("Disable-VMTPM")


def test_a_running_vm_fails_alone_and_the_others_still_change(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    changes = [TpmChange("Win11-A", "disable"), TpmChange("Win11-B", "disable")]
    with open_session(host.connection_spec()) as session, pytest.raises(JobPartlyFailed) as failed:
        change_vtpms(DirectRun(), session, host, changes)
    assert failed.value.summary == "1 of 2 done: Win11-B: TPM off"
    assert "Win11-A: 'Win11-A' is Running: a TPM change needs it Off" in failed.value.error
    assert sim.model.vm("Win11-A").tpm_enabled and not sim.model.vm("Win11-B").tpm_enabled


def test_a_broken_guardian_is_named_with_the_reset_as_remedy(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    run = DirectRun()
    with run, open_session(host.connection_spec()) as session, pytest.raises(JobFailed) as failed:
        change_vtpms(run, session, host, [TpmChange("Srv-Plain", "enable")])
    assert "does not have a private key" in str(failed.value) and "Reset a broken guardian" in str(failed.value)
    fix = f"/jobs/new/reset/?host={host.pk}&guardian=UntrustedGuardian"
    assert run.results["next_url"] == fix  # the job page's button, not a URL to copy out of the text
    assert [link for _text, link in run.links] == [fix] and "Srv-Plain" in run.links[0][0]


def test_the_job_refuses_a_disable_nobody_confirmed() -> None:
    with pytest.raises(JobFailed, match="not confirmed by typing the name of: Win11-B"):
        changes_from({"action": "disable", "confirmed": ["Win11-A"]}, ["Win11-A", "Win11-B"])
    with pytest.raises(JobFailed):
        changes_from({"action": "explode"}, ["Win11-A"])
    assert changes_from({"action": "enable", "remove_saved_state": ["Win11-C"]}, ["Win11-C"])[0].remove_saved_state


# -- the page ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def healthy_host(sim_host: Any, registered_host: Any) -> Any:
    host = registered_host(sim_host("healthy"))
    assert refresh_host(host).ok
    return host


def test_disable_preview_warns_about_bitlocker_and_shows_powershell(healthy_host: Any, admin_client: Client) -> None:
    page = admin_client.get(f"/jobs/new/vtpm/?host={healthy_host.pk}&action=disable&vm=Win11-B&vm=Win11-C")
    text = page.content.decode()
    assert "BitLocker" in text and "Windows Hello" in text
    assert "Disable-VMTPM -VMName &#x27;Win11-B&#x27;" in text and "Remove-VMSavedState" in text
    assert 'name="confirm-Win11-B"' in text and 'name="saved-Win11-C"' in text
    assert_runnable(shown_powershell(text))


def test_disable_needs_each_name_typed_and_saved_state_ticked(healthy_host: Any, admin_client: Client) -> None:
    base = {"host": healthy_host.pk, "action": "disable", "vm": ["Win11-B", "Win11-C"]}
    wrong = admin_client.post("/jobs/new/vtpm/", {**base, "confirm-Win11-B": "win11-b", "confirm-Win11-C": "Win11-C"})
    assert wrong.status_code == 400 and "Type the name &#x27;Win11-B&#x27; exactly" in wrong.content.decode()
    unticked = admin_client.post(
        "/jobs/new/vtpm/", {**base, "confirm-Win11-B": "Win11-B", "confirm-Win11-C": "Win11-C"}
    )
    assert unticked.status_code == 400 and "tick" in unticked.content.decode()
    assert Job.objects.count() == 0
    ok = {**base, "confirm-Win11-B": "Win11-B", "confirm-Win11-C": "Win11-C", "saved-Win11-C": "remove"}
    response = admin_client.post("/jobs/new/vtpm/", ok)
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.kind == "vtpm" and job.vms == ["Win11-B", "Win11-C"]
    assert job.params == {"action": "disable", "confirmed": ["Win11-B", "Win11-C"], "remove_saved_state": ["Win11-C"]}


def test_enable_needs_no_typing_and_operators_cannot_use_it(
    healthy_host: Any, admin_client: Client, operator_client: Client
) -> None:
    data = {"host": healthy_host.pk, "action": "enable", "vm": ["Srv-Plain"]}
    assert operator_client.post("/jobs/new/vtpm/", data).status_code == 403
    assert Job.objects.count() == 0
    assert admin_client.post("/jobs/new/vtpm/", data).status_code == 302
    assert Job.objects.get().params["action"] == "enable"
    assert admin_client.get("/jobs/new/vtpm/?host=x&action=nonsense&vm=nope").status_code == 200


def test_a_running_vm_alone_gets_no_confirm_box_but_what_to_do(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    assert refresh_host(host).ok
    url = f"/jobs/new/vtpm/?host={host.pk}&action=disable&vm=Win11-A"
    text = admin_client.get(url).content.decode()
    assert "Nothing can change yet" in text and "shut it down from inside the guest" in text
    assert "on HV01: Stop-VM -Name &#x27;Win11-A&#x27; -Force" in text
    assert 'id="vtpm-submit"' not in text and 'name="confirm-Win11-A"' not in text and "BitLocker" not in text
    forced = admin_client.post("/jobs/new/vtpm/", {"host": host.pk, "action": "disable", "vm": "Win11-A"})
    assert forced.status_code == 400 and "None of the chosen VMs can change now" in forced.content.decode()
    assert Job.objects.count() == 0
    # The user shuts it down, then "Check again" reads the host now: the VM is ready to confirm.
    with open_session(host.connection_spec()) as session:
        session.run(StopVM("Win11-A"))
    again = admin_client.get(url + "&recheck=1").content.decode()
    assert 'name="confirm-Win11-A"' in again and 'id="vtpm-submit"' in again and "Nothing can change yet" not in again


def test_blocked_vms_are_left_out_of_the_job(healthy_host: Any, admin_client: Client) -> None:
    url = f"/jobs/new/vtpm/?host={healthy_host.pk}&action=disable&vm=Win11-A&vm=Win11-B&vm=Srv-Plain"
    text = admin_client.get(url).content.decode()
    assert "Left out" in text and "TPM already off: nothing to do" in text
    assert 'name="confirm-Win11-B"' in text and 'name="confirm-Win11-A"' not in text and "for 1 VM<" in text
    data = {"host": healthy_host.pk, "action": "disable", "vm": ["Win11-A", "Win11-B", "Srv-Plain"]}
    assert admin_client.post("/jobs/new/vtpm/", {**data, "confirm-Win11-B": "Win11-B"}).status_code == 302
    assert Job.objects.get().vms == ["Win11-B"]


def test_run_again_opens_the_page_filled_and_asks_to_confirm_again(healthy_host: Any, admin_client: Client) -> None:
    job = Job.objects.create(
        kind="vtpm",
        host_names=[healthy_host.name],
        vms=["Win11-B"],
        params={"action": "disable", "confirmed": ["Win11-B"]},
    )
    job.hosts.set([healthy_host])
    job.state = "succeeded"
    job.save()
    detail = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    url = f"/jobs/new/vtpm/?host={healthy_host.pk}&amp;action=disable&amp;vm=Win11-B"
    assert f'id="rerun" href="{url}"' in detail
    again = admin_client.get(url.replace("&amp;", "&")).content.decode()
    assert 'name="confirm-Win11-B"' in again and 'value="Win11-B"' in again
