"""The migration wizard in Chromium: choose the VM, the target and how it may unseal, check both hosts, read the
PowerShell, start the job, watch its live log to the end, and see the VM running on the target."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from jobs.models import Job
from tests.plugins.browser import ARTIFACTS, login
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.worlds import PASSWORD, credssp_pair, ntlm_pair, serve_source_share

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


def preview(
    page: Any, console: Any, operator: Any, source: Host, target: Host, vm: str, method: str, unseal: str = ""
) -> None:
    """The operator's way through the wizard up to the preflight: both hosts refreshed, VM, target, method
    (and how the VM may unseal there), then "Check"."""
    assert refresh_host(source).ok and refresh_host(target).ok
    login(page, console, operator)
    page.goto(f"{console.url}/jobs/new/migrate/")
    with page.expect_navigation():
        page.select_option("#source-host", str(source.pk))
    page.select_option("#vm", vm)
    page.select_option("#target-host", str(target.pk))
    page.check(f"input[name=method][value={method}]")
    if unseal:
        page.check(f"input[name=unseal][value={unseal}]")
    with page.expect_navigation():
        page.click("#preview")


def start_and_follow(page: Any, screenshot: str) -> Job:
    """Start the previewed migration and watch its live log until it ends: it must succeed."""
    with page.expect_navigation():
        page.click("#migrate-submit")
    job = Job.objects.get(kind="migrate_vm")
    assert page.url.endswith(f"/jobs/{job.pk}/")
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)
    assert page.locator(f'[data-job-state="{job.pk}"]').inner_text() == "succeeded"
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return job


def test_operator_migrates_a_vm_with_the_wizard_and_sees_it_run_on_the_target(
    browser_page: Any, live_console: Any, celery_worker_process: Any, sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    # The export method's wizard from NTLM sessions: the second hop is the workgroup story's subject, not this one's.
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = (registered_host(h) for h in lab.hosts)
    page = browser_page
    preview(page, live_console, operator, source, target, "Win11-B", "export", unseal="authorise")
    checks = page.locator("#checks").inner_text()
    assert "HV02 sees the lab share" in checks and "then authorises it" in checks
    page.click("text=Show PowerShell")
    powershell = page.locator("pre.powershell").inner_text()
    assert "Export-VM -Name 'Win11-B'" in powershell and "Grant-HgsKeyProtectorAccess" in powershell
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migrate-preflight.png"), full_page=True)
    start_and_follow(page, "migrate-job-log.png")
    assert "running there" in page.locator("#job-summary").inner_text()
    # The inventory of both hosts was refreshed after the job: the VM list shows it running on the target.
    page.goto(f"{live_console.url}/vms/")
    row = page.locator("tr", has_text="Win11-B").filter(has_text="HV02")
    assert "Running" in row.inner_text()
    assert lab.hosts[1].model.vm("Win11-B").state == "Running"


def test_in_a_workgroup_the_wizard_explains_why_live_migration_cannot_work_and_offers_no_job(
    browser_page: Any, live_console: Any, sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    """The second hop as Windows has it (the `second_hop` switch): two workgroup hosts, the console's sessions NTLM."""
    lab = sim_lab(scenarios=["migration"])
    for sim in lab.hosts:
        sim.model.domain = None  # the second hop is refused by default, as on Windows
    source, target = (registered_host(h) for h in lab.hosts)
    page = browser_page
    preview(page, live_console, operator, source, target, "Win11-B", "live")
    assert "A workgroup pair cannot live-migrate" in page.locator("#checks").inner_text()
    methods = page.locator("#methods")
    assert "cannot work" in methods.locator("tr[data-method=export]").inner_text()
    assert "holds no credentials for a third machine" in methods.inner_text()
    assert "can work" in methods.locator("tr[data-method=register]").inner_text()
    assert page.locator("#migrate-submit").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migrate-workgroup-preflight.png"), full_page=True)


def test_in_a_domain_reached_with_credssp_the_wizard_offers_live_migration_and_it_runs(
    browser_page: Any, live_console: Any, celery_worker_process: Any, sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    """The other world: two hosts of domain lab.test, the second hop as Windows has it, reached with CredSSP over
    HTTPS, so the console's sessions hold the account's credentials and Move-VM can authenticate to the target."""
    lab = credssp_pair(sim_lab, registered_host)
    page = browser_page
    # No private key leaves HV01 (an operator may authorise).
    preview(page, live_console, operator, lab.source_host, lab.target_host, "Win11-A", "live", unseal="authorise")
    live = page.locator("#methods tr[data-method=live]")
    assert "can work" in live.inner_text() and "logs on to it with CredSSP" in live.inner_text()
    assert "can work" in page.locator("#methods tr[data-method=export]").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migrate-domain-credssp-preflight.png"), full_page=True)
    start_and_follow(page, "migrate-domain-credssp-job-log.png")
    assert lab.target.model.vm("Win11-A").state == "Running"
    assert "Win11-A" not in {vm.name for vm in lab.source.model.vms.values()}
    assert lab.source.password not in page.content()  # the job log names no credential


def test_in_a_workgroup_the_operator_moves_a_vm_through_the_sources_own_share(
    browser_page: Any, live_console: Any, celery_worker_process: Any, sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    """Two workgroup hosts, NTLM sessions, the second hop refused as on Windows: the wizard says the lab share and
    live migration cannot work and why, offers the copy from the source's own share with its stored account, and the
    job moves the VM; the share's password is on no page."""
    lab = ntlm_pair(sim_lab, registered_host)
    serve_source_share(lab)
    source, target, password = lab.source_host, lab.target_host, PASSWORD
    page = browser_page
    preview(page, live_console, operator, source, target, "Win11-B", "pull", unseal="authorise")
    methods = page.locator("#methods")
    assert "can work" in methods.locator("tr[data-method=pull]").inner_text()
    assert "not a second hop" in methods.locator("tr[data-method=pull]").inner_text()
    assert "cannot work" in methods.locator("tr[data-method=export]").inner_text()
    assert "A workgroup pair cannot live-migrate" in methods.locator("tr[data-method=live]").inner_text()
    remedy = methods.locator("tr[data-method=export] pre.remedy").inner_text()
    assert "Copy from the source's own share" in remedy
    page.click("text=Show PowerShell")
    powershell = page.locator("pre.powershell").inner_text()
    assert "New-PSDrive -Name" in powershell and "-Credential (Get-Credential -UserName 'HV01\\vmshare'" in powershell
    assert "Copy-Item -LiteralPath" in powershell and "Remove-PSDrive -Name" in powershell
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "migrate-workgroup-share.png"), full_page=True)
    assert password not in page.content()
    start_and_follow(page, "migrate-workgroup-job-log.png")
    assert "running there" in page.locator("#job-summary").inner_text()
    assert password not in page.content()
    assert lab.hosts[1].model.vm("Win11-B").state == "Running"
