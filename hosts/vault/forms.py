"""Forms of the vault: uploading an existing PFX pair made by the well-known export script."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .pfx_limits import MAX_PFX_BYTES


class UploadPairForm(forms.Form):
    signing_pfx = forms.FileField(label="UntrustedGuardian-signing.pfx")
    encryption_pfx = forms.FileField(label="UntrustedGuardian-encryption.pfx")
    password = forms.CharField(
        label=gettext_lazy("PFX password"), widget=forms.PasswordInput(render_value=False), required=False, strip=False
    )
    guardian_name = forms.CharField(
        label=gettext_lazy("Guardian name (optional; read from the certificates when empty)"),
        max_length=200,
        required=False,
    )
    allow_expired = forms.BooleanField(
        label=gettext_lazy("Accept expired certificates (they still unlock VMs sealed to them)"), required=False
    )

    def clean_signing_pfx(self) -> bytes:
        return read_upload(self.cleaned_data["signing_pfx"], _("the signing file"))

    def clean_encryption_pfx(self) -> bytes:
        return read_upload(self.cleaned_data["encryption_pfx"], _("the encryption file"))


def read_upload(upload: object, label: str) -> bytes:
    size = getattr(upload, "size", 0) or 0
    if size > MAX_PFX_BYTES:
        raise forms.ValidationError(
            _("%(file)s is %(size)d bytes; a guardian PFX is a few kilobytes — not a PFX")
            % {"file": label, "size": size}
        )
    data = upload.read()  # type: ignore[attr-defined]
    if not data:
        raise forms.ValidationError(_("%(file)s is empty") % {"file": label})
    return bytes(data)
