"""Remoting pieces that need no host: PowerShell rendering, key-protector reading, connection rules, the catalog,
and how failures of real sockets (closed port, a server that hangs up) become typed, password-free errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from hosts.remoting import ConnectionSpec, Secret, open_session, render_powershell
from hosts.remoting.catalog import ReadVmDetails, TestConnection, all_cmdlets
from hosts.remoting.catalog.inventory import certificate_thumbprint
from hosts.remoting.connection import normalise_fingerprint
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.keyprotector import read_key_protector
from hosts.remoting.operation import SWITCH, Cmd, Operation, PipelineResult, quote
from hypervsim import CMDLETS, certs
from hypervsim.keyprotector import NO_KEY_PROTECTOR, KeyProtector

PASSWORD = "S3cret-Pa55word!"


def spec(port: int, **changes: object) -> ConnectionSpec:
    fields: dict[str, object] = {
        "address": "127.0.0.1",
        "port": port,
        "https": False,
        "auth": "ntlm",
        "username": "labadmin",
        "password": PASSWORD,
        "cert_check": "system",
        "label": "HV01",
    }
    fields.update(changes)
    return ConnectionSpec(**fields)  # type: ignore[arg-type]


class _ImportPfx(Operation[None]):
    def statements(self) -> list[list[Cmd]]:
        return [
            [
                Cmd(
                    "Import-PfxCertificate",
                    {"FilePath": "C:\\tmp\\it's.pfx", "Password": Secret(PASSWORD), "Exportable": SWITCH},
                )
            ]
        ]


def test_rendered_powershell_quotes_values_and_hides_secrets() -> None:
    lines = render_powershell(_ImportPfx())
    assert lines == [
        "Import-PfxCertificate -FilePath 'C:\\tmp\\it''s.pfx' -Password (Read-Host -AsSecureString '<password>') "
        "-Exportable"
    ]
    assert PASSWORD not in repr(_ImportPfx().statements())


def test_hostile_vm_names_stay_single_quoted_literals() -> None:
    for name in ["x'; Remove-Item C:\\ -Recurse; '", "a\u2019b", "$(Stop-Computer)"]:
        rendered = render_powershell(ReadVmDetails([name]))[0]
        literal = rendered.removeprefix("Get-VMSecurity -VMName ")
        assert literal == quote(name)
        inner = literal[1:-1]
        # every quote inside is doubled, so the literal cannot end early
        assert inner.replace("''", "").count("'") == 0
        assert inner.replace("\u2019\u2019", "").count("\u2019") == 0


def test_every_catalog_cmdlet_is_implemented_by_the_simulator() -> None:
    assert all_cmdlets() - set(CMDLETS) == set()
    assert {"Get-VM", "Get-HgsGuardian", "Get-VMKeyProtector"} <= all_cmdlets()


def test_an_operation_cannot_send_a_cmdlet_it_does_not_declare() -> None:
    """The declared CMDLETS are what the simulator and the JEA role are checked against: they cannot fall behind."""
    from hosts.remoting.operation import UndeclaredCmdlet
    from hosts.remoting.session import HostSession

    class Sneaky(Operation[None]):
        CMDLETS = ("Get-VM",)

        def statements(self) -> list[list[Cmd]]:
            return [[Cmd("Get-VM")], [Cmd("Remove-VM", {"Name": "x"})]]

    session = HostSession(spec(1))  # never opened: the refusal comes before any connection
    with pytest.raises(UndeclaredCmdlet, match=r"Sneaky sends \['Remove-VM'\]"):
        session.run(Sneaky())


def test_key_protector_thumbprints_come_from_the_embedded_certificates() -> None:
    owner = certs.guardian_pair("UntrustedGuardian", "HV01", key_label="test/owner")
    other = certs.guardian_pair("UntrustedGuardian", "HV02", key_label="test/other")
    kp = KeyProtector.create(*owner)
    store = {c.thumbprint: c for c in owner}
    kp = kp.grant(store, *other)

    info = read_key_protector(kp.to_bytes())

    assert info.present and info.readable
    assert [(g.signing, g.encryption) for g in info.guardians] == [
        (owner[0].thumbprint, owner[1].thumbprint),
        (other[0].thumbprint, other[1].thumbprint),
    ]
    assert info.owner is not None and info.owner.signing == owner[0].thumbprint


def test_short_key_protector_means_none_and_garbage_means_unreadable() -> None:
    assert read_key_protector(NO_KEY_PROTECTOR).present is False
    garbage = read_key_protector(bytes(range(256)) * 4)
    assert garbage.present and not garbage.readable and garbage.guardians == []


def test_nested_certificate_shapes_all_give_the_thumbprint() -> None:
    signing, _ = certs.guardian_pair("G", "HV01", key_label="test/shapes")
    expected = signing.thumbprint
    assert certificate_thumbprint(signing.der)[0] == expected
    as_text = f"[Subject]\r\n  CN=x\r\n\r\n[Thumbprint]\r\n  {expected}\r\n"
    assert certificate_thumbprint(as_text)[0] == expected
    assert certificate_thumbprint(None) == ("", "")


def test_fingerprints_are_normalised() -> None:
    raw = "AB:" * 31 + "AB"
    assert normalise_fingerprint(raw) == "ab" * 32
    assert normalise_fingerprint("not-a-fingerprint") == ""


def test_basic_auth_over_http_is_refused_before_any_connection() -> None:
    with (
        pytest.raises(RemotingError, match="Basic authentication is only allowed over HTTPS"),
        open_session(spec(1, auth="basic")),
    ):
        pass


def test_kerberos_without_gssapi_names_what_is_missing_before_any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hosts.remoting.connection.kerberos_available", lambda: False)
    with pytest.raises(RemotingError) as caught, open_session(spec(1, auth="kerberos")):
        pass
    assert caught.value.kind == "kerberos" and "no GSSAPI library" in str(caught.value)


def test_password_never_in_repr_of_spec() -> None:
    assert PASSWORD not in repr(spec(5985))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_is_refused(settings: object) -> None:
    with pytest.raises(RemotingError) as caught, open_session(spec(_free_port())):
        pass
    assert caught.value.kind == "refused"
    assert PASSWORD not in str(caught.value)


@pytest.fixture
def hanging_up_server() -> Iterator[int]:
    """A TCP server that accepts and closes every connection at once: a host dropping the connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def test_a_host_that_hangs_up_is_a_dropped_connection(hanging_up_server: int) -> None:
    with pytest.raises(RemotingError) as caught, open_session(spec(hanging_up_server)):
        pass
    assert caught.value.kind == "dropped"
    assert PASSWORD not in str(caught.value)


