"""A session left idle: Windows closes a keep-alive connection idle for 120 s, and over NTLM message encryption the
next message, encrypted for that connection, "cannot be decrypted". Here the simulated host's idle timeout is short
(hypervsim's idle_timeout, as HTTP.sys' IdleConnectionTimeout)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hosts.remoting import open_session
from hosts.remoting.catalog.vms import GetVM, GetVmHost, StartVM, StopVM
from hosts.remoting.errors import ConnectionDropped

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]
HOST_IDLE_TIMEOUT = 0.5


def cmdlets(sim: Any) -> list[str]:
    return [entry["cmdlet"] for entry in sim.command_log]


def test_a_session_idle_past_the_threshold_reconnects_before_its_next_operation(
    sim_host: Any, registered_host: Any, settings: Any
) -> None:
    settings.WINRM_IDLE_SECONDS = HOST_IDLE_TIMEOUT / 2
    sim = sim_host("healthy", idle_timeout=HOST_IDLE_TIMEOUT)
    lines: list[tuple[str, str]] = []
    with open_session(registered_host(sim).connection_spec(), log=lambda text, level: lines.append((level, text))) as s:
        s.run(GetVmHost())
        time.sleep(HOST_IDLE_TIMEOUT * 2)
        s.run(StopVM("Win11-A"))  # a change is never retried: it must go out on a live connection the first time
    assert sim.model.vm("Win11-A").state == "Off"
    assert len(sim.opened_configurations) == 2  # a second runspace pool, opened before Stop-VM
    assert any(level == "info" and "was idle for" in text and "reconnecting" in text for level, text in lines)


def test_a_read_only_operation_that_meets_a_closed_connection_is_retried_once_on_a_new_one(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy", idle_timeout=HOST_IDLE_TIMEOUT)  # the console's threshold stays at 100 s
    lines: list[str] = []
    with open_session(registered_host(sim).connection_spec(), log=lambda text, level: lines.append(text)) as s:
        s.run(GetVmHost())
        time.sleep(HOST_IDLE_TIMEOUT * 2.5)
        assert s.run(GetVM("Win11-B")).state == "Off"  # type: ignore[union-attr]
    retried = [line for line in lines if "retrying once on a new connection" in line]
    assert len(retried) == 1 and "could not decrypt the message" in retried[0]
    assert len(sim.opened_configurations) == 2


def test_a_change_that_meets_a_closed_connection_is_not_sent_twice(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy", idle_timeout=HOST_IDLE_TIMEOUT)
    with open_session(registered_host(sim).connection_spec()) as s:
        s.run(GetVmHost())
        time.sleep(HOST_IDLE_TIMEOUT * 2.5)
        with pytest.raises(ConnectionDropped, match="could not decrypt"):
            s.run(StartVM("Win11-B"))
        assert "Start-VM" not in cmdlets(sim)  # the host could not read it, so it ran nothing
        s.run(StartVM("Win11-B"))  # the next operation starts on a new connection
    assert sim.model.vm("Win11-B").state == "Running"
