"""'Test connection' on a host's page, over real sockets: it names the failure class and never shows a 500."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from console.models import AuditEvent
from hosts.models import Host, failure_headline
from hosts.remoting.errors import REMEDIES
from hypervsim import Strictness

PASSWORD = "Sim-Passw0rd!"


def plain_host(**fields: Any) -> Host:
    values: dict[str, Any] = {"name": "HV01", "address": "127.0.0.1", "username": "labadmin", "auth": "ntlm"}
    values.update(fields)
    host = Host(**values)
    host.set_password(PASSWORD)
    host.full_clean()
    host.save()
    return host


def assert_failed_as(host: Host, kind: str) -> None:
    """Failed with this class, and the message says the error once, then what to do — not the diagnosis again."""
    message = host.last_test_message
    assert (host.last_test_ok, host.last_test_kind) == (False, kind), message
    diagnosis, colon, action = REMEDIES.get(kind, "").partition(": ")
    if colon:
        assert diagnosis not in message and action[1:] in message, message
    sentences = [part.strip() for part in message.split(". ") if part.strip()]
    assert len(sentences) == len(set(sentences)), message


def assert_shown_once(host: Host, page: str) -> None:
    """After a test, the page shows the failure class and the message once (not once in a flash and again below)."""
    assert failure_headline(host.last_test_kind) in page
    assert page.count(escape(host.last_test_message)) == 1, page


def run_test(client: Client, host: Host) -> tuple[Host, str]:
    response = client.post(f"/hosts/{host.pk}/test/", follow=True)
    assert response.status_code == 200
    host.refresh_from_db()
    return host, response.content.decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: the shape of a host that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


class TlsListener:
    """A TLS endpoint with its own self-signed certificate: it completes handshakes and records any bytes sent."""

    def __init__(self, directory: Path) -> None:
        cert_pem, key_pem = server_certificate()
        (directory / "cert.pem").write_text(cert_pem)
        (directory / "key.pem").write_text(key_pem)
        self.fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        self.received = b""
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = int(self.server.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.server.accept()
            except OSError:
                continue
            raw.settimeout(1)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.received += tls.recv(4096)
            except OSError:
                raw.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.server.close()


def server_certificate() -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "impostor")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[TlsListener]:
    listener = TlsListener(tmp_path)
    yield listener
    listener.stop()


def test_a_certificate_from_another_ca_is_reported_with_the_fingerprint_it_presented(
    admin_client: Client, tls_listener: TlsListener
) -> None:
    other_ca, _key = server_certificate()
    host = plain_host(
        transport="https", auth="basic", port=tls_listener.port, cert_check="ca_bundle", ca_bundle=other_ca
    )
    host, page = run_test(admin_client, host)
    assert_failed_as(host, "tls")
    assert tls_listener.fingerprint in host.last_test_message and tls_listener.fingerprint in page
    assert tls_listener.received == b""  # no request, so no credentials, went to the impostor


def test_a_pinned_fingerprint_that_differs_stops_before_any_credential_is_sent(
    admin_client: Client, tls_listener: TlsListener
) -> None:
    host = plain_host(
        transport="https", auth="basic", port=tls_listener.port, cert_check="fingerprint", fingerprint_sha256="ab" * 32
    )
    host, _page = run_test(admin_client, host)
    assert_failed_as(host, "tls")
    assert tls_listener.fingerprint in host.last_test_message
    assert tls_listener.received == b""


def test_an_unknown_name_is_reported_as_dns(operator_client: Client) -> None:
    host = plain_host(address="no-such-host.invalid")
    host, page = run_test(operator_client, host)
    assert host.last_test_ok is False
    assert_failed_as(host, "dns")
    assert "DNS" in page and "resolve" in page
    assert_shown_once(host, page)
    event = AuditEvent.objects.get(action="host.test_connection")
    assert event.detail == {"ok": False, "failure": "dns"} and event.username == "otto"


def test_a_closed_port_is_reported_as_refused(operator_client: Client) -> None:
    host, page = run_test(operator_client, plain_host(port=free_port()))
    assert_failed_as(host, "refused")
    assert "Enable-PSRemoting" in page


def test_a_host_that_never_answers_is_reported_as_a_timeout(
    admin_client: Client, silent_listener: int, settings: Any
) -> None:
    settings.WINRM_CONNECT_TIMEOUT = 1
    settings.WINRM_READ_TIMEOUT = 1
    settings.WINRM_OPERATION_TIMEOUT = 1
    host, _page = run_test(admin_client, plain_host(port=silent_listener))
    assert_failed_as(host, "timeout")


def test_a_password_sealed_with_a_lost_key_is_named_not_a_500(admin_client: Client, settings: Any) -> None:
    from cryptography.fernet import Fernet

    host = plain_host(port=free_port())
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    host, page = run_test(admin_client, host)
    assert_failed_as(host, "secret")
    assert "CONSOLE_ENCRYPTION_KEYS" in page


# -- over the simulated Hyper-V host ------------------------------------------------------------------------------


def presented_fingerprint(sim: Any) -> str:
    pem = ssl.get_server_certificate((sim.address, sim.port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_ntlm_with_message_encryption_connects_and_goes_green(
    operator_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host(scenario="healthy")
    host, page = run_test(operator_client, registered_host(sim, auth="ntlm"))
    assert host.last_test_ok is True, host.last_test_message
    assert host.last_test_message.startswith("Connected:") and "Local" in host.last_test_message
    assert "connected" in page
    assert AuditEvent.objects.get(action="host.test_connection").detail == {"ok": True, "failure": ""}
    assert sim.password not in page


def test_https_with_the_lab_ca_verified_connects(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy", https=True, auth="basic")
    host, _page = run_test(admin_client, registered_host(sim))
    assert (host.cert_check, host.last_test_ok) == ("ca_bundle", True), host.last_test_message


def test_a_pinned_fingerprint_that_matches_connects(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy", https=True, auth="basic")
    seen = presented_fingerprint(sim)
    pinned = ":".join(seen[i : i + 2] for i in range(0, 64, 2)).upper()
    host = registered_host(sim, cert_check="fingerprint", ca_bundle="", fingerprint_sha256=pinned)
    host, _page = run_test(admin_client, host)
    assert host.last_test_ok is True, host.last_test_message


def test_a_pinned_fingerprint_of_another_certificate_is_refused(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host(scenario="healthy", https=True, auth="basic")
    host = registered_host(sim, cert_check="fingerprint", ca_bundle="", fingerprint_sha256="0" * 64)
    host, page = run_test(admin_client, host)
    assert_failed_as(host, "tls")
    assert presented_fingerprint(sim) in page


def test_the_wrong_ca_names_tls_and_the_fingerprint_seen(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host(scenario="healthy", https=True, auth="basic")
    other_ca, _key = server_certificate()
    host, page = run_test(admin_client, registered_host(sim, ca_bundle=other_ca))
    assert_failed_as(host, "tls")
    assert presented_fingerprint(sim) in host.last_test_message


def test_a_wrong_password_is_a_401(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy")
    host, page = run_test(admin_client, registered_host(sim, auth="ntlm", password="not-the-password"))
    assert_failed_as(host, "auth")
    assert "not-the-password" not in page and "not-the-password" not in host.last_test_message


def test_a_host_that_went_down_is_refused(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy")
    host = registered_host(sim, auth="ntlm")
    sim.down()
    host, _page = run_test(admin_client, host)
    assert_failed_as(host, "refused")


def test_a_slow_host_times_out(admin_client: Client, sim_host: Any, registered_host: Any, settings: Any) -> None:
    settings.WINRM_READ_TIMEOUT = 1
    settings.WINRM_OPERATION_TIMEOUT = 1
    sim = sim_host(scenario="healthy")
    host = registered_host(sim, auth="ntlm")
    sim.faults.latency = 3
    host, _page = run_test(admin_client, host)
    sim.faults.clear()
    assert_failed_as(host, "timeout")


def test_a_winrm_fault_is_named(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy")
    host = registered_host(sim, auth="ntlm")
    sim.faults.wsman_fault = 1
    host, _page = run_test(admin_client, host)
    assert_failed_as(host, "winrm_fault")


def test_a_host_in_hgs_mode_is_reported_as_not_local(admin_client: Client, sim_host: Any, registered_host: Any) -> None:
    sim = sim_host(scenario="healthy")
    with sim.model.changing() as model:
        model.hgs_mode = "HostGuardianService"
    host, _page = run_test(admin_client, registered_host(sim, auth="ntlm"))
    assert host.last_test_ok is False
    assert_failed_as(host, "not_local")


def test_a_host_sending_the_wmi_classs_mode_numbers_is_read_as_local_or_hgs(
    admin_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host(scenario="healthy", strict=Strictness.lenient().amended("wmi_numbers"))  # Mode 1, not "Local"
    host, _page = run_test(admin_client, registered_host(sim, auth="ntlm"))
    assert host.last_test_ok is True and "HGS client mode Local" in host.last_test_message, host.last_test_message

    with sim.model.changing() as model:
        model.hgs_mode = "HostGuardianService"  # Mode 2
    host, _page = run_test(admin_client, host)
    assert_failed_as(host, "not_local")
    assert "HostGuardianService HGS mode" in host.last_test_message


# -- the host list: the last contact, by test or inventory refresh ------------------------------------------------


def contact_cell(client: Client, host: Host) -> str:
    page = client.get("/hosts/").content.decode()
    row = page[page.index(f'href="/hosts/{host.pk}/"') :]
    return " ".join(
        row[row.index('<td class="contact">') : row.index("</td>", row.index('<td class="contact">'))].split()
    )


def test_the_list_shows_a_host_refreshed_a_moment_ago_as_reached_just_now(
    viewer_client: Client, sim_host: Any, registered_host: Any
) -> None:
    from hosts.inventory.refresh import refresh_host

    sim = sim_host(scenario="healthy")
    host = registered_host(sim, auth="ntlm")
    assert "not contacted yet" in contact_cell(viewer_client, host)

    assert refresh_host(host).ok
    cell = contact_cell(viewer_client, host)
    assert "reachable" in cell and "inventory refresh just now" in cell and "not tested" not in cell

    sim.down()
    assert not refresh_host(host).ok
    cell = contact_cell(viewer_client, host)
    assert "Connection refused" in cell and "last reached just now" in cell and "reachable" not in cell


def test_a_connection_test_newer_than_the_refresh_is_the_last_contact(
    viewer_client: Client, operator_client: Client, sim_host: Any, registered_host: Any
) -> None:
    from hosts.inventory.refresh import refresh_host

    sim = sim_host(scenario="healthy")
    host = registered_host(sim, auth="ntlm", password="not-the-password")
    assert not refresh_host(host).ok  # never reached at all
    host, page = run_test(operator_client, host)

    cell = contact_cell(viewer_client, host)
    assert "401 Unauthorized" in cell and "connection test just now" in cell and "never reached" in cell
    assert_shown_once(host, page)
    assert "0 minutes" not in page and "just now" in page
