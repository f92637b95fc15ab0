"""The migration preflight tells the truth about the second hop before anything runs (issue 10).

The simulated hosts behave as Windows does with the `second_hop` switch on: the console's sessions (NTLM) reach
nothing beyond their host. For each world the preflight lists every method, says which can work and why not the
others and what to configure, and the wizard offers no job for a refused one. That each method Windows would refuse
fails in the preflight with its reason (and the others run) is the table of test_migrate_worlds.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from hosts.models import LabShare
from hypervsim.model import MIGRATION_CREDSSP, MIGRATION_KERBEROS
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from tests.plugins.worlds import ntlm_pair

pytestmark = pytest.mark.django_db

WORLDS = {
    # world: (domain of both hosts, their migration authentication)
    "workgroup, NTLM": (None, MIGRATION_CREDSSP),
    "domain, CredSSP migrations, NTLM session": ("lab.test", MIGRATION_CREDSSP),
    "domain, Kerberos migrations, NTLM session": ("lab.test", MIGRATION_KERBEROS),
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
    lab = ntlm_pair(sim_lab, registered_host, *WORLDS[request.param])
    lab.world = request.param
    return lab


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
