"""Select-Object on the simulated host: a client (or a JEA endpoint) asks for a few properties of each object.

In-process through the cmdlet registry for the shapes, then once over pypsrp to see what a console really receives.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from psrpcore.types import serialize_clixml
from pypsrp.powershell import PowerShell, RunspacePool

from hypervsim import scenarios
from hypervsim.cmdlets import CmdletError, invoke
from hypervsim.model import HostModel, LabContext
from hypervsim.types import VMState
from tests.plugins.sim import sim_wsman

INVENTORY = ["Name", "VMId", "State", "Generation", "Path"]
SELECTED_VM = [
    "Selected.Microsoft.HyperV.PowerShell.VirtualMachine",
    "System.Management.Automation.PSCustomObject",
    "System.Object",
]


@pytest.fixture
def host(tmp_path: Path) -> HostModel:
    model = HostModel.load_or_create(tmp_path / "HV01", "HV01", "healthy")
    model.attach(LabContext(tmp_path / "share"))
    return model


def select(host: HostModel, source: list[Any], **params: Any) -> list[Any]:
    result, errors = invoke(host, "Select-Object", params, input=source)
    assert errors == []
    return result


def clixml(value: Any) -> str:
    return serialize_clixml(value, None)  # type: ignore[arg-type]  # no SecureStrings, so no cipher needed


def props(obj: Any) -> dict[str, Any]:
    return {p.name: p.get_value(obj) for p in obj.PSObject.extended_properties}


def test_each_vm_becomes_a_selected_custom_object_with_only_the_named_properties(host):
    vms, _ = invoke(host, "Get-VM")
    picked = select(host, vms, Property=INVENTORY)
    assert len(picked) == len(vms) == len(host.vms)
    first = picked[0]
    assert first.PSObject.type_names == SELECTED_VM
    assert first.PSObject.adapted_properties == []  # note properties only: they travel in <MS>
    vm = host.vm("Win11-A")
    assert props(first) == {
        "Name": "Win11-A",
        "VMId": uuid.UUID(vm.id),
        "State": VMState.Running,
        "Generation": 2,
        "Path": vm.path,
    }
    assert first.PSObject.to_string == f"@{{Name=Win11-A; VMId={vm.id}; State=Running; Generation=2; Path={vm.path}}}"


def test_the_wire_form_is_what_windows_powershell_writes(host):
    vms, _ = invoke(host, "Get-VM", {"Name": "Win11-A"})
    xml = clixml(select(host, vms, Property=["Name", "State"])[0])
    assert "<T>Selected.Microsoft.HyperV.PowerShell.VirtualMachine</T>" in xml
    assert "<T>System.Management.Automation.PSCustomObject</T>" in xml
    assert '<MS><S N="Name">Win11-A</S>' in xml and "<Props>" not in xml
    assert "<T>Microsoft.HyperV.PowerShell.VMState</T>" in xml  # the enum keeps its type, as it was
    assert len(xml) < 0.4 * len(clixml(vms[0]))


def test_names_match_like_powershell_case_insensitive_real_name_kept_missing_ones_null(host):
    security, _ = invoke(host, "Get-VMSecurity", {"VMName": "Win11-A"})
    picked = select(host, security, Property=["computername", "TPMENABLED", "NoSuchProperty"])[0]
    assert props(picked) == {"ComputerName": "HV01", "TpmEnabled": True, "NoSuchProperty": None}
    assert picked.PSObject.type_names[0] == "Selected.Microsoft.HyperV.PowerShell.VMSecurity"


def test_wildcards_follow_the_objects_property_order_and_exclusions_apply(host):
    vms, _ = invoke(host, "Get-VM", {"Name": "Win11-A"})
    picked = select(host, vms, Property="*Name", ExcludeProperty="Computer*")[0]
    assert list(props(picked)) == ["Name", "VMName", "ParentSnapshotName"]
    everything = select(host, vms, ExcludeProperty=["*Location", "*Time", "*Usage"])[0]
    assert "Path" in props(everything) and "ConfigurationLocation" not in props(everything)


def test_a_name_given_twice_is_a_non_terminating_error_and_kept_once(host):
    vms, _ = invoke(host, "Get-VM", {"Name": "Win11-A"})
    result, errors = invoke(host, "Select-Object", {"Property": ["Name", "name"]}, input=vms)
    assert [list(props(o)) for o in result] == [["Name"]]
    assert [e.fqid for e in errors] == [
        "AlreadyExistingUserSpecifiedPropertyNoExpand,Microsoft.PowerShell.Commands.SelectObjectCommand"
    ]


def test_first_last_skip_and_unique_window_the_input(host):
    scenarios.add_tpm_vms(host, 4, prefix="Bench")
    vms, _ = invoke(host, "Get-VM", {"Name": "Bench*"})
    names = [o.Name for o in vms]
    assert [props(o)["Name"] for o in select(host, vms, Property="Name", First=2)] == names[:2]
    assert [props(o)["Name"] for o in select(host, vms, Property="Name", Skip=1, Last=1)] == names[-1:]
    assert select(host, vms, First=1, Last=1) == [vms[0], vms[-1]]  # no -Property: the objects themselves
    assert len(select(host, vms, Property="State", Unique=None)) == 1  # all Off


def test_expand_property_and_primitive_input(host):
    vms, _ = invoke(host, "Get-VM")
    assert select(host, vms, ExpandProperty="Name")[:2] == ["Win11-A", "Win11-B"]
    picked = select(host, ["abc"], Property="Length")[0]
    assert picked.PSObject.type_names[0] == "Selected.System.String" and props(picked) == {"Length": 3}
    result, errors = invoke(host, "Select-Object", {"ExpandProperty": "Nope"}, input=vms[:1])
    assert result == [] and errors[0].fqid.startswith("ExpandPropertyNotFound,")


def test_calculated_properties_are_refused_not_evaluated(host):
    vms, _ = invoke(host, "Get-VM")
    with pytest.raises(CmdletError) as caught:
        invoke(host, "Select-Object", {"Property": [{"Name": "X", "Expression": "Get-Date"}]}, input=vms)
    assert caught.value.fqid == "NotSupported,Microsoft.PowerShell.Commands.SelectObjectCommand"


@pytest.mark.timeout(60)
def test_console_receives_small_selected_objects_over_pypsrp(sim_host):
    h = sim_host("healthy")
    with sim_wsman(h) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_cmdlet("Select-Object").add_parameter("Property", INVENTORY)
        ps.add_statement()
        ps.add_cmdlet("Get-VM").add_cmdlet("Get-VMSecurity")
        ps.add_cmdlet("Select-Object").add_parameter("Property", ["VMName", "VMId", "TpmEnabled", "Shielded"])
        output = ps.invoke()
        assert not ps.had_errors and not ps.streams.error
    vms, security = output[: len(h.model.vms)], output[len(h.model.vms) :]
    assert vms[0].types == SELECTED_VM
    assert vms[0].adapted_properties == {}
    assert set(vms[0].extended_properties) == set(INVENTORY)
    assert [(v.extended_properties["Name"], str(v.extended_properties["State"])) for v in vms][:2] == [
        ("Win11-A", "Running"),
        ("Win11-B", "Off"),
    ]
    assert str(vms[0]).startswith("@{Name=Win11-A; VMId=")
    assert security[0].types[0] == "Selected.Microsoft.HyperV.PowerShell.VMSecurity"
    assert security[0].extended_properties["TpmEnabled"] is True
    selects = [c for c in h.command_log if c["cmdlet"] == "Select-Object"]
    assert [c["outcome"] for c in selects] == ["ok", "ok"]
