"""In Chromium: the lab as a picture, and the way out for VMs whose keys are gone. After HV02's reinstall nobody
uploads a backup: the dashboard draws its VMs red, an operator rescues one as a new VM without a vTPM (it runs), marks
the other lost (audited, then unmarked); a vTPM change at a host with a broken guardian is refused with the reset as
its fix, and a job that fails on it anyway links to the reset from its live log."""

from __future__ import annotations

from typing import Any

import pytest

from console.models import AuditEvent
from hosts.inventory.refresh import refresh_host
from jobs.models import Job
from jobs.services import create_job
from tests.plugins.browser import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"rescue-{name}.png"), full_page=True)


def ended(page: Any) -> None:
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)


@pytest.fixture
def reinstalled(sim_host: Any, registered_host: Any) -> tuple[Any, Any]:
    sim = sim_host("reinstalled", name="HV02")
    host = registered_host(sim)
    assert refresh_host(host).ok
    return sim, host


def test_an_operator_rescues_a_vm_whose_keys_are_lost_and_it_runs_without_a_vtpm(
    celery_worker_process: Any, live_console: Any, operator: Any, reinstalled: tuple[Any, Any], browser_page: Any
) -> None:
    sim, host = reinstalled
    page = browser_page
    login(page, live_console, operator)
    page.goto(f"{live_console.url}/")
    lost = page.locator('#dashboard-lab-map .map-node.bad[data-label="Win11-A on HV02"]')
    assert lost.count() == 1 and page.locator("#dashboard-lab-map .map-edge.sealed").count() >= 2
    assert page.locator('#risk-grid tr[data-host="HV02"] a[data-risk="vm_cannot_start"]').inner_text() == "2"
    page.locator("#dashboard-map").screenshot(path=str(ARTIFACTS / "rescue-0-lab-map.png"))
    shoot(page, "1-dashboard")
    assert page.locator('#risk-vm_cannot_start a[data-action="restore"]').count() == 0  # no backup: no dead end

    with page.expect_navigation():
        page.click('#risk-vm_cannot_start li:has-text("Win11-A on HV02") a[data-action="rescue"]')
    assert "/jobs/new/rescue/" in page.url and "recovery key" in page.inner_text("main")
    page.click("summary:has-text('Show PowerShell')")
    shown = page.inner_text("pre.powershell")
    assert "Rename-VM -Name 'Win11-A' -NewName 'Win11-A (keys lost)'" in shown and "New-VM -Name 'Win11-A'" in shown
    shoot(page, "2-preflight")
    with page.expect_navigation():
        page.click("button:has-text('Rescue')")
    ended(page)
    shoot(page, "3-job")
    assert "runs on HV02 without a vTPM" in page.inner_text("#job-summary")
    new, kept = sim.model.vm("Win11-A"), sim.model.vm("Win11-A (keys lost)")
    assert new.state == "Running" and not new.tpm_enabled and new.vhd_paths == kept.vhd_paths and kept.tpm_enabled
    assert AuditEvent.objects.filter(action="vm.rescue").count() == 1


def test_an_operator_marks_a_vm_lost_and_unmarks_it(
    live_console: Any, operator: Any, reinstalled: tuple[Any, Any], browser_page: Any
) -> None:
    page = browser_page
    login(page, live_console, operator)
    page.goto(f"{live_console.url}/")
    with page.expect_navigation():
        page.click('#risk-vm_cannot_start a:has-text("Win11-B on HV02")')
    with page.expect_navigation():
        page.click("#mark-lost")
    assert "marked lost" in page.inner_text("#mark")
    page.goto(f"{live_console.url}/")
    assert "Win11-B" not in page.inner_text("#risk-vm_cannot_start")
    assert page.locator('#dashboard-lab-map .map-node.marked[data-label="Win11-B on HV02"]').count() == 1
    with page.expect_navigation():
        page.click("#marked-note a")
    shoot(page, "4-marks")
    with page.expect_navigation():
        page.click('tr[data-mark="Win11-B on HV02"] button:has-text("Unmark")')
    page.goto(f"{live_console.url}/")
    assert "Win11-B" in page.inner_text("#risk-vm_cannot_start")
    assert list(
        AuditEvent.objects.filter(action__startswith="vm.").order_by("pk").values_list("action", flat=True)
    ) == [
        "vm.mark_lost",
        "vm.unmark",
    ]


def test_a_vtpm_change_at_a_broken_guardian_is_refused_with_its_fix_and_a_failed_job_links_to_it(
    celery_worker_process: Any,
    live_console: Any,
    admin: Any,
    sim_host: Any,
    registered_host: Any,
    browser_page: Any,
) -> None:
    sim = sim_host("deleted-certs", name="HV03")
    host = registered_host(sim)
    assert refresh_host(host).ok
    job = create_job(admin, "vtpm", hosts=[host], vms=["Srv-Plain"], params={"action": "enable"})  # e.g. the API
    page = browser_page
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/jobs/new/vtpm/?host={host.pk}&action=enable&vm=Srv-Plain")
    assert "Not now: the UntrustedGuardian of HV03 has lost its private keys" in page.inner_text("#vtpm-blocked")
    with page.expect_navigation():
        page.click("#preflight-fix")
    assert "/jobs/new/reset/" in page.url and "guardian=UntrustedGuardian" in page.url
    shoot(page, "5-refused-fix")

    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    ended(page)
    link = page.locator(".joblog a.jl-link")
    assert (
        link.count() == 1
        and link.get_attribute("href") == f"/jobs/new/reset/?host={host.pk}&guardian=UntrustedGuardian"
    )
    page.reload()
    assert page.locator("#next-action").get_attribute("href") == link.get_attribute("href")
    shoot(page, "6-log-link")
    assert Job.objects.get(pk=job.pk).state == "failed"
