"""Registered Hyper-V hosts: where they are, how to reach them, and the (sealed) account the console uses.

Validation lives on the model (not only in the form) so every way of creating a host — the form, the demo lab,
the tests — refuses the same bad input: a port out of range, Basic auth over plain HTTP, a CA bundle that is not
certificates, a fingerprint that is not SHA-256.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .fields import EncryptedField, open_text, seal_text
from .remoting.connection import CREDSSP_NEEDS_VERIFIED_HTTPS, KERBEROS_MISSING, ConnectionSpec, kerberos_available
from .remoting.errors import REMEDIES


class Transport(models.TextChoices):
    HTTP = "http", gettext_lazy("HTTP (port 5985, Negotiate message encryption — Windows' default listener)")
    HTTPS = "https", gettext_lazy("HTTPS (port 5986)")


class Auth(models.TextChoices):
    NEGOTIATE = "negotiate", gettext_lazy("Negotiate (Kerberos, falling back to NTLM)")
    NTLM = "ntlm", "NTLM"
    KERBEROS = "kerberos", "Kerberos"
    BASIC = "basic", gettext_lazy("Basic (HTTPS only, local accounts)")
    CREDSSP = (
        "credssp",
        gettext_lazy("CredSSP (HTTPS with a verified certificate only; the host receives the password)"),
    )


class CertCheck(models.TextChoices):
    SYSTEM = "system", gettext_lazy("System CAs")
    CA_BUNDLE = "ca_bundle", gettext_lazy("An uploaded CA bundle")
    FINGERPRINT = "fingerprint", gettext_lazy("A pinned SHA-256 fingerprint")
    NONE = "none", gettext_lazy("DO NOT VERIFY (insecure: anyone on the path can read the credentials)")


DEFAULT_PORTS = {"http": 5985, "https": 5986}
# The endpoint Enable-PSRemoting registers; a JEA endpoint is another session configuration on the same listener.
DEFAULT_CONFIGURATION = "Microsoft.PowerShell"
# Session configuration names as Register-PSSessionConfiguration accepts them, restricted further to what is safe
# inside a WSMan resource URI and in the copy-paste PowerShell of the prepare page (no quote, slash or space).
CONFIGURATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# RFC 1123 host name: labels of letters, digits and inner hyphens, 63 characters each, 253 in all.
HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


# A short name of each failure class (a RemotingError kind, or "secret"), for badges; the message says the rest.
FAILURE_HEADLINES: dict[str, str | Promise] = {
    "dns": gettext_lazy("DNS"),
    "refused": gettext_lazy("Connection refused"),
    "timeout": gettext_lazy("Timeout"),
    "tls": gettext_lazy("TLS verification failed"),
    "auth": gettext_lazy("401 Unauthorized"),
    "winrm_fault": gettext_lazy("WinRM fault"),
    "not_local": gettext_lazy("Not in Local mode"),
    "dropped": gettext_lazy("Connection dropped"),
    "remote": gettext_lazy("Command failed on the host"),
    "unexpected": gettext_lazy("Unexpected reply"),
    "cancelled": gettext_lazy("Cancelled"),
    "kerberos": gettext_lazy("Kerberos unavailable"),
    "credssp": gettext_lazy("CredSSP refused"),
    "krb_kdc": gettext_lazy("Kerberos KDC unreachable"),
    "krb_clock": gettext_lazy("Clocks too far apart for Kerberos"),
    "krb_principal": gettext_lazy("Unknown to the Kerberos realm"),
    "krb_account": gettext_lazy("Kerberos refused the account"),
    "krb_ticket": gettext_lazy("Kerberos ticket unreadable"),
    "secret": gettext_lazy("Stored password unreadable"),
}


def failure_headline(kind: str) -> str:
    return str(FAILURE_HEADLINES.get(kind, FAILURE_HEADLINES["unexpected"]))


# How the console last reached a host, shown before "5 minutes ago".
VIA_TEST = gettext_lazy("connection test")
VIA_REFRESH = gettext_lazy("inventory refresh")


@dataclass(frozen=True)
class Contact:
    """The console's latest exchange with a host, by connection test or inventory refresh, whichever is newer."""

    ok: bool
    at: datetime
    via: str | Promise  # VIA_TEST | VIA_REFRESH, in the reader's language
    kind: str = ""  # the failure class of a failed exchange
    message: str = ""  # the error of a failed exchange
    last_ok_at: datetime | None = None  # the last success, older than a failed latest exchange

    @property
    def headline(self) -> str:
        return _("reachable") if self.ok else failure_headline(self.kind)