def test_tls_to_a_plain_server_is_named(hanging_up_server: int) -> None:
    with (
        pytest.raises(RemotingError) as caught,
        open_session(spec(hanging_up_server, https=True, cert_check="fingerprint", fingerprint_sha256="ab" * 32)),
    ):
        pass
    assert caught.value.kind in ("tls", "dropped")


def test_remote_command_error_says_what_failed() -> None:
    error = RemoteCommandError(
        "Guardian 'UntrustedGuardian' does not have a private key",
        fqid="InvalidOperation,Microsoft.HgsClient.Commands.NewHgsGuardian",
        category="InvalidOperation",
        command="Set-VMKeyProtector",
    )
    assert error.kind == "remote"
    assert "does not have a private key" in str(error) and "NewHgsGuardian" in str(error)


def test_test_connection_without_facts_is_an_unexpected_reply() -> None:
    with pytest.raises(RemotingError) as caught:
        TestConnection().parse(PipelineResult(output=["garbage"]))
    assert caught.value.kind == "unexpected"


def test_a_session_configuration_name_cannot_smuggle_text_into_the_resource_uri() -> None:
    for bad in ("Microsoft.PowerShell/../x", "JEA Endpoint", "", "a" * 129):
        with (
            pytest.raises(RemotingError, match="session configuration name"),
            open_session(spec(1, configuration_name=bad)),
        ):
            pass


def test_a_pipeline_is_serialized_as_pypsrp_serializes_it_with_its_own_commands() -> None:
    """The session's commands copy cheaply (pypsrp deep-copies each one whenever it serializes a pipeline): the
    message the host gets must still be pypsrp's own, byte for byte — every object a new one, none sent as a
    reference to another statement's."""
    from copy import deepcopy
    from xml.etree import ElementTree

    from pypsrp.complex_objects import Pipeline
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.serializer import Serializer
    from pypsrp.wsman import WSMan

    from hosts.remoting.session import HostSession

    op = ReadVmDetails(["Win11-A", "Srv 2022", "Ünïcode"])  # several statements, list and switch parameters
    pool = RunspacePool(WSMan("127.0.0.1", port=1, auth="ntlm", username="u", password="p", ssl=False))
    pool.protocol_version = "2.3"
    session = HostSession(spec(1))
    session._pool = pool
    ours = session._build(op)
    theirs = PowerShell(pool)
    for statement in op.statements():
        for cmd in statement:
            theirs.add_cmdlet(cmd.name)
            for name, value in cmd.params.items():
                theirs.add_parameter(name, None if value is SWITCH else value)
        theirs.add_statement()

    def message(ps: PowerShell) -> str:
        element = Serializer().serialize(Pipeline(is_nested=False, cmds=ps.commands, history=None))
        assert element is not None
        return ElementTree.tostring(element, encoding="unicode")

    sent = message(ours)
    assert sent == message(theirs)
    assert "<Ref " not in sent and sent.count("Get-VMKeyProtector") == 3
    assert message(ours) == sent  # again: what the serializer filled in the shared metadata the first time holds
    # A copy is a copy: changing its parameters or merge settings leaves the command as it was.
    command = ours.commands[0]
    copied = deepcopy(command)
    assert copied.merge_error is copied.merge_warning  # shared in the original, shared in the copy
    copied.args[0].value, copied.merge_error.value = "changed", 1
    assert command.args[0].value != "changed" and command.merge_error.value != 1
