"""JEA: a host names the PowerShell endpoint the console connects to, and the prepare page hands out a role
capability that lists exactly the cmdlets the console can send, with the session configuration that registers it."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from console.models import AuditEvent
from hosts import jea
from hosts.models import DEFAULT_CONFIGURATION, Host
from hosts.remoting import catalog
from hypervsim import Strictness
from hypervsim.cmdlets import command_type
from tests.hosts.test_register import form_data, register


def pre_block(page: str, element_id: str) -> str:
    match = re.search(rf'<pre [^>]*id="{element_id}"[^>]*>(.*?)</pre>', page, flags=re.DOTALL)
    assert match, f"no <pre id={element_id}> on the page"
    return html.unescape(match.group(1))


def jea_host(**fields: Any) -> Host:
    host = Host(name="HV01", address="hv01.lab.example", username="LAB\\hvconsole", **fields)
    host.set_password("unused-Passw0rd")
    host.full_clean()
    host.save()
    return host


# --- the endpoint name on the host --------------------------------------------------------------------------------


def test_a_host_registered_without_an_endpoint_uses_the_default_one(admin_client: Client) -> None:
    register(admin_client)  # the form as posted before the field existed: no configuration_name at all
    assert Host.objects.get().configuration_name == DEFAULT_CONFIGURATION
    register(admin_client, name="HV02", address="hv02.lab.example", configuration_name="  ")
    assert Host.objects.get(name="HV02").configuration_name == DEFAULT_CONFIGURATION


def test_an_admin_points_a_host_at_a_jea_endpoint_and_the_change_is_audited(admin_client: Client) -> None:
    register(admin_client)
    host = Host.objects.get()
    response = admin_client.post(
        f"/hosts/{host.pk}/edit/", form_data(configuration_name="GuardianConsole", password="")
    )
    assert response.status_code == 302, response.content[:300]
    host.refresh_from_db()
    assert (host.configuration_name, host.uses_jea) == ("GuardianConsole", True)
    event = AuditEvent.objects.filter(action="host.update").get()
    assert event.detail["changed"] == ["configuration_name"]
    page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "GuardianConsole" in page and ">JEA<" in page


@pytest.mark.parametrize(
    "name",
    [
        "Guardian Console",  # a space
        "x'; Remove-Item C:\\ -Recurse; '",  # PowerShell in the prepare page
        "../Microsoft.PowerShell",  # a path inside the WSMan resource URI
        "http://schemas.microsoft.com/powershell/Other",
        ".hidden",
        "-dash-first",
        "Name\x00",
        "Ünïcode",
        "a" * 129,
    ],
)
def test_an_unsafe_endpoint_name_is_refused_and_nothing_is_saved(admin_client: Client, name: str) -> None:
    response = register(admin_client, configuration_name=name)
    assert response.status_code == 200
    assert "configuration_name" in response.context["form"].errors
    assert not Host.objects.exists()
    with pytest.raises(ValidationError):
        jea_host(configuration_name=name)


@pytest.mark.parametrize("name", ["Microsoft.PowerShell", "GuardianConsole", "GC_JEA-2.0", "a" * 128])
def test_usual_endpoint_names_are_accepted(db: None, name: str) -> None:
    assert jea_host(configuration_name=name).configuration_name == name


def test_the_connection_spec_names_the_hosts_endpoint(db: None) -> None:
    jea_host(configuration_name="GuardianConsole")
    assert Host.objects.get().connection_spec().configuration_name == "GuardianConsole"


def test_a_host_on_a_jea_endpoint_connects_through_it(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    host = registered_host(sim_host(scenario="healthy"), configuration_name="GuardianConsole")
    response = admin_client.post(f"/hosts/{host.pk}/test/", follow=True)
    assert response.status_code == 200
    host.refresh_from_db()
    assert host.last_test_ok, host.last_test_message


def test_an_endpoint_name_smuggled_past_validation_fails_the_test_cleanly(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    host = registered_host(sim_host(scenario="healthy"))
    Host.objects.filter(pk=host.pk).update(configuration_name="../evil endpoint")
    response = admin_client.post(f"/hosts/{host.pk}/test/", follow=True)
    assert response.status_code == 200
    host.refresh_from_db()
    assert host.last_test_ok is False and "session configuration name" in host.last_test_message


# --- the files on the prepare page --------------------------------------------------------------------------------


def test_the_role_capability_lists_exactly_the_cmdlets_the_console_can_send(viewer_client: Client) -> None:
    page = viewer_client.get("/hosts/prepare/").content.decode()
    psrc = pre_block(page, "jea-psrc")
    assert jea.visible_commands(psrc) == catalog.all_cmdlets()
    # ...and the script that writes the file carries the same text.
    assert psrc in pre_block(page, "jea-setup")
    assert "VisibleProviders = 'Certificate', 'FileSystem'" in psrc


def test_the_session_configuration_maps_the_hosts_account_to_the_role_and_is_registered(
    viewer_client: Client, db: None
) -> None:
    host = jea_host(configuration_name="GC-Hyper.V_1")
    page = viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode()
    pssc, setup = pre_block(page, "jea-pssc"), pre_block(page, "jea-setup")
    assert "SessionType = 'RestrictedRemoteServer'" in pssc
    assert "RunAsVirtualAccount = $true" in pssc
    assert "RoleDefinitions = @{ 'LAB\\hvconsole' = @{ RoleCapabilities = 'GuardianConsole' } }" in pssc
    register_line = (
        r"Register-PSSessionConfiguration -Name 'GC-Hyper.V_1'"
        r" -Path 'C:\ProgramData\GuardianConsole\GC-Hyper.V_1.pssc' -Force"
    )
    assert setup.splitlines()[-1] == register_line
    assert setup.index("Set-Content") < setup.index("Test-PSSessionConfigurationFile") < setup.index(register_line)
    assert "<code>GC-Hyper.V_1</code>" in page  # the name to enter on the Edit page


def test_without_a_jea_host_the_page_suggests_the_guardian_console_endpoint(viewer_client: Client, db: None) -> None:
    host = jea_host()  # still on Microsoft.PowerShell: registering *that* name would replace the default endpoint
    setup = pre_block(viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode(), "jea-setup")
    assert "Register-PSSessionConfiguration -Name 'GuardianConsole'" in setup
    assert "Microsoft.PowerShell" not in setup


def test_an_odd_account_never_reaches_the_session_configuration(viewer_client: Client, db: None) -> None:
    host = jea_host()
    Host.objects.filter(pk=host.pk).update(username="x' = @{}; Remove-Item C:\\; '")
    pssc = pre_block(viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode(), "jea-pssc")
    assert "Remove-Item" not in pssc and "'hvconsole' = @{" in pssc


@pytest.mark.parametrize(
    ("name", "account", "cmdlets"),
    [
        ("Guardian Console", "hvconsole", ("Get-VM",)),
        ("GuardianConsole", "x'; y", ("Get-VM",)),
        ("GuardianConsole", "hvconsole", ("Get-VM; Remove-Item",)),
        ("GuardianConsole", "hvconsole", ("'Get-VM'",)),
    ],
)
def test_the_generator_refuses_anything_but_checked_names(name: str, account: str, cmdlets: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not a"):
        jea.JeaEndpoint(name=name, account=account, cmdlets=cmdlets)


def test_the_files_are_the_same_every_time(viewer_client: Client) -> None:
    first = viewer_client.get("/hosts/prepare/").content.decode()
    second = viewer_client.get("/hosts/prepare/").content.decode()
    assert pre_block(first, "jea-setup") == pre_block(second, "jea-setup")


# --- the generated role capability, installed on a (simulated) JEA endpoint -----------------------------------------


def installed_role(viewer_client: Client, without: str = "") -> dict[str, list[str]]:
    """The role an admin installs from the prepare page (optionally with one command left out, as an old file)."""
    psrc = pre_block(viewer_client.get("/hosts/prepare/").content.decode(), "jea-psrc")
    return {
        "VisibleCmdlets": sorted(jea.visible_cmdlets(psrc) - {without}),
        "VisibleFunctions": sorted(jea.visible_functions(psrc) - {without}),
    }


def jea_sim(sim_host: Any, role: dict[str, list[str]], scenario: str = "healthy") -> Any:
    """A host as strict as Windows (HgsClient commands are functions there) with the console's JEA endpoint."""
    return sim_host(
        scenario, configurations={"Microsoft.PowerShell": None, "GuardianConsole": role}, strict=Strictness.windows()
    )


