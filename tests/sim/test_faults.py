"""Each fault a test can switch on a simulated host, seen from the unmodified pypsrp client."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool

from hypervsim import SimHost, start_host
from tests.plugins.sim import sim_run as run
from tests.plugins.sim import sim_wsman as wsman
from tests.plugins.sim import wait_for_command


def host_name_from(h: SimHost) -> str:
    with RunspacePool(wsman(h)) as pool:
        return str(run(pool, ("Get-VMHost", {})).output[0].adapted_properties["Name"])


def test_latency_is_added_to_every_request(sim_host: Any) -> None:
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        h.faults.latency = 0.25
        before, started = h.request_count, time.monotonic()
        run(pool, ("Get-VMHost", {}))
        requests_made = h.request_count - before
    assert time.monotonic() - started >= 0.25 * requests_made >= 0.5


def test_connection_dropped_on_the_nth_request(sim_host: Any) -> None:
    h = sim_host("fresh")
    pool = RunspacePool(wsman(h))
    pool.open()
    h.faults.drop_on_request = 2  # the Command goes through, its Receive is dropped
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, ("Get-VMHost", {}))
    assert h.faults.drop_on_request is None  # once
    assert host_name_from(h) == h.name


def test_connection_dropped_when_a_named_cmdlet_arrives(sim_host: Any) -> None:
    h = sim_host("healthy")
    vm = next(v for v in h.model.vms.values() if v.state == "Off")
    h.faults.drop_on_cmdlet = "start-vm"
    with RunspacePool(wsman(h)) as pool:
        assert run(pool, ("Get-VM", {})).output  # other cmdlets are served
    pool = RunspacePool(wsman(h))
    pool.open()
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, ("Start-VM", {"Name": vm.name}))
    assert h.model.vm(vm.name).state == "Off"  # the cmdlet never ran
    assert "Start-VM" not in [e["cmdlet"] for e in h.command_log]
    h.faults.clear()
    with RunspacePool(wsman(h)) as pool:
        run(pool, ("Start-VM", {"Name": vm.name}))
    assert h.model.vm(vm.name).state == "Running"


def test_http_500_for_the_next_requests(sim_host: Any) -> None:
    h = sim_host("fresh")
    with RunspacePool(wsman(h)) as pool:
        h.faults.http_500 = 1
        with pytest.raises(WinRMTransportError) as error:
            run(pool, ("Get-VMHost", {}))
        assert error.value.code == 500
    assert h.faults.http_500 == 0
    assert host_name_from(h) == h.name


def test_wsman_fault_for_the_next_request(sim_host: Any) -> None:
    h = sim_host("fresh", https=True, auth="basic")
    with RunspacePool(wsman(h)) as pool:
        h.faults.wsman_fault = 1
        with pytest.raises(WSManFaultError) as fault:
            run(pool, ("Get-VMHost", {}))
        assert fault.value.code == 2150858770
        assert run(pool, ("Get-VMHost", {})).output


@pytest.mark.parametrize(("https", "auth"), [(False, "negotiate"), (True, "basic")])
def test_unauthorized_after_n_requests(sim_host: Any, https: bool, auth: str) -> None:
    h = sim_host("fresh", https=https, auth=auth)
    pool = RunspacePool(wsman(h))
    pool.open()
    h.faults.unauthorized_after = 0
    with pytest.raises(AuthenticationError):
        run(pool, ("Get-VMHost", {}))
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(h)).open()
    h.faults.clear()
    assert host_name_from(h) == h.name


def test_unauthorized_after_one_more_request_lets_the_command_run_but_refuses_its_result(sim_host: Any) -> None:
    """The credentials stop working between a Command and its Receive: the host did the change, the client only
    learns that it was refused, so a console must read the host again rather than assume nothing happened."""
    h = sim_host("healthy")
    pool = RunspacePool(wsman(h))
    pool.open()
    assert run(pool, ("Get-VMHost", {})).output  # served as usual before the fault
    h.faults.unauthorized_after = 1
    with pytest.raises(AuthenticationError):
        run(pool, ("Start-VM", {"Name": "Win11-B"}))
    assert wait_for_command(h, "Start-VM")["outcome"] == "ok"
    assert [e["cmdlet"] for e in h.command_log][-1] == "Start-VM"
    assert h.model.vm("Win11-B").state == "Running"
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(h)).open()  # and every request after it
    h.faults.clear()
    assert host_name_from(h) == h.name


def test_slow_cmdlet_takes_its_time(sim_host: Any) -> None:
    h = sim_host("fresh")
    h.faults.slow_cmdlet = ("Get-VMHost", 0.6)
    with RunspacePool(wsman(h)) as pool:
        started = time.monotonic()
        run(pool, ("Get-VMHost", {}))
        assert time.monotonic() - started >= 0.6
        started = time.monotonic()
        run(pool, ("Get-VM", {}))
        assert time.monotonic() - started < 0.6


def test_host_down_closes_the_port_and_up_reopens_it(sim_host: Any) -> None:
    h = sim_host("healthy")
    port, vms = h.port, set(h.model.vms)
    pool = RunspacePool(wsman(h))
    pool.open()
    h.down()
    with pytest.raises(requests.exceptions.ConnectionError):
        run(pool, ("Get-VM", {}))
    with pytest.raises(requests.exceptions.ConnectionError):
        RunspacePool(wsman(h)).open()
    h.up()
    assert h.port == port
    assert host_name_from(h) == h.name
    assert set(h.model.vms) == vms


def test_a_restarted_host_keeps_its_state(tmp_path: Any) -> None:
    first = start_host("HV07", tmp_path, "healthy")
    vm = next(v for v in first.model.vms.values() if v.state == "Running")
    with RunspacePool(wsman(first)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Stop-VM").add_parameter("Name", vm.name).add_parameter("Force")
        ps.invoke()
    first.stop()
    second = start_host("HV07", tmp_path, "fresh")  # the scenario only seeds a new state directory
    try:
        assert second.model.vm(vm.name).state == "Off"
        assert host_name_from(second) == "HV07"
    finally:
        second.stop()
