"""Every piece of PowerShell the console shows a person — the vault download's README, suggested commands in pages,
remedies in job logs, Show PowerShell — is rendered by one function (hosts.remoting.operation.render_cmd, through
jobs.workflows.powershell), so a hostile name from a host or an upload stays one literal argument (issue 11, item 7).

`literals_and_code` reads PowerShell as a person would paste it: single-quoted strings (PowerShell also closes them
with the typographic quotes ‘ ’ ‚ ‛, and a doubled quote is one quote inside) and the code between them. A name is
safe when it comes back whole as one of the literals and nothing of it is left in the code.
"""

from __future__ import annotations

import datetime
import html
from html import unescape

import pytest
from django.template import Context, Template
from django.test import Client

from hosts.inventory.models import VirtualMachine
from hosts.remoting.catalog.guardians import RemoveFiles, RemoveGuardian
from hosts.remoting.catalog.vms import MoveVM, RemoveFolder, RemoveVM, StartVM, StopVM
from hosts.remoting.operation import literal_name, render_powershell
from hosts.vault.models import EscrowedPair
from hosts.vault.views import readme
from jobs.workflows.import_guardian.plan import import_lines
from jobs.workflows.migrate.run import revoke_by_hand
from jobs.workflows.powershell import PowerShellScript, by_hand
from jobs.workflows.reset.page import ResetPreflight
from jobs.workflows.vtpm.plan import TpmChange, VmNow
from tests.hosts.test_vault_support import unreachable_host

QUOTES = "'\u2018\u2019\u201a\u201b"
PAYLOAD = "Start-Process calc.exe"
HOSTILE = [
    f"a'; {PAYLOAD}; '",
    f"x$({PAYLOAD})y",
    f"b`; {PAYLOAD}",
    f"c\n{PAYLOAD}",
    f"d\u2018; {PAYLOAD}; \u2019",
    f"e\u201c$({PAYLOAD})\u201d",
    f'f"; {PAYLOAD}; "',
    "g*",
]


def literals_and_code(text: str) -> tuple[list[str], str]:
    """The single-quoted literals of `text`, decoded, and everything outside them; an unclosed literal fails."""
    literals: list[str] = []
    code: list[str] = []
    at = 0
    while at < len(text):
        if text[at] not in QUOTES:
            code.append(text[at])
            at += 1
            continue
        value, at = [], at + 1
        while True:
            assert at < len(text), f"a quote is never closed in {text!r}"
            if text[at] in QUOTES and at + 1 < len(text) and text[at + 1] in QUOTES:
                value.append(text[at])
                at += 2
            elif text[at] in QUOTES:
                at += 1
                break
            else:
                value.append(text[at])
                at += 1
        literals.append("".join(value))
    return literals, "".join(code)


def assert_quoted(powershell: str, name: str) -> None:
    """`name` is one whole literal argument of the PowerShell shown, and none of it runs as code."""
    literals, code = literals_and_code(powershell)
    # A VM name is a wildcard pattern to Hyper-V's -Name/-VMName: it is sent with its pattern characters escaped.
    assert name in literals or literal_name(name) in literals, f"{name!r} is not one literal of {powershell!r}"
    assert PAYLOAD not in code and "$(" not in code and "`" not in code and "\n" not in code, powershell


def test_the_checker_catches_a_name_pasted_into_an_f_string() -> None:
    name = HOSTILE[0]
    with pytest.raises(AssertionError):
        assert_quoted(f"Stop-VM -Name '{name}'", name)
    with pytest.raises(AssertionError):
        assert_quoted(f"Stop-VM -Name 'x{HOSTILE[4]}'", HOSTILE[4])


