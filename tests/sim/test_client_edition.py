"""A simulated host can present a Windows client edition (Hyper-V on a desktop PC): Win32_OperatingSystem says
Windows 11 Pro with ProductType 1 (a workstation), where a server says 3."""

from __future__ import annotations

from typing import Any

from pypsrp.powershell import RunspacePool

from hypervsim import start_host
from tests.plugins.sim import sim_run, sim_wsman


def operating_system(sim: Any) -> Any:
    with sim_wsman(sim) as wsman, RunspacePool(wsman) as pool:
        return sim_run(pool, ("Get-CimInstance", {"ClassName": "Win32_OperatingSystem"})).output[0]


def test_a_host_is_a_server_unless_told_to_be_a_client_edition(sim_host: Any) -> None:
    server = operating_system(sim_host("healthy"))
    assert (server.adapted_properties["Caption"], server.adapted_properties["ProductType"]) == (
        "Microsoft Windows Server 2022 Datacenter",
        3,
    )
    client = operating_system(sim_host("healthy", edition="client"))
    assert client.adapted_properties["Caption"] == "Microsoft Windows 11 Pro"
    assert (client.adapted_properties["ProductType"], client.adapted_properties["BuildNumber"]) == (1, "22631")


def test_the_edition_is_kept_with_the_host_state(tmp_path: Any) -> None:
    first = start_host("PC01", tmp_path, "fresh", edition="client")
    first.stop()
    again = start_host("PC01", tmp_path)  # restarted without saying: still the PC it was
    try:
        assert (again.model.os_caption, again.model.product_type) == ("Microsoft Windows 11 Pro", 1)
    finally:
        again.stop()
