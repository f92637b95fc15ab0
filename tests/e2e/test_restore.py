"""In Chromium: after a reinstall, an operator restores a VM from the vault and watches it come back to life."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.refresh import refresh_host
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.workflows.placement import record_placement
from tests.plugins.browser import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"restore-{name}.png"), full_page=True)


# Database work happens in fixtures listed before `browser_page` (Playwright's loop owns the test thread after).


@pytest.fixture
def reinstalled(live_console: Any, sim_host: Any, registered_host: Any, operator: Any) -> tuple[Any, Any, str]:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    signing, encryption, password = previous_guardian_backup(sim)
    pair = store_pair(signing, encryption, password, user=operator, origin="upload", allow_expired=True).pair
    # The console placed this pair on HV01 before the reinstall, so an operator may give it back (placement.py).
    record_placement(None, host, pair, exportable=False)
    assert refresh_host(host).ok
    return sim, host, password


def test_operator_restores_a_vm_after_reinstall_and_sees_it_running(
    celery_worker_process: Any, live_console: Any, operator: Any, reinstalled: tuple[Any, Any, str], browser_page: Any
) -> None:
    sim, host, password = reinstalled
    page = browser_page
    login(page, live_console, operator)
    page.goto(f"{live_console.url}/jobs/new/restore/?host={host.pk}")
    with page.expect_navigation():
        page.select_option("select[name=vm]", "Win11-A")
    assert "UntrustedGuardian" in page.inner_text("main") and "What could go wrong" in page.inner_text("main")
    page.click("summary:has-text('Show PowerShell')")
    powershell = page.inner_text("pre.powershell")
    assert "Import-PfxCertificate" in powershell and "Start-VM -Name 'Win11-A'" in powershell
    assert "<password>" in powershell and password not in powershell
    shoot(page, "1-preflight")

    with page.expect_navigation():
        page.click("button:has-text('Restore')")
    assert "/jobs/" in page.url
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)
    shoot(page, "2-job")
    log_text = page.inner_text(".joblog")
    assert "is running on" in log_text and password not in page.content()
    assert page.locator("[data-job-state]").first.inner_text() == "succeeded"
    assert sim.model.vm("Win11-A").state == "Running"


def test_operator_restores_every_restorable_vm_of_the_host_from_its_page(
    celery_worker_process: Any, live_console: Any, operator: Any, reinstalled: tuple[Any, Any, str], browser_page: Any
) -> None:
    sim, host, password = reinstalled
    page = browser_page
    login(page, live_console, operator)
    page.goto(f"{live_console.url}/hosts/{host.pk}/")
    with page.expect_navigation():
        page.click("a[data-action=restore_all]")
    main = page.inner_text("main")
    assert "'Win11-A': Read the key protector" in main and "'Win11-B': Read the key protector" in main
    shoot(page, "all-1-preflight")
    with page.expect_navigation():
        page.click("button:has-text('Restore them all')")
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)
    shoot(page, "all-2-job")
    assert page.locator("[data-job-state]").first.inner_text() == "succeeded"
    assert "Win11-A, Win11-B running on" in page.inner_text("main") and password not in page.content()
    assert sim.model.vm("Win11-A").state == "Running" and sim.model.vm("Win11-B").state == "Running"
