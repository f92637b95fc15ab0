"""Forms of the vault: uploading an existing PFX pair made by the well-known export script."""

from __future__ import annotations

from django import forms

from .pfx_limits import MAX_PFX_BYTES


class UploadPairForm(forms.Form):
    signing_pfx = forms.FileField(label="UntrustedGuardian-signing.pfx")
    encryption_pfx = forms.FileField(label="UntrustedGuardian-encryption.pfx")
    password = forms.CharField(
        label="PFX password", widget=forms.PasswordInput(render_value=False), required=False, strip=False
    )
    guardian_name = forms.CharField(
        label="Guardian name (optional; read from the certificates when empty)", max_length=200, required=False
    )
    allow_expired = forms.BooleanField(
        label="Accept expired certificates (they still unlock VMs sealed to them)", required=False
    )

    def clean_signing_pfx(self) -> bytes:
        return read_upload(self.cleaned_data["signing_pfx"], "the signing file")

    def clean_encryption_pfx(self) -> bytes:
        return read_upload(self.cleaned_data["encryption_pfx"], "the encryption file")


def read_upload(upload: object, label: str) -> bytes:
    size = getattr(upload, "size", 0) or 0
    if size > MAX_PFX_BYTES:
        raise forms.ValidationError(f"{label} is {size} bytes; a guardian PFX is a few kilobytes — not a PFX")
    data = upload.read()  # type: ignore[attr-defined]
    if not data:
        raise forms.ValidationError(f"{label} is empty")
    return bytes(data)