def test_hgs_client_commands_are_listed_as_functions_and_everything_else_as_cmdlets(viewer_client: Client) -> None:
    role = installed_role(viewer_client)
    assert "Get-HgsClientConfiguration" in role["VisibleFunctions"] and "Get-VM" in role["VisibleCmdlets"]
    # The simulator knows each command's type as Get-Command reports it on Windows.
    assert {name for name in catalog.all_cmdlets() if command_type(name) == "Function"} == set(role["VisibleFunctions"])


def test_the_generated_role_is_enough_for_a_full_refresh_and_the_connection_test(
    viewer_client: Client, admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    from hosts.inventory.models import HostInventory
    from hosts.inventory.refresh import refresh_host

    sim = jea_sim(sim_host, installed_role(viewer_client))
    host = registered_host(sim, configuration_name="GuardianConsole")

    outcome = refresh_host(host)
    admin_client.post(f"/hosts/{host.pk}/test/")

    assert outcome.ok, outcome.error
    inventory = HostInventory.objects.get(host=host)
    assert inventory.problems == [] and host.vms.count() == len(sim.model.vms)
    host.refresh_from_db()
    assert host.last_test_ok, host.last_test_message
    # Nothing was refused on the way (a partial read would hide a missing cmdlet in `problems`), all through JEA.
    assert [entry for entry in sim.command_log if entry["outcome"] != "ok"] == []
    assert set(sim.opened_configurations) == {"GuardianConsole"}


def test_a_role_missing_a_cmdlet_fails_the_test_naming_it_and_the_fix(
    viewer_client: Client, admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = jea_sim(sim_host, installed_role(viewer_client, without="Get-HgsClientConfiguration"))
    host = registered_host(sim, configuration_name="GuardianConsole")

    page = admin_client.post(f"/hosts/{host.pk}/test/", follow=True).content.decode()

    host.refresh_from_db()
    assert (host.last_test_ok, host.last_test_kind) == (False, "remote"), host.last_test_message
    assert "Get-HgsClientConfiguration" in host.last_test_message
    assert "Set-Content" in host.last_test_message and "Set-Content" in page


def test_an_endpoint_the_host_does_not_have_is_named_with_the_fix(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy", configurations={"Microsoft.PowerShell": None})
    host = registered_host(sim, configuration_name="GuardianConsole")

    admin_client.post(f"/hosts/{host.pk}/test/")

    host.refresh_from_db()
    assert (host.last_test_ok, host.last_test_kind) == (False, "winrm_fault"), host.last_test_message
    assert "no PowerShell endpoint of that name" in host.last_test_message


def test_a_reset_and_its_undo_run_through_the_jea_endpoint(
    viewer_client: Client, sim_host: Any, registered_host: Any
) -> None:
    from hosts.remoting import open_session
    from jobs.workflows.reset.plan import RemovedGuardian, reset_guardian, undo_reset
    from tests.plugins.runs import DirectRun

    sim = jea_sim(sim_host, installed_role(viewer_client), scenario="deleted-certs")
    host = registered_host(sim, configuration_name="GuardianConsole")
    guardian = sim.model.guardian("UntrustedGuardian")
    before = (guardian.signing.thumbprint, guardian.encryption.thumbprint)
    run = DirectRun()

    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
        assert sim.model.guardian("UntrustedGuardian") is None
        undo_reset(run, session, host, RemovedGuardian.from_record(run.results["removed_guardian"]))

    restored = sim.model.guardian("UntrustedGuardian")
    assert (restored.signing.thumbprint, restored.encryption.thumbprint) == before
    assert set(run.results["sealed_vms"]) == {"Win11-A", "Win11-B", "Win11-C"}  # the key protectors were read
    assert [entry for entry in sim.command_log if entry["outcome"] != "ok"] == []
    exports = [entry["parameters"] for entry in sim.command_log if entry["cmdlet"] == "Export-HgsGuardian"]
    assert exports and all(set(p) == {"Path"} for p in exports)  # the guardian is piped in: there is no -Name
    assert set(sim.opened_configurations) == {"GuardianConsole"}
