"""The recovery kit's download page: an admin (second factor passed) chooses a passphrase and takes the kit."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from console.models import AuditEvent
from console.roles import require
from hosts.vault.recovery_kit import MIN_PASSPHRASE, check_passphrase

from .kit import build, file_name


def passphrase_help() -> str:
    """Made when the form is shown, in its reader's language (ngettext_lazy % {...} would translate at import)."""
    return ngettext(
        "At least %(n)d character, not a common password. The console does not keep it: without it the kit "
        "cannot be opened.",
        "At least %(n)d characters, not a common password. The console does not keep it: without it the kit "
        "cannot be opened.",
        MIN_PASSPHRASE,
    ) % {"n": MIN_PASSPHRASE}


class PassphraseForm(forms.Form):
    passphrase = forms.CharField(
        label=gettext_lazy("Passphrase"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "minlength": MIN_PASSPHRASE}),
        help_text=lazy(passphrase_help, str)(),
    )
    repeat = forms.CharField(label=gettext_lazy("The passphrase again"), strip=False, widget=forms.PasswordInput)

    def clean(self) -> dict[str, str]:
        data = super().clean() or {}
        passphrase = data.get("passphrase", "")
        if passphrase and passphrase != data.get("repeat"):
            raise ValidationError(_("The two passphrases differ."))
        if passphrase:
            try:
                check_passphrase(passphrase)
            except ValidationError as exc:
                self.add_error("passphrase", exc)
        return data


@sensitive_post_parameters("passphrase", "repeat")
@never_cache
@require("download_vault")
@require_http_methods(["GET", "POST"])
def recovery_kit_download(request: HttpRequest) -> HttpResponse:
    """GET: what the kit holds and the passphrase form. POST: the kit itself, audited (never the passphrase)."""
    form = PassphraseForm(request.POST or None)
    if request.method != "POST" or not form.is_valid():
        return render(request, "vault/recovery_kit.html", {"form": form})
    kit = build(form.cleaned_data["passphrase"])
    AuditEvent.record(request.user, "vault.recovery_kit", guardians=kit.guardians, left_out=kit.skipped)
    response = HttpResponse(kit.data, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{file_name(timezone.now())}"'
    return response
