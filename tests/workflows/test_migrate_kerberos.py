"""Live migration between two domain hosts the console reaches with Kerberos, against a real KDC (issue 10).

Both simulated hosts are in lab.test, authenticate migrations with Kerberos and are as strict as Windows about the
second hop. Whether Move-VM works is the domain's word on the source's computer account: constrained delegation to
the target's migration service (hypervsim's `model.delegation`). With it the VM moves and runs on the target; without
it (or with Kerberos-only delegation, which needs a forwardable ticket the console does not ask for) the preflight
refuses before anything runs, says why and gives the PowerShell that grants it. That each method moves the VM with
delegation, or is refused without any, is the table of test_migrate_worlds.py; here are the delegations that fall
short, what the wizard shows, and the KDC down.
"""

from __future__ import annotations

from typing import Any

import pytest

from hypervsim.logon import MIGRATION_SERVICE, Delegation
from jobs.kinds import JobFailed
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from tests.plugins.kdc import PASSWORD
from tests.plugins.worlds import DELEGATED, TO_HV02, kerberos_pair
from tests.workflows.test_migrate import migrate

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]


@pytest.fixture
def lab(kerberos: Any, sim_lab: Any, registered_host: Any) -> Any:
    return kerberos_pair(kerberos, sim_lab, registered_host)


def vm_names(sim: Any) -> set[str]:
    return {vm.name for vm in sim.model.vms.values()}


@pytest.mark.parametrize(
    "delegation",
    [Delegation(TO_HV02), Delegation((f"{MIGRATION_SERVICE}/HV03",), any_protocol=True)],
    ids=["kerberos-only-delegation", "delegation-to-another-host"],
)
def test_without_delegation_to_the_target_the_preflight_refuses_and_says_what_to_grant(
    lab: Any, delegation: Delegation
) -> None:
    lab.source.model.delegation = delegation
    opts = MigrationOptions("Win11-A", method="live", unseal="carry")
    plan, _, error = live_preview(lab.source_host, lab.target_host, opts)
    assert plan is not None, error
    live = plan.methods["live"]
    assert live.runnable is False
    assert any("may not pass the console's Kerberos logon on to HV02" in failure for failure in plan.failures)
    assert any("No credentials are available in the security package" in failure for failure in plan.failures)
    grant = "\n".join(live.configure)
    assert f"'{MIGRATION_SERVICE}/HV02', '{MIGRATION_SERVICE}/HV02.lab.test'" in grant
    assert "Set-ADComputer -Identity HV01 -Add @{'msDS-AllowedToDelegateTo'=@(" in grant
    assert "-TrustedToAuthForDelegation $true" in grant and "connect to" not in grant  # it already uses Kerberos
    share = "\n".join(plan.methods["export"].configure)  # no delegation to the lab share's server either
    assert "'msDS-AllowedToDelegateTo'=@('cifs/LAB')" in share and "connect to" not in share
    with pytest.raises(JobFailed, match="Nothing was changed"):
        migrate(lab, opts)
    assert "Win11-A" in vm_names(lab.source) and "Win11-A" not in vm_names(lab.target)
    assert "Move-VM" not in [c["cmdlet"] for c in lab.source.command_log]


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_wizard_shows_the_delegation_to_grant_and_offers_no_job(lab: Any, operator_client: Any) -> None:
    choose = {"form": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-A"}
    choose |= {"method": "live", "unseal": "carry", "source_after": "off", "preview": "1"}
    page = operator_client.get("/jobs/new/migrate/", choose).content.decode()
    assert 'data-method="live" data-runnable="no"' in page and "msDS-AllowedToDelegateTo" in page
    assert "verdict.configure" not in page  # each line of PowerShell, not the template's own text
    assert 'id="migrate-submit"' not in page and PASSWORD not in page


def test_with_the_kdc_down_the_preflight_says_so_and_nothing_runs(kerberos: Any, lab: Any) -> None:
    lab.source.model.delegation = DELEGATED
    opts = MigrationOptions("Win11-A", method="live", unseal="carry")
    with kerberos.down():
        plan, _, error = live_preview(lab.source_host, lab.target_host, opts)
    assert plan is None and error.startswith("Preflight could not read both hosts: No Kerberos KDC answered")
    assert PASSWORD not in error and lab.source.command_log == []
