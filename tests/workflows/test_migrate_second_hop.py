"""The migration preflight tells the truth about the second hop before anything runs (issue 10).

The simulated hosts behave as Windows does with the `second_hop` switch on: the console's sessions (NTLM) reach
nothing beyond their host. For each world the preflight lists every method, says which can work and why not the
others, and a method Windows would refuse fails in the preflight with its reason, so no job is offered.
"""

from __future__ import annotations

from typing import Any

import pytest

from hosts.models import LabShare
from hypervsim.model import MIGRATION_CREDSSP, MIGRATION_KERBEROS
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions

pytestmark = pytest.mark.django_db

WORLDS = {
    # world: (domain of both hosts, their migration authentication)
    "workgroup, NTLM": (None, MIGRATION_CREDSSP),
    "domain, CredSSP migrations, NTLM session": ("lab.test", MIGRATION_CREDSSP),
    "domain, Kerberos migrations, NTLM session": ("lab.test", MIGRATION_KERBEROS),
}
# (world, method) -> what the preflight says: a text among its failures, or None when the method passes it.
EXPECTED = {
    ("workgroup, NTLM", "export"): "holds no credentials for a third machine (the second hop)",
    ("workgroup, NTLM", "live"): "A workgroup pair cannot live-migrate",
    ("domain, CredSSP migrations, NTLM session", "export"): "holds no credentials for a third machine",
    ("domain, CredSSP migrations, NTLM session", "live"): "authenticates migrations with CredSSP",
    ("domain, Kerberos migrations, NTLM session", "export"): "holds no credentials for a third machine",
    # Delegation is Active Directory's: the preflight lets Compare-VM on the source answer, and it refuses.
    ("domain, Kerberos migrations, NTLM session", "live"): "No credentials are available in the security package",
}
# "pull" needs a share of the source with its account (test_migrate_workgroup.py): \\LAB\share is neither.
VERDICTS = {
    "workgroup, NTLM": {"pull": False, "export": False, "live": False, "register": True},
    "domain, CredSSP migrations, NTLM session": {"pull": False, "export": False, "live": False, "register": True},
    # Compare-VM on the source answers "no credentials" (0x8009030E): the preflight then knows live cannot work.
    "domain, Kerberos migrations, NTLM session": {"pull": False, "export": False, "live": False, "register": True},
}


@pytest.fixture
def world(request: Any, sim_lab: Any, registered_host: Any) -> Any:
    lab = sim_lab(scenarios=["migration"])
    domain, authentication = WORLDS[request.param]
    for sim in lab.hosts:
        assert sim.strict.second_hop  # Windows' behaviour is the default
        sim.model.domain, sim.model.migration_authentication = domain, authentication
    lab.source_host, lab.target_host = (registered_host(sim) for sim in lab.hosts)
    lab.world = request.param
    return lab


@pytest.mark.parametrize("world", list(WORLDS), indirect=True)
@pytest.mark.parametrize("method", ["export", "live"])
def test_a_method_windows_refuses_fails_in_the_preflight_with_its_reason(world: Any, method: str) -> None:
    plan, _, error = live_preview(world.source_host, world.target_host, MigrationOptions("Win11-B", method=method))
    assert plan is not None, error
    assert any(EXPECTED[(world.world, method)] in failure for failure in plan.failures), plan.failures
    source, target = world.hosts
    assert source.model.vm("Win11-B") and "Win11-B" not in [vm.name for vm in target.model.vms.values()]


@pytest.mark.parametrize("world", list(WORLDS), indirect=True)
def test_the_preflight_says_which_methods_can_work_between_the_two_hosts(world: Any) -> None:
    plan, _, error = live_preview(world.source_host, world.target_host, MigrationOptions("Win11-B", method="live"))
    assert plan is not None, error
    assert {key: verdict.runnable for key, verdict in plan.methods.items()} == VERDICTS[world.world]
    export = plan.methods["export"]
    assert "Test-Path on HV01 is False" in export.reasons[0]
    if world.hosts[0].model.domain:
        assert "Enable-WSManCredSSP -Role Server -Force" in export.configure
        assert any("msDS-AllowedToDelegateTo" in line and "cifs/LAB" in line for line in export.configure)
    else:
        assert "cannot delegate credentials" in export.configure[0]


@pytest.mark.parametrize("world", ["domain, CredSSP migrations, NTLM session"], indirect=True)
def test_the_remedy_for_credssp_migrations_is_kerberos_with_delegation(world: Any) -> None:
    plan, _, _ = live_preview(world.source_host, world.target_host, MigrationOptions("Win11-B", method="live"))
    assert plan is not None
    configure = plan.methods["live"].configure
    assert configure[0] == "Enable-VMMigration  # on HV01 and on HV02"
    assert configure[1].startswith("Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos")
    assert any("Microsoft Virtual System Migration Service/HV02" in line for line in configure)


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_wizard_shows_the_methods_and_offers_no_job_for_a_refused_one(world: Any, operator_client: Any) -> None:
    choose = {"form": "1", "host": world.source_host.pk, "target": world.target_host.pk, "vm": "Win11-B"}
    choose |= {"method": "live", "unseal": "carry", "source_after": "off", "preview": "1"}
    page = operator_client.get("/jobs/new/migrate/", choose).content.decode()
    assert 'id="methods"' in page and "A workgroup pair cannot live-migrate" in page
    assert 'data-method="export" data-runnable="no"' in page and 'data-method="register" data-runnable="yes"' in page
    # The PowerShell that would make a refused method work, as lines (the template once printed its own source)
    assert "Add-Computer -DomainName &lt;domain&gt; -Restart  # on HV01\n" in page and "verdict.configure" not in page
    assert 'id="migrate-submit"' not in page


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_wizard_offers_only_the_shares_listed_for_both_hosts(world: Any, operator_client: Any) -> None:
    LabShare.objects.create(path=r"\\FILES\vms").hosts.set([world.source_host, world.target_host])
    LabShare.objects.create(path=r"\\FILES\other").hosts.set([world.source_host])
    choose = {"form": "1", "host": world.source_host.pk, "target": world.target_host.pk, "vm": "Win11-B"}
    page = operator_client.get("/jobs/new/migrate/", choose).content.decode()
    assert '<option value="\\\\FILES\\vms" selected>' in page and "FILES\\other" not in page
    assert 'name="share" value=' not in page  # no text box: an operator cannot type a share
    typed = {**choose, "method": "export", "share": r"\\attacker\drop", "preview": "1"}
    page = operator_client.get("/jobs/new/migrate/", typed).content.decode()
    assert "Choose a lab share listed for both" in page and 'id="migrate-preflight"' not in page