@pytest.mark.parametrize("name", HOSTILE)
def test_remedies_in_job_logs_quote_a_hostile_name(name: str) -> None:
    remedies = [
        by_hand(StartVM(name)),
        by_hand(StopVM(name)),
        by_hand(RemoveVM(name)),
        by_hand(RemoveGuardian(name)),
        by_hand(RemoveFolder(f"\\\\share\\{name}")),
        by_hand(MoveVM(name, "HV01", "<its folder>")),
        "; ".join(render_powershell(RemoveFiles([f"C:\\Windows\\Temp\\{name}.pfx"]))),
    ]
    remedies.append(revoke_by_hand(name, name))
    for remedy in remedies:  # statements joined by "; ", as a job's log prints them: none of the name is code
        literals, _code = literals_and_code(remedy)
        assert any(name in literal or literal_name(name) in literal for literal in literals), remedy
        assert_no_code_from(remedy)


def assert_no_code_from(powershell: str) -> None:
    _literals, code = literals_and_code(powershell)
    assert PAYLOAD not in code and "$(" not in code and "`" not in code and "\n" not in code, powershell


def pair_named(name: str) -> EscrowedPair:
    now = datetime.datetime.now(datetime.UTC)
    return EscrowedPair(
        guardian_name=name, signing_thumbprint="A" * 40, encryption_thumbprint="B" * 40, not_before=now, not_after=now
    )


@pytest.mark.parametrize("name", HOSTILE)
def test_the_vault_download_readme_quotes_the_guardian_name(name: str) -> None:
    text = readme(pair_named(name), b"signing", b"encryption")
    commands = text.split("afterwards.\r\n", 1)[1]
    statements = [line.strip() for line in commands.split("\r\n  ")]
    assert [s.split(" ")[0] for s in statements] == [
        "New-Item",
        "Import-PfxCertificate",
        "Import-PfxCertificate",
        "New-HgsGuardian",
    ]
    assert_quoted(statements[-1], name)
    for statement in statements:
        assert_no_code_from(statement)


@pytest.mark.parametrize("name", HOSTILE)
def test_show_powershell_of_an_import_quotes_the_guardian_name(name: str) -> None:
    lines = import_lines(PowerShellScript(), pair_named(name), name).lines()
    created = next(line for line in lines if line.startswith("New-HgsGuardian"))
    assert_quoted(created, name)
    for line in lines:
        if not line.startswith("#"):
            assert_no_code_from(line)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_vtpm_refusal_and_the_reset_page_quote_names_from_a_host(name: str) -> None:
    refusal = TpmChange(name, "disable").refusal("Running")
    assert_quoted(refusal[refusal.index("Stop-VM") : refusal.rindex(") and run this again")], name)
    assert_quoted(ResetPreflight(guardian_name=name).removal, name)


@pytest.mark.django_db
@pytest.mark.urls("tests.hosts.test_vault_support")
@pytest.mark.parametrize("name", HOSTILE)
def test_the_vtpm_page_quotes_the_vm_name_a_host_reported(name: str, admin_client: Client) -> None:
    host = unreachable_host()
    VirtualMachine.objects.create(host=host, vm_id="1", name=name, state="Running", tpm_enabled=True)
    page = admin_client.get("/jobs/new/vtpm/", {"host": host.pk, "action": "disable", "vm": name})
    text = unescape(page.content.decode())
    start = text.index("Stop-VM")
    assert_quoted(text[start : text.index("), then check again", start)], name)


@pytest.mark.django_db
@pytest.mark.parametrize("name", HOSTILE)
def test_job_step_titles_that_name_a_cmdlet_quote_the_vm_name(name: str) -> None:
    host = unreachable_host()
    for action in ("enable", "disable"):
        for step in TpmChange(name, action).steps(VmNow("Off"), host):
            title = step.title.removesuffix(f" on {host}")
            assert_no_code_from(title)
            assert name in literals_and_code(title)[0], title


@pytest.mark.parametrize("name", HOSTILE)
def test_the_prepare_a_host_page_quotes_what_it_pastes_into_its_commands(name: str) -> None:
    """The page suggests commands with the host's DNS name and account in them: quoted as Show PowerShell quotes."""
    line = Template("{% load hosts_tags %}New-LocalUser -Name {{ account|ps_literal }}").render(
        Context({"account": name})
    )
    assert_quoted(html.unescape(line), name)
