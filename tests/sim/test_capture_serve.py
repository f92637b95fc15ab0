"""A host served from a capture (hypervsim/capture.py): the console, over real sockets, reads from it what the
captured host answered — the same as the console reads from the capture file itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hosts.remoting import capture, catalog, open_session
from hosts.remoting.catalog.inventory import read_inventory
from hosts.remoting.connection import ConnectionSpec
from hosts.remoting.errors import RemoteCommandError
from hypervsim import SimHost, start_host
from tests.sim.test_protocol_cli import announced, spawn  # noqa: F401 (a fixture)

CAPTURES = Path(__file__).parents[1] / "captures"


def spec_of(sim: SimHost | dict[str, Any]) -> ConnectionSpec:
    if isinstance(sim, dict):
        port = int(sim["url"].rsplit(":", 1)[1].split("/")[0])
        return ConnectionSpec("127.0.0.1", port, False, "ntlm", sim["user"], sim["password"], label=sim["name"])
    return ConnectionSpec(sim.address, sim.port, False, "ntlm", sim.user, sim.password, label=sim.name)


def recorded(name: str) -> dict[str, Any]:
    return dict(json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8")))


@pytest.fixture
def captured_host(tmp_path: Path) -> Any:
    hosts: list[SimHost] = []

    def start(name: str) -> SimHost:
        hosts.append(start_host("HOST", tmp_path / name, capture=CAPTURES / f"{name}.json"))
        return hosts[-1]

    yield start
    for host in hosts:
        host.stop()


def test_the_console_reads_from_a_served_capture_what_the_capture_says(captured_host: Any) -> None:
    sim = captured_host("healthy")
    with open_session(spec_of(sim)) as session:
        facts = session.run(catalog.TestConnection(require_local=False))
        inventory = read_inventory(session)
        vm = session.run(catalog.GetVM("Win11-A"))
    file = recorded("healthy")
    offline = capture.read_back(next(e for e in file["operations"] if e["operation"] == "ReadHostInventory"))
    assert facts.computer_name == "HOST" and facts.os_caption == offline.facts.os_caption
    assert [v.name for v in inventory.vms] == [v.name for v in offline.vms]
    assert [(g.name, g.signing_thumbprint) for g in inventory.guardians] == [
        (g.name, g.signing_thumbprint) for g in offline.guardians
    ]
    assert vm is not None and vm.vm_id == next(v.vm_id for v in offline.vms if v.name == "Win11-A")
    assert {entry["outcome"] for entry in sim.command_log} == {"replayed"}


def test_an_error_the_host_answered_is_answered_again(captured_host: Any) -> None:
    sim = captured_host("healthy")
    file = recorded("healthy")
    compare = next(e for e in file["operations"] if e["operation"] == "CompareVM")
    with open_session(spec_of(sim)) as session, pytest.raises(RemoteCommandError) as caught:
        session.run(capture.operation_of(compare))
    assert str(caught.value) in compare["outcome"]


def test_a_command_the_capture_holds_no_answer_to_fails_saying_so(captured_host: Any) -> None:
    sim = captured_host("reinstalled")
    with open_session(spec_of(sim)) as session, pytest.raises(RemoteCommandError, match="holds no answer to: Start-VM"):
        session.run(catalog.StartVM("Win11-A"))
    assert sim.command_log == [
        {"cmdlet": "Start-VM", "parameters": {"Name": "Win11-A"}, "outcome": "not in the capture"}
    ]


def test_serve_takes_a_capture_and_its_host_name(spawn: Any, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    process = spawn("serve", "--state", str(tmp_path), "--capture", str(CAPTURES / "desktop-pc.json"))
    host = announced(process)
    assert host["name"] == "HOST"
    with open_session(spec_of(host)) as session:
        facts = session.run(catalog.TestConnection(require_local=False))
    assert facts.client_edition and facts.os_caption == "Microsoft Windows 11 Pro"
