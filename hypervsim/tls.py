"""A lab's certificate authority and the WinRM HTTPS certificate it issues to simulated hosts.

The CA certificate is written to a PEM file so clients can verify the listener exactly as they would a real
host's certificate signed by an enterprise CA. Files are kept, so a restarted lab keeps the same trust root.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class ListenerCertificate:
    """Paths of the lab CA and of one host's server certificate and key (PEM)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@functools.cache
def _new_key(role: str) -> rsa.RSAPrivateKey:
    # RSA generation dominates starting an HTTPS host; one key per role per process is plenty for a simulator
    # (each lab still gets its own CA certificate, so trust does not leak from one lab to another).
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _lab_ca(directory: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    ca_file, key_file = directory / "lab-ca.pem", directory / "lab-ca.key"
    if ca_file.exists() and key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return x509.load_pem_x509_certificate(ca_file.read_bytes()), key
    key = _new_key("ca")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Hyper-V Lab Root CA"))
        .issuer_name(_name("Hyper-V Lab Root CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(key, key_file)
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def listener_certificate(directory: Path, host_name: str) -> ListenerCertificate:
    """The lab CA in `directory` (created once) and a server certificate for `host_name` on loopback."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _lab_ca(directory)
    files = ListenerCertificate(
        directory / "lab-ca.pem", directory / f"{host_name}-winrm.pem", directory / f"{host_name}-winrm.key"
    )
    if files.cert_file.exists() and files.key_file.exists():
        return files
    key = _new_key("server")
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName(host_name),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key, files.key_file)
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files
