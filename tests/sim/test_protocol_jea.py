"""Session configurations (JEA endpoints) on a simulated host: a registered name opens, any other is refused as WinRM
refuses it, and the host records which endpoint each shell was opened on."""

from __future__ import annotations

from typing import Any

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool

from hypervsim import cli
from tests.plugins.sim import sim_run, sim_wsman

pytestmark = pytest.mark.timeout(60)
REGISTERED = ("Microsoft.PowerShell", "GuardianConsole")
URI = "http://schemas.microsoft.com/powershell/"


def vm_names(h: Any, configuration: str) -> list[str]:
    with sim_wsman(h) as wsman, RunspacePool(wsman, configuration_name=configuration) as pool:
        ps = sim_run(pool, ("Get-VM", {}))
        assert not ps.had_errors
        return [vm.adapted_properties["Name"] for vm in ps.output]


def test_a_registered_endpoint_opens_and_is_recorded(sim_host):
    h = sim_host("healthy", configurations=REGISTERED)
    assert vm_names(h, "GuardianConsole")[:1] == ["Win11-A"]
    assert vm_names(h, "microsoft.powershell")[:1] == ["Win11-A"]  # WinRM resolves resource URIs in any case
    assert h.opened_configurations == ["GuardianConsole", "microsoft.powershell"]
    assert h.configurations == REGISTERED


def test_an_unregistered_endpoint_is_refused_before_any_shell_exists(sim_host):
    h = sim_host("healthy", configurations=("Microsoft.PowerShell",))
    with pytest.raises(WSManFaultError) as caught:
        vm_names(h, "GuardianConsole")
    assert caught.value.code == 2150858811  # ERROR_WSMAN_INVALID_RESOURCE_URI
    assert caught.value.machine == h.name
    assert f"The resource URI ({URI}GuardianConsole) was not found in the WS-Management catalog" in caught.value.reason
    assert h.opened_configurations == [] and h.command_log == []
    assert vm_names(h, "Microsoft.PowerShell")  # the refusal left the host serving the registered endpoint


def test_by_default_any_endpoint_name_opens(sim_host):
    h = sim_host("fresh")
    assert h.configurations is None
    vm_names(h, "Anything.Goes")
    assert h.opened_configurations == ["Anything.Goes"]


def test_the_command_line_registers_endpoints(tmp_path):
    args = cli._parser().parse_args(
        ["serve", "--state", str(tmp_path), "--configuration", "GuardianConsole", "--configuration", "Other"]
    )
    (h,) = cli._start(args)
    try:
        assert h.configurations == ("GuardianConsole", "Other")
        with pytest.raises(WSManFaultError):
            vm_names(h, "Microsoft.PowerShell")
    finally:
        h.stop()


def test_a_jea_endpoint_runs_only_its_visible_cmdlets_and_select_object(sim_host):
    endpoints = {"Microsoft.PowerShell": None, "GuardianConsole": ["Get-VM", "get-vmsecurity"]}
    h = sim_host("healthy", configurations=endpoints)
    with sim_wsman(h) as wsman, RunspacePool(wsman, configuration_name="GuardianConsole") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_cmdlet("Get-VMSecurity").add_cmdlet("Select-Object")
        ps.add_parameter("Property", ["ComputerName", "TpmEnabled"])
        selected = [(o.extended_properties["ComputerName"], o.extended_properties["TpmEnabled"]) for o in ps.invoke()]
        assert selected[:1] == [(h.name, True)]
        hidden = PowerShell(pool)
        hidden.add_cmdlet("Start-VM").add_parameter("Name", "Win11-B")
        hidden.invoke()
        assert hidden.state == PSInvocationState.FAILED
        assert hidden.streams.error[0].fq_error == "CommandNotFoundException"
        assert "The term 'Start-VM' is not recognized" in str(hidden.streams.error[0])
    assert h.model.vm("Win11-B").state == "Off"
    assert h.command_log[-1] == {"cmdlet": "Start-VM", "parameters": {}, "outcome": "error: CommandNotFoundException"}
    with sim_wsman(h) as wsman, RunspacePool(wsman) as pool:  # the full endpoint still has everything
        assert not sim_run(pool, ("Start-VM", {"Name": "Win11-B"})).had_errors
    assert h.model.vm("Win11-B").state == "Running"
