"""The capture kit: `manage.py capture_host` records what a host answers to every read-only operation, and every
console parser reads every answer of every capture in tests/captures/ (recorded from hypervsim as strict as Windows
by tests/captures/record.py; a capture a user sends goes there too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from console.models import AuditEvent
from hosts.remoting import capture
from hosts.remoting.errors import RemotingError

CAPTURES = sorted((Path(__file__).parents[1] / "captures").glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parents[1] / "captures" / f"{name}.json").read_text(encoding="utf-8")))


def answer(recorded: dict[str, Any], operation: str) -> Any:
    """What the console reads from the capture's first answer to that operation."""
    return capture.read_back(next(e for e in recorded["operations"] if e["operation"] == operation))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda path: path.stem)
def test_every_parser_reads_every_answer_of_the_capture(path: Path) -> None:
    recorded = json.loads(path.read_text(encoding="utf-8"))
    assert recorded["format"] == capture.FORMAT
    assert recorded["operations"], "a capture with no operation"
    for entry in recorded["operations"]:
        try:
            capture.read_back(entry)
            read = "ok"
        except RemotingError as error:  # the host's own error, or a reply the parser rejects with a reason
            read = f"{type(error).__name__}: {error}"
        # anything else escaping a parser is a crash, and fails the test here
        assert (read == "ok") == (entry["outcome"] == "ok"), (entry["operation"], read, entry["outcome"])


def test_the_captures_show_the_state_of_their_scenario() -> None:
    healthy, reinstalled, deleted = load("healthy"), load("reinstalled"), load("deleted-certs")
    inventory = answer(healthy, "ReadHostInventory")
    assert inventory.facts.computer_name == "HOST"  # anonymised
    assert {vm.name for vm in inventory.vms} == {"Win11-A", "Win11-B", "Win11-C", "Srv-Plain"}
    assert [(g.name, g.has_private_signing_key) for g in inventory.guardians] == [("UntrustedGuardian", True)]
    assert len(answer(healthy, "ReadVmDetails")) == 4
    assert answer(reinstalled, "GetGuardians") == []
    assert {vm.name for vm in answer(reinstalled, "ReadHostInventory").vms} == {"Win11-A", "Win11-B", "Srv-Plain"}
    assert [g.has_private_signing_key for g in answer(deleted, "GetGuardians")] == [False]
    assert answer(deleted, "ListShieldedCertificates").certificates == []
    assert answer(load("desktop-pc"), "TestConnection").client_edition


def test_capture_host_records_every_read_only_operation_and_changes_nothing(
    sim_host: Any, registered_host: Any, tmp_path: Path
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    state_before = (Path(sim.model.state_dir) / "host.json").read_text()
    call_command("capture_host", host.name, "--output", str(tmp_path / "hv01.json"))
    recorded = json.loads((tmp_path / "hv01.json").read_text())
    assert (recorded["host"], recorded["user"], recorded["anonymised"]) == ("HV01", sim.user, False)
    listed = {e["operation"] for e in recorded["operations"]} | {s["operation"] for s in recorded["skipped"]}
    assert listed == {cls.__name__ for cls in capture.read_only_operations()}
    assert all(skipped["why"] for skipped in recorded["skipped"])
    assert (Path(sim.model.state_dir) / "host.json").read_text() == state_before
    read_only = set().union(*(cls.cmdlets() for cls in capture.read_only_operations()))
    assert {entry["cmdlet"] for entry in sim.command_log} <= read_only
    entry = next(e for e in recorded["operations"] if e["operation"] == "GetVM")
    assert entry["statements"] == [[{"cmdlet": "Get-VM", "parameters": {"Name": "Win11-A"}}]]
    assert [m["type"] for m in entry["messages"]] == ["PIPELINE_OUTPUT", "PIPELINE_STATE"]
    assert (
        entry["messages"][0]["clixml"].startswith("<Obj")
        and '<S N="Name">Win11-A</S>' in entry["messages"][0]["clixml"]
    )
    assert AuditEvent.objects.filter(action="host.captured", object_id=str(host.pk)).count() == 1


def test_an_anonymised_capture_names_no_host_user_or_domain(
    sim_host: Any, registered_host: Any, tmp_path: Path
) -> None:
    sim = sim_host("healthy", name="HV07")
    host = registered_host(sim, name="Lab PC", username=f"CORP\\{sim.user}")
    output = tmp_path / "anonymous.json"
    with pytest.raises(CommandError, match="could not be reached"):  # CORP\labadmin is not the simulator's account
        call_command("capture_host", "Lab PC", "--output", str(output), "--anonymise")
    host.username = sim.user
    host.save()
    call_command("capture_host", str(host.pk), "--output", str(output), "--anonymise", "--also", "Win11-C")
    text = output.read_text()
    recorded = json.loads(text)
    assert recorded["anonymised"] and (recorded["host"], recorded["user"]) == ("HOST", "USER")
    for name in ("HV07", "Lab PC", sim.user, "Win11-C"):
        assert name.lower() not in text.lower(), name
    assert "(HOST)" in text  # the certificate subjects Windows makes: 'Shielded VM Signing Certificate (…) (HOST)'
    for entry in recorded["operations"]:  # still readable, with the placeholders
        if entry["outcome"] == "ok":
            capture.read_back(entry)
    assert answer(recorded, "TestConnection").computer_name == "HOST"


def test_placeholders_for_an_fqdn_and_a_domain_account() -> None:
    hidden = capture.names_to_hide(["hv01.corp.example.com", "10.0.0.5"], "CORP\\svc-hv")
    assert hidden == {
        "hv01.corp.example.com": "HOST.DOMAIN",
        "hv01": "HOST",
        "corp.example.com": "DOMAIN",
        "10.0.0.5": "192.0.2.1",
        "CORP": "DOMAIN",
        "svc-hv": "USER",
    }
    clixml = '<S N="Path">C:\\Users\\svc-hv\\x</S><S N="FQDN">HV01.corp.example.com</S><BA>hv01+AAA</BA>'
    anonymised = '<S N="Path">C:\\Users\\USER\\x</S><S N="FQDN">HOST.DOMAIN</S><BA>hv01+AAA</BA>'
    assert capture.anonymise({"clixml": clixml}, hidden)["clixml"] == anonymised  # bytes stay bytes


@pytest.mark.django_db  # looks the host up; the other tests read capture files (or get the database with a host)
def test_an_unknown_host_is_refused() -> None:
    with pytest.raises(CommandError, match="No registered host is called 'HV99'"):
        call_command("capture_host", "HV99")
