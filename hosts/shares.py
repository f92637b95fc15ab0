"""Lab shares: the admin page that names the file shares VMs may be exported through, and which hosts may use each.

Administrators own this list (manage_hosts); the migration wizard offers only these shares. Every change is audited.
A share may carry its own account (a local account of the host serving it): the workgroup method maps the share
with it from the target, as a PSCredential. The password is sealed like a host's and never shown or audited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from console.models import AuditEvent
from console.params import RowsField
from console.roles import require

from .models import Host, LabShare


class LabShareForm(forms.ModelForm):  # type: ignore[type-arg]
    hosts = RowsField(Host.objects.order_by("name"), label=gettext_lazy("Hosts"), widget=forms.CheckboxSelectMultiple)
    # For a share served by a source host in a workgroup: the target maps it with this account (never shown again).
    password = forms.CharField(
        label=gettext_lazy("Share account's password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = LabShare
        fields = ["path", "hosts", "account"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if bool(cleaned.get("account")) != bool(cleaned.get("password")):
            raise forms.ValidationError(_("Give the share account and its password together, or neither."))
        return cleaned

    def save(self, commit: bool = True) -> LabShare:
        share: LabShare = super().save(commit=False)
        share.set_password(self.cleaned_data.get("password") or "")
        if commit:
            share.save()
            self.save_m2m()
        return share


@require("manage_hosts")
@require_http_methods(["GET", "POST"])
def share_list(request: HttpRequest) -> HttpResponse:
    form = LabShareForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            share = form.save()
            hosts = sorted(h.name for h in share.hosts.all())
            AuditEvent.record(request.user, "share.create", share, path=share.path, hosts=hosts, account=share.account)
        messages.success(request, _("Lab share %(share)s added.") % {"share": share})
        return redirect("hosts:shares")
    shares = LabShare.objects.prefetch_related("hosts")
    return render(request, "hosts/shares.html", {"form": form, "shares": shares})


@require("manage_hosts")
@require_POST
def share_delete(request: HttpRequest, pk: int) -> HttpResponse:
    share = get_object_or_404(LabShare, pk=pk)
    with transaction.atomic():
        AuditEvent.record(request.user, "share.delete", share, path=share.path)
        share.delete()
    messages.success(request, _("Lab share %(share)s removed.") % {"share": share.path})
    return redirect("hosts:shares")