def normalize_address(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]  # a bracketed IPv6 literal as people paste it from URLs
    return value.rstrip(".") if not _is_ip(value) else value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def validate_address(value: str) -> None:
    address = normalize_address(value)
    if _is_ip(address):
        return
    message = _("Enter a host name (such as hv01.lab.example) or an IP address — no scheme, port or path.")
    if not address or len(address) > 253 or not all(HOSTNAME_LABEL.match(label) for label in address.split(".")):
        raise ValidationError(message, code="address")
    if address.replace(".", "").isdigit():
        raise ValidationError(_("That looks like an IP address but is not a valid one."), code="address")


def normalize_fingerprint(value: str) -> str:
    return re.sub(r"[\s:]", "", value).lower()


def validate_fingerprint(value: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", normalize_fingerprint(value)):
        raise ValidationError(
            _("A SHA-256 fingerprint is 64 hexadecimal digits (colons and spaces are fine)."), code="fingerprint"
        )


def validate_ca_bundle(value: str) -> None:
    """The bundle must be one or more PEM certificates and nothing else (a private key has no business here)."""
    kinds = set(PEM_BLOCK.findall(value))
    if any("PRIVATE KEY" in kind for kind in kinds):
        raise ValidationError(
            _("This text contains a private key. Paste only the CA certificate(s), never a key."), code="ca_bundle"
        )
    if kinds != {"CERTIFICATE"}:
        raise ValidationError(
            _("Paste one or more PEM certificates (-----BEGIN CERTIFICATE----- …)."), code="ca_bundle"
        )
    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValidationError(_("The CA bundle holds a certificate that cannot be read."), code="ca_bundle") from None


def validate_configuration_name(value: str) -> None:
    if not CONFIGURATION_NAME.fullmatch(value):
        raise ValidationError(
            _(
                "A session configuration name is letters, digits, dots, dashes and underscores (such as "
                "Microsoft.PowerShell or GuardianConsole), starting with a letter or digit."
            ),
            code="configuration_name",
        )


# Unicode categories a display name never needs: controls and line breaks (fake log lines), format characters
# (right-to-left overrides, zero-width spaces and joiners), surrogates, private-use and unassigned code points,
# enclosing marks. Spaces other than the ordinary one are refused too: they make look-alikes of another name.
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Me"}
# Scripts whose letters look like Latin ones: a name mixing one of them with Latin imitates another name (Н for H).
CONFUSABLE_WITH_LATIN = {"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"}


def validate_display_name(value: str) -> None:
    """A name shown in pages, logs and audit lines: one line of visible characters that reads as what it is."""
    for char in value:
        category = unicodedata.category(char)
        if category in UNSAFE_CATEGORIES or (category == "Zs" and char != " "):
            raise ValidationError(
                _(
                    "The name contains an invisible, control or direction-changing character (%(code_point)s): "
                    "use letters, digits, spaces and punctuation on one line."
                )
                % {"code_point": f"U+{ord(char):04X}"},
                code="display_name",
            )
    if unicodedata.normalize("NFKC", value) != value:
        raise ValidationError(
            _(
                "The name contains full-width, superscript or other stand-in characters: type it in plain characters "
                "(%(plain)s)."
            )
            % {"plain": unicodedata.normalize("NFKC", value)},
            code="display_name",
        )
    scripts = {unicodedata.name(char, "").partition(" ")[0] for char in value if char.isalpha()}
    if "LATIN" in scripts and scripts & CONFUSABLE_WITH_LATIN:
        raise ValidationError(
            _(
                "The name mixes Latin letters with look-alike letters of another script (such as Cyrillic Н for H), "
                "so it would pass for another name: use one script."
            ),
            code="display_name",
        )


def validate_username(value: str) -> None:
    if value != value.strip() or any(ord(char) < 32 for char in value):
        raise ValidationError(_("The user name has leading/trailing spaces or control characters."), code="username")


class Host(models.Model):
    """A Hyper-V host the console talks to over WinRM/PSRP."""

    name = models.CharField(
        gettext_lazy("display name"),
        max_length=64,
        validators=[validate_display_name],
        help_text=gettext_lazy("How the console shows this host, e.g. HV01."),
    )
    address = models.CharField(
        max_length=253,
        validators=[validate_address],
        help_text=gettext_lazy("Host name or IP address the console connects to."),
    )
    transport = models.CharField(max_length=5, choices=Transport.choices, default=Transport.HTTP)
    port = models.PositiveIntegerField(
        blank=True,  # blank in the form means "the transport's default"; clean() fills it in
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text=gettext_lazy("Leave empty for the default: 5985 for HTTP, 5986 for HTTPS."),
    )
    auth = models.CharField(gettext_lazy("authentication"), max_length=9, choices=Auth.choices, default=Auth.NEGOTIATE)
    cert_check = models.CharField(
        gettext_lazy("server certificate check"), max_length=11, choices=CertCheck.choices, default=CertCheck.SYSTEM
    )
    ca_bundle = models.TextField(gettext_lazy("CA bundle (PEM)"), blank=True, validators=[validate_ca_bundle])
    fingerprint_sha256 = models.CharField(
        gettext_lazy("pinned SHA-256 fingerprint"), max_length=95, blank=True, validators=[validate_fingerprint]
    )
    username = models.CharField(max_length=256, validators=[validate_username])
    configuration_name = models.CharField(
        gettext_lazy("PowerShell endpoint"),
        max_length=128,
        default=DEFAULT_CONFIGURATION,
        validators=[validate_configuration_name],
        help_text=gettext_lazy(
            "The session configuration to connect to: Microsoft.PowerShell, or the name of a JEA endpoint "
            "registered from the prepare page (such as GuardianConsole)."
        ),
    )
    password = EncryptedField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_test_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_test_ok = models.BooleanField(null=True, editable=False)
    last_test_message = models.TextField(blank=True, editable=False)
    last_test_kind = models.CharField(max_length=16, blank=True, editable=False)  # a RemotingError kind, or "secret"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="hosts_host_name_unique",
                violation_error_message=gettext_lazy("A host with this name is already registered."),
            ),
            models.UniqueConstraint(
                fields=["address", "port"],
                name="hosts_host_endpoint_unique",
                violation_error_message=gettext_lazy("A host with this address and port is already registered."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # the default would be fine too; this one is explicit that no secret is shown
        return f"<Host {self.name} {self.address}:{self.port}>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.port:  # code paths that skip clean() (get_or_create) still get the transport's default
            self.port = DEFAULT_PORTS.get(self.transport, DEFAULT_PORTS["http"])
        super().save(*args, **kwargs)

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.transport}://{host}:{self.port}/wsman"

    @property
    def is_https(self) -> bool:
        return self.transport == Transport.HTTPS

    @property
    def skips_certificate_check(self) -> bool:
        return self.is_https and self.cert_check == CertCheck.NONE

    @property
    def uses_jea(self) -> bool:
        return self.configuration_name != DEFAULT_CONFIGURATION

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    def set_password(self, plaintext: str) -> None:
        self.password = seal_text(plaintext)

    def get_password(self) -> str:
        """The account's password; raises crypto.SecretError (naming the missing key, never the secret)."""
        return open_text(self.password, _("password of host %(host)s") % {"host": self.name})

    def clean(self) -> None:
        self.address = normalize_address(self.address)
        self.name = self.name.strip()
        self.configuration_name = self.configuration_name.strip() or DEFAULT_CONFIGURATION
        if not self.port and self.transport in DEFAULT_PORTS:
            self.port = DEFAULT_PORTS[self.transport]
        errors: dict[str, Any] = {}
        if self.auth == Auth.BASIC and self.transport != Transport.HTTPS:
            errors["auth"] = _("Basic authentication sends the password in the clear: use it only with HTTPS.")
        if self.auth == Auth.KERBEROS and _is_ip(self.address):
            errors["address"] = _("Kerberos needs the host's DNS name (its service principal), not an IP address.")
        if self.auth == Auth.KERBEROS and not kerberos_available():
            errors["auth"] = f"{KERBEROS_MISSING} {REMEDIES['kerberos']}"
        errors.update(self._clean_certificate_check())
        errors.update(self._clean_credssp())
        if errors:
            raise ValidationError(errors)

    def _clean_credssp(self) -> dict[str, str]:
        if self.auth != Auth.CREDSSP:
            return {}
        if self.transport != Transport.HTTPS:
            return {"auth": f"{CREDSSP_NEEDS_VERIFIED_HTTPS} {_('This host is set to plain HTTP.')}"}
        if self.cert_check == CertCheck.NONE:
            return {"cert_check": f"{CREDSSP_NEEDS_VERIFIED_HTTPS} {_('The certificate check is off.')}"}
        return {}

    def _clean_certificate_check(self) -> dict[str, str]:
        if self.transport != Transport.HTTPS:
            # No TLS, nothing to verify: drop leftovers so the host page does not suggest otherwise.
            self.cert_check, self.ca_bundle, self.fingerprint_sha256 = CertCheck.SYSTEM, "", ""
            return {}
        self.fingerprint_sha256 = normalize_fingerprint(self.fingerprint_sha256)
        if self.cert_check == CertCheck.CA_BUNDLE and not self.ca_bundle.strip():
            return {"ca_bundle": _("Paste or upload the CA certificate(s) that issued the host's certificate.")}
        if self.cert_check == CertCheck.FINGERPRINT and not self.fingerprint_sha256:
            return {"fingerprint_sha256": _("Enter the SHA-256 fingerprint of the host's certificate.")}
        if self.cert_check != CertCheck.CA_BUNDLE:
            self.ca_bundle = ""
        if self.cert_check != CertCheck.FINGERPRINT:
            self.fingerprint_sha256 = ""
        return {}

    def connection_spec(self) -> ConnectionSpec:
        return ConnectionSpec(
            address=self.address,
            port=self.port,
            https=self.is_https,
            auth=self.auth,
            username=self.username,
            password=self.get_password(),
            cert_check=self.cert_check,
            ca_bundle_pem=self.ca_bundle,
            fingerprint_sha256=self.fingerprint_sha256,
            label=self.name,
            configuration_name=self.configuration_name,
        )

    def record_test(self, ok: bool, message: str, kind: str = "") -> None:
        self.last_test_at = timezone.now()
        self.last_test_ok, self.last_test_message, self.last_test_kind = ok, message, "" if ok else kind
        # Only the test columns: a test must not look like an edit of the host.
        Host.objects.filter(pk=self.pk).update(
            last_test_at=self.last_test_at,
            last_test_ok=ok,
            last_test_message=message,
            last_test_kind=self.last_test_kind,
        )

    @property
    def last_test_headline(self) -> str:
        return _("connected") if self.last_test_ok else failure_headline(self.last_test_kind)

    @property
    def contact(self) -> Contact | None:
        """The newest of the last connection test and the last inventory refresh (None: never talked to)."""
        exchanges = []
        if self.last_test_at is not None:
            ok = bool(self.last_test_ok)
            exchanges.append(Contact(ok, self.last_test_at, VIA_TEST, self.last_test_kind, self.last_test_message))
        try:
            inventory = self.inventory  # type: ignore[attr-defined]  # the inventory app's one-to-one
        except (ObjectDoesNotExist, AttributeError):
            inventory = None
        if inventory is not None and inventory.refreshed_at is not None:
            exchanges.append(Contact(True, inventory.refreshed_at, VIA_REFRESH))
        if inventory is not None and inventory.stale and inventory.attempted_at is not None:
            exchanges.append(
                Contact(False, inventory.attempted_at, VIA_REFRESH, inventory.error_kind, inventory.last_error)
            )
        if not exchanges:
            return None
        latest = max(exchanges, key=lambda exchange: exchange.at)
        if latest.ok:
            return latest
        successes = [exchange.at for exchange in exchanges if exchange.ok]
        return Contact(False, latest.at, latest.via, latest.kind, latest.message, max(successes, default=None))


UNC_PATH = re.compile(r"^\\\\[A-Za-z0-9][A-Za-z0-9._-]*(\\[^\\/:*?\"<>|\x00-\x1f]+)+$")


def validate_unc(path: str) -> None:
    # A `.` or `..` folder would let the path leave the share it names once a VM's folder is joined to it.
    if not UNC_PATH.match(path) or {".", ".."} & set(path[2:].split("\\")):
        raise ValidationError(_("Give a UNC path: \\\\server\\share (a folder below it is fine)."))


class LabShare(models.Model):
    """A file share VMs may be exported through, and the hosts allowed to use it. Administrators name shares; an
    operator only chooses among them, so a job never sends a path somebody typed in a migration form."""

    path = models.CharField(gettext_lazy("UNC path"), max_length=260, unique=True, validators=[validate_unc])
    hosts = models.ManyToManyField(Host, related_name="lab_shares", blank=True)
    created = models.DateTimeField(default=timezone.now)
    # The share's own account (a local account of the host that serves it), for hosts whose session cannot pass its
    # credentials on (NTLM, a workgroup): the target maps the share with it. Sealed like a host's password.
    account = models.CharField(gettext_lazy("Share account"), max_length=200, blank=True)
    password = EncryptedField()

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path

    @property
    def has_credentials(self) -> bool:
        return bool(self.account and self.password)

    def set_password(self, plaintext: str) -> None:
        self.password = seal_text(plaintext)

    def get_password(self) -> str:
        """The share account's password; raises crypto.SecretError (naming the share, never the secret)."""
        return open_text(self.password, _("password of the share %(share)s") % {"share": self.path})

    @property
    def server(self) -> str:
        """The host part of \\\\server\\share."""
        return self.path.lstrip("\\").split("\\", 1)[0]

    @property
    def share_name(self) -> str:
        return self.path.lstrip("\\").split("\\")[1] if self.path.count("\\") >= 3 else ""

    @classmethod
    def offered_to(cls, *hosts: Host) -> list[str]:
        """The shares every one of the hosts may use; with no share registered at all, the deployment's
        LAB_SHARE setting (the share the console was configured with before shares were listed here)."""
        if not cls.objects.exists():
            return [str(getattr(settings, "LAB_SHARE", "\\\\LAB\\share"))]
        shares = cls.objects.all()
        for host in hosts:
            shares = shares.filter(hosts=host)
        return list(shares.values_list("path", flat=True))
