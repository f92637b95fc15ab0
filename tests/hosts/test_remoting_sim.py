"""The remoting layer against a simulated host over real sockets: NTLM with message encryption, verified HTTPS,
and every way a connection can fail, each named by its kind with a message that never holds the password."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from hosts.jea import JeaEndpoint
from hosts.remoting import ConnectionSpec, open_session
from hosts.remoting.catalog import ReadHostInventory, TestConnection
from hosts.remoting.catalog.inventory import read_inventory
from hosts.remoting.errors import RemoteCommandError, RemotingError, TlsVerificationFailed
from hosts.remoting.operation import Cmd, Operation, PipelineResult
from hypervsim import Strictness

pytestmark = pytest.mark.timeout(60)


def sim_spec(h: Any, **changes: Any) -> ConnectionSpec:
    fields: dict[str, Any] = {
        "address": h.address,
        "port": h.port,
        "https": bool(h.https),
        "auth": h.auth,
        "username": h.user,
        "password": h.password,
        "cert_check": "ca_bundle" if h.https else "system",
        "ca_bundle_pem": Path(h.ca_file).read_text() if h.https else "",
        "label": h.name,
    }
    fields.update(changes)
    return ConnectionSpec(**fields)


def served_fingerprint(h: Any) -> str:
    pem = ssl.get_server_certificate((h.address, h.port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def other_ca_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class GetGuardianByName(Operation[PipelineResult]):
    """A test-only read: one guardian by name (a missing one is a remote error)."""

    guardian: str
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-HgsGuardian", {"Name": self.guardian})]]

    def parse(self, result: PipelineResult) -> PipelineResult:
        return result


@dataclass
class ListVmsAsIfChanging(Operation[int]):
    """A test-only operation marked as changing something, so it must never be retried."""

    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-VM")]]

    def parse(self, result: PipelineResult) -> int:
        return len(result.output)


def test_test_connection_over_ntlm_with_message_encryption(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    lines: list[tuple[str, str]] = []

    with open_session(sim_spec(h, auth="ntlm"), log=lambda text, level: lines.append((text, level))) as session:
        facts = session.run(TestConnection())

    assert facts.computer_name == h.name and facts.mode == "Local"
    assert "Windows Server" in facts.os_caption
    assert ("→ Get-CimInstance, Get-HgsClientConfiguration (HV01)", "info") in lines
    assert [c["cmdlet"] for c in h.command_log][-2:] == ["Get-CimInstance", "Get-HgsClientConfiguration"]


def test_verified_https_with_the_lab_ca(sim_host: Any) -> None:
    h = sim_host(scenario="healthy", https=True)
    with open_session(sim_spec(h)) as session:
        assert session.run(TestConnection()).local_mode


def test_https_with_a_pinned_fingerprint(sim_host: Any) -> None:
    h = sim_host(scenario="healthy", https=True)
    spec = sim_spec(h, cert_check="fingerprint", fingerprint_sha256=served_fingerprint(h), ca_bundle_pem="")
    with open_session(spec) as session:
        assert session.run(TestConnection()).computer_name == h.name


def test_wrong_pin_is_refused_before_basic_credentials_are_sent(sim_host: Any) -> None:
    h = sim_host(scenario="healthy", https=True, auth="basic")
    spec = sim_spec(h, cert_check="fingerprint", fingerprint_sha256="00" * 32, ca_bundle_pem="")
    before = h.request_count

    with pytest.raises(TlsVerificationFailed) as caught, open_session(spec):
        pass

    assert caught.value.kind == "tls"
    assert caught.value.fingerprint_seen == served_fingerprint(h)
    assert h.request_count == before  # not one HTTP request reached the server: no credentials left us
    assert h.password not in str(caught.value)


def test_a_certificate_from_another_ca_is_refused_with_the_fingerprint_seen(sim_host: Any) -> None:
    h = sim_host(scenario="healthy", https=True)
    with pytest.raises(TlsVerificationFailed) as caught, open_session(sim_spec(h, ca_bundle_pem=other_ca_pem())):
        pass
    assert "not signed by the uploaded CA bundle" in str(caught.value)
    assert caught.value.fingerprint_seen == served_fingerprint(h)


def test_wrong_password_is_an_authentication_failure_without_the_password(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    wrong = "Not-the-Passw0rd!"
    with pytest.raises(RemotingError) as caught, open_session(sim_spec(h, password=wrong)):
        pass
    assert caught.value.kind == "auth"
    assert wrong not in str(caught.value) and h.password not in str(caught.value)


def test_host_down_is_refused(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    h.down()
    with pytest.raises(RemotingError) as caught, open_session(sim_spec(h)):
        pass
    assert caught.value.kind == "refused"


def test_http_500_is_a_winrm_fault(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    h.faults.http_500 = 5
    with pytest.raises(RemotingError) as caught, open_session(sim_spec(h)):
        pass
    assert caught.value.kind == "winrm_fault" and "HTTP 500" in str(caught.value)


def test_wsman_fault_is_a_winrm_fault(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    h.faults.wsman_fault = 5
    with pytest.raises(RemotingError) as caught, open_session(sim_spec(h)):
        pass
    assert caught.value.kind == "winrm_fault"


def test_a_read_is_retried_once_when_the_connection_drops(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    with open_session(sim_spec(h)) as session:
        h.faults.drop_on_cmdlet = "Get-VM"
        # first attempt is dropped; clear the fault once it has fired so the retry on a new connection succeeds
        dropped = {"n": 0}
        original = session.log

        def log(text: str, level: str) -> None:
            if "retrying" in text:
                dropped["n"] += 1
                h.faults.drop_on_cmdlet = None
            original(text, level)

        session.log = log
        inventory = session.run(ReadHostInventory())
    assert dropped["n"] == 1
    assert {vm.name for vm in inventory.vms} >= {"Win11-A", "Win11-B"}


def test_a_change_is_never_retried(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    with open_session(sim_spec(h)) as session:
        h.faults.drop_on_cmdlet = "Get-VM"
        with pytest.raises(RemotingError) as caught:
            session.run(ListVmsAsIfChanging())
    assert caught.value.kind == "dropped"
    assert [c["cmdlet"] for c in h.command_log].count("Get-VM") <= 1


def test_remote_errors_carry_message_fqid_and_category(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    with open_session(sim_spec(h)) as session, pytest.raises(RemoteCommandError) as caught:
        session.run(GetGuardianByName("NoSuchGuardian"))
    error = caught.value
    assert error.kind == "remote"
    assert "NoSuchGuardian" in error.message
    assert error.fqid.startswith("CmdletizationQuery_NotFound_Name")
    assert error.category == "ObjectNotFound"


def test_stop_current_cancels_a_slow_pipeline(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    h.faults.slow_cmdlet = ("Get-VM", 20.0)
    with open_session(sim_spec(h)) as session:
        timer = threading.Timer(0.5, session.stop_current)
        timer.start()
        started = time.monotonic()
        with pytest.raises(RemotingError) as caught:
            session.run(ListVmsAsIfChanging())
        elapsed = time.monotonic() - started
    assert caught.value.kind == "cancelled"
    assert elapsed < 10


def test_a_jea_endpoint_is_opened_by_its_configuration_name(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    with open_session(sim_spec(h, configuration_name="GuardianConsole")) as session:
        assert session.run(TestConnection()).computer_name == h.name
    assert "GuardianConsole" in h.opened_configurations


def test_after_a_lost_connection_the_next_operation_starts_on_a_new_one(sim_host: Any) -> None:
    h = sim_host(scenario="healthy")
    with open_session(sim_spec(h)) as session:
        h.faults.drop_on_cmdlet = "Get-VM"
        with pytest.raises(RemotingError):
            session.run(ListVmsAsIfChanging())
        h.faults.drop_on_cmdlet = None
        assert session.run(ListVmsAsIfChanging()) == 4


def jea_role(*commands: str) -> dict[str, tuple[str, ...]]:
    """The role capability the console would generate for these commands, as the simulator takes it."""
    role = JeaEndpoint("GuardianConsole", "hvconsole", tuple(sorted(commands)))
    return {"VisibleCmdlets": role.visible_cmdlets, "VisibleFunctions": role.visible_functions}


def test_the_inventory_runs_on_a_jea_endpoint_that_exposes_only_its_cmdlets(sim_host: Any) -> None:
    role = jea_role(*ReadHostInventory.CMDLETS, *TestConnection.CMDLETS)
    h = sim_host(scenario="healthy", configurations={"GuardianConsole": role}, strict=Strictness.windows())

    with open_session(sim_spec(h, configuration_name="GuardianConsole")) as session:
        inventory = read_inventory(session)

    assert inventory.details_complete and len(inventory.vms) == 4
    owner = inventory.details["Win11-A"].key_protector.owner
    assert owner is not None and owner.signing == h.model.guardian("UntrustedGuardian").signing.thumbprint
    assert h.opened_configurations == ["GuardianConsole"]
    assert [entry for entry in h.command_log if entry["outcome"] != "ok"] == []


def test_a_jea_endpoint_missing_a_cmdlet_names_it(sim_host: Any) -> None:
    role = jea_role(*(set(ReadHostInventory.CMDLETS) - {"Get-VMKeyProtector"}))
    h = sim_host(scenario="healthy", configurations={"GuardianConsole": role}, strict=Strictness.windows())

    with (
        open_session(sim_spec(h, configuration_name="GuardianConsole")) as session,
        pytest.raises(RemoteCommandError) as caught,
    ):
        session.run(ReadHostInventory())

    assert "Get-VMKeyProtector" in caught.value.message
    assert "CommandNotFoundException" in caught.value.fqid or "CommandNotFound" in caught.value.exception_type
