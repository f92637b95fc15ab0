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


def to_methods(page: Any, console: Any, operator: Any, source: Host, target: Host, vm: str) -> None:
    """The wizard's first two steps, as an operator takes them: both hosts refreshed, the source and its VM, Next,
    the target, Next: the method step, which reads both hosts."""
    assert refresh_host(source).ok and refresh_host(target).ok
    login(page, console, operator)
    page.goto(f"{console.url}/jobs/new/migrate/")
    with page.expect_navigation():
        page.select_option("#source-host", str(source.pk))
    page.select_option("#vm", vm)
    with page.expect_navigation():
        page.click("#wizard-next")
    page.select_option("#target-host", str(target.pk))
    with page.expect_navigation():
        page.click("#wizard-next")
    assert page.locator("#wizard-step").get_attribute("data-step") == "method"


def preview(
    page: Any, console: Any, operator: Any, source: Host, target: Host, vm: str, method: str, unseal: str = ""
) -> None:
    """The operator's way through the wizard up to the review: VM, target, method (offered only when it can work),
    how the VM may unseal there, then "Check both hosts"."""
    to_methods(page, console, operator, source, target, vm)
    page.check(f"input[name=method][value={method}]")
    with page.expect_navigation():
        page.click("#wizard-next")
    if unseal:
        page.check(f"input[name=unseal][value={unseal}]")
    with page.expect_navigation():
        page.click("#preview")
    assert page.locator("#wizard-step").get_attribute("data-step") == "review"


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
    """The second hop as Windows has it (the `second_hop` switch): two workgroup hosts, the console's sessions NTLM.
    The method step says why live migration and the lab share cannot work and offers only what can."""
    lab = sim_lab(scenarios=["migration"])
    for sim in lab.hosts:
        sim.model.domain = None  # the second hop is refused by default, as on Windows
    source, target = (registered_host(h) for h in lab.hosts)
    page = browser_page
    to_methods(page, live_console, operator, source, target, "Win11-B")
    methods = page.locator("#methods")
    live = methods.locator(".method[data-method=live]")
    assert "cannot work" in live.inner_text() and "A workgroup pair cannot live-migrate" in live.inner_text()
    assert "cannot work" in methods.locator(".method[data-method=export]").inner_text()
    assert "holds no credentials for a third machine" in methods.inner_text()
    assert "can work" in methods.locator(".method[data-method=register]").inner_text()
    assert page.locator("input[name=method]").evaluate_all("radios => radios.map(r => r.value)") == ["register"]
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


def test_the_operator_walks_the_wizard_step_by_step_back_and_forth(
    browser_page: Any, live_console: Any, sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    """Each step shows only its fields (a screenshot of each in test-artifacts/); Back keeps the choices; the review
    warns that leaving the source off keeps the VM's ID on two hosts, and removing the source needs its name typed."""
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = (registered_host(h) for h in lab.hosts)
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(step: str, number: int) -> None:
        assert page.locator("#wizard-step").get_attribute("data-step") == step
        assert page.locator("#wizard-steps li[aria-current=step]").get_attribute("data-step") == step
        page.screenshot(path=str(ARTIFACTS / f"migrate-step-{number}-{step}.png"), full_page=True)

    def next_step(button: str = "#wizard-next") -> None:
        with page.expect_navigation():
            page.click(button)

    to_methods(page, live_console, operator, source, target, "Win11-B")
    shot("method", 3)
    assert page.locator("#source-host, #vm, #target-host, input[name=unseal]").count() == 0
    # Only the chosen method's own fields are shown (migrate.js); the register path lists the target's folders.
    page.check("input[name=method][value=register]")
    assert page.locator("#files-path").is_visible() and page.locator("#new-id").is_hidden()
    assert "Hyper-V" in page.locator("#target-folders").inner_text()
    page.check("input[name=method][value=export]")
    assert page.locator("#files-path").is_hidden() and page.locator("#new-id").is_visible()
    next_step("#wizard-back")
    shot("target", 2)
    assert page.locator("#target-host").input_value() == str(target.pk)  # Back kept the choice
    next_step("#wizard-back")
    shot("vm", 1)
    assert page.locator("#vm").input_value() == "Win11-B"
    next_step()
    next_step()
    page.check("input[name=method][value=export]")
    next_step()
    shot("unseal", 4)
    assert "Export to the lab share" in page.locator("#wizard-chosen").inner_text()
    page.check("input[name=unseal][value=authorise]")
    page.check("input[name=source_after][value=off]")
    next_step("#preview")
    shot("review", 5)
    assert "the same VM ID on two hosts" in page.locator("#twin-warning").inner_text()
    assert page.locator("#confirm-name").count() == 0 and page.locator("#migrate-submit").is_visible()
    page.click("text=Show PowerShell")
    assert "Export-VM -Name 'Win11-B'" in page.locator("pre.powershell").inner_text()
    # Back to unsealing: remove the source copy instead. The review then asks for the VM's name, typed exactly.
    page.click("#wizard-steps a:has-text('Unsealing')")
    page.check("input[name=source_after][value=remove]")
    next_step("#preview")
    assert page.locator("#twin-warning").count() == 0
    page.fill("#confirm-name", "win11-b")
    next_step("#migrate-submit")
    assert "Type the VM's name 'Win11-B' exactly" in page.content().replace("&#x27;", "'")
    page.screenshot(path=str(ARTIFACTS / "migrate-step-5-review-refused.png"), full_page=True)
    assert Job.objects.count() == 0
