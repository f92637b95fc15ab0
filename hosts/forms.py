"""The host registration form: the model validates, the form handles the password and the CA-bundle upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import DEFAULT_CONFIGURATION, DEFAULT_PORTS, Auth, CertCheck, Host, Transport
from .remoting.connection import kerberos_available

PASSWORD_KEPT = gettext_lazy("•••••••• stored — leave empty to keep it")  # noqa: S105 (a placeholder, not a password)
MAX_CA_BUNDLE_BYTES = 256 * 1024
# What the choices mean on a console without python-gssapi (its `kerberos` extra), so nobody picks a dead end.
# The risk of CredSSP, said where the choice is made (the prepare page says it again with the host's steps).
CREDSSP_RISK = gettext_lazy(
    "CredSSP hands the host the account's reusable password: that is what lets the host reach the lab share and "
    "the other host of a migration (the second hop), and whoever controls the host can take it. Use a dedicated "
    "account for the console, only over HTTPS with a verified certificate, and turn on the host's CredSSP server "
    "role (Enable-WSManCredSSP -Role Server, on the prepare page)."
)
WITHOUT_KERBEROS: dict[str, str | Promise] = {
    Auth.NEGOTIATE: gettext_lazy("Negotiate (NTLM here: Kerberos is not installed on this console)"),
    Auth.KERBEROS: gettext_lazy("Kerberos (not installed on this console: see the README)"),
}


class HostForm(forms.ModelForm):  # type: ignore[type-arg]
    """Register or edit a host. The stored password is never rendered back: leaving the field empty keeps it."""

    password = forms.CharField(
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label=gettext_lazy("Password"),
        help_text=gettext_lazy("Password of the account above; stored encrypted and never shown again."),
    )
    ca_bundle_file = forms.FileField(
        label=gettext_lazy("…or upload the CA bundle (PEM file)"),
        required=False,
        help_text=gettext_lazy("Replaces the text above."),
    )

    class Meta:
        model = Host
        fields = [
            "name",
            "address",
            "transport",
            "port",
            "auth",
            "cert_check",
            "ca_bundle",
            "fingerprint_sha256",
            "username",
            "configuration_name",
        ]
        widgets = {
            "transport": forms.RadioSelect,
            "cert_check": forms.RadioSelect,
            "ca_bundle": forms.Textarea(attrs={"rows": 5, "class": "mono", "spellcheck": "false"}),
            "fingerprint_sha256": forms.TextInput(attrs={"class": "mono", "spellcheck": "false"}),
            "username": forms.TextInput(attrs={"autocomplete": "off", "placeholder": r"LAB\hvadmin"}),
            "configuration_name": forms.TextInput(attrs={"class": "mono", "spellcheck": "false"}),
        }
        help_texts = {"auth": CREDSSP_RISK}
        # The fields whose model column has no verbose name of its own (a label from the field name is not translated).
        labels = {
            "address": gettext_lazy("Address"),
            "transport": gettext_lazy("Transport"),
            "port": gettext_lazy("Port"),
            "username": gettext_lazy("Username"),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Empty means the default endpoint, so forms posted before this field existed (and scripts) keep working.
        self.fields["configuration_name"].required = False
        if self.instance.has_password:
            self.fields["password"].widget.attrs["placeholder"] = PASSWORD_KEPT
        else:
            self.fields["password"].required = True
        if not kerberos_available():
            auth = self.fields["auth"]
            assert isinstance(auth, forms.ChoiceField)
            auth.choices = [(value, WITHOUT_KERBEROS.get(value, label)) for value, label in Auth.choices]

    def clean_ca_bundle(self) -> str:
        value = str(self.cleaned_data.get("ca_bundle", ""))
        if "PRIVATE KEY-----" in value:
            self.data = {**self.data.dict(), "ca_bundle": ""}  # type: ignore[attr-defined]  # never echo a key back
            raise forms.ValidationError(
                _("This text contains a private key. Paste only the CA certificate(s), never a key.")
            )
        return value

    def clean_configuration_name(self) -> str:
        return str(self.cleaned_data.get("configuration_name") or "").strip() or DEFAULT_CONFIGURATION

    def clean_ca_bundle_file(self) -> str:
        upload = self.cleaned_data.get("ca_bundle_file")
        if not upload:
            return ""
        if upload.size > MAX_CA_BUNDLE_BYTES:
            raise forms.ValidationError(_("A CA bundle is a few kilobytes; this file is too large."))
        try:
            return str(upload.read().decode("ascii"))
        except UnicodeDecodeError:
            raise forms.ValidationError(_("Upload the bundle in PEM form (text), not DER or PFX.")) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("ca_bundle_file"):
            cleaned["ca_bundle"] = cleaned["ca_bundle_file"]
        # Switching transport on edit while the port is still the old transport's default means "the new default".
        before, after = self.initial.get("transport"), cleaned.get("transport")
        if before and after and before != after and cleaned.get("port") == DEFAULT_PORTS.get(before):
            cleaned["port"] = DEFAULT_PORTS[after]
        self._refuse_basic_without_certificate_check(cleaned)
        return cleaned

    def _refuse_basic_without_certificate_check(self, cleaned: dict[str, Any]) -> None:
        # Basic sends the password itself; over TLS that nobody verifies, whoever sits on the path reads it.
        basic = cleaned.get("auth") == Auth.BASIC
        if basic and cleaned.get("transport") == Transport.HTTPS and cleaned.get("cert_check") == CertCheck.NONE:
            self.add_error(
                "cert_check",
                _(
                    "Basic authentication sends the password itself: with the certificate unchecked, anyone on the "
                    "path can read it. Pin the host's SHA-256 fingerprint or upload its CA bundle, or use Negotiate or "
                    "NTLM."
                ),
            )

    def save(self, commit: bool = True) -> Host:
        host: Host = super().save(commit=False)
        if self.cleaned_data.get("password"):
            host.set_password(self.cleaned_data["password"])
        if commit:
            host.save()
        return host

    def changed_fields(self) -> list[str]:
        """Names of what an edit changed, for the audit trail (names only, never values)."""
        # After save: a blank port that became the same default again is no change.
        changed = [
            name
            for name in self.changed_data
            if name not in ("password", "ca_bundle_file") and self.initial.get(name) != getattr(self.instance, name)
        ]
        if self.cleaned_data.get("password"):
            changed.append("credentials")
        return changed

    @property
    def insecure_choice(self) -> str:
        return CertCheck.NONE.value
