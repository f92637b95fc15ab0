"""The one-click guardian reset in Chromium: offered for the deleted-certificates host, preflight with the sealed VMs
and the PowerShell, the live log watched to the end, then the undo from the same page."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.refresh import refresh_host
from jobs.models import Job
from tests.plugins.browser import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


def watch_to_the_end(page: Any, job: Job) -> str:
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)
    return str(page.locator(f'[data-job-state="{job.pk}"]').inner_text())


def test_admin_resets_the_broken_guardian_and_undoes_it(
    browser_page: Any, live_console: Any, celery_worker_process: Any, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    assert refresh_host(host).ok
    removed = sim.model.guardian("UntrustedGuardian").signing.thumbprint
    page = browser_page
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/jobs/new/reset/")
    with page.expect_navigation():
        page.click("#reset-offers >> text=Reset…")
    sealed = page.locator("#sealed-vms").inner_text()
    assert "Win11-A" in sealed and "not escrowed anywhere" in sealed
    page.click("text=Show PowerShell")
    assert "Remove-HgsGuardian -Name 'UntrustedGuardian'" in page.locator("pre.powershell").inner_text()
    with page.expect_navigation():
        page.click("#reset-submit")
    job = Job.objects.get(kind="reset_guardian")
    assert watch_to_the_end(page, job) == "succeeded"
    assert "TPM changes work again" in page.locator("#job-summary").inner_text()
    assert sim.model.guardian("UntrustedGuardian") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reset-job-log.png"), full_page=True)

    page.reload()  # the finished job's page offers the undo as a button
    with page.expect_navigation():
        page.click("#next-action >> text=Undo this reset…")
    assert removed in page.locator("#undo-preflight").inner_text()
    with page.expect_navigation():
        page.click("#undo-submit")
    undo = Job.objects.get(kind="undo_guardian_reset")
    assert watch_to_the_end(page, undo) == "succeeded"
    assert sim.model.guardian("UntrustedGuardian").signing.thumbprint == removed
