""" "My account → API tokens": make a token (its text shown this once) and revoke one. Any signed-in user, for
their own tokens only; a token's role is at most its owner's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from console.roles import ADMIN, ROLE_NAMES, ROLE_TITLES, role_of

from .models import ApiToken, TokenRefused, rank

MAX_DAYS = 365
UNVERIFIED = gettext_lazy(
    "This session has not passed the second factor, so the token does no admin work (destructive jobs, hosts, "
    "users). Verify two-factor first, then make another token for that."
)


class TokenForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=80,
        help_text=gettext_lazy("What the token is for, e.g. 'nightly escrow report'."),
    )
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=[(role, ROLE_TITLES[role]) for role in ROLE_NAMES])
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, initial=30, label=gettext_lazy("Valid for (days)"))

    def __init__(self, *args: object, owner_role: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        roles = self.fields["role"]
        assert isinstance(roles, forms.ChoiceField)
        roles.choices = [(role, ROLE_TITLES[role]) for role in ROLE_NAMES if rank(role) <= rank(owner_role)]
        roles.initial = owner_role


def owner(request: HttpRequest) -> Any:
    """The signed-in user (LoginRequiredMiddleware lets no anonymous request reach these pages)."""
    return request.user


def api_tokens(request: HttpRequest) -> HttpResponse:
    owner_role = role_of(request.user)
    form = TokenForm(request.POST or None, owner_role=owner_role)
    plain = ""
    if request.method == "POST" and form.is_valid():
        try:
            token, plain = ApiToken.issue(request.user, **form.cleaned_data)
        except TokenRefused as refusal:
            form.add_error("role", str(refusal))
        else:
            messages.success(request, _("Token %(token)s made: copy it now, it is not shown again.") % {"token": token})
            if not token.verified and settings.ADMIN_2FA != "off" and token.role == ADMIN:
                messages.warning(request, UNVERIFIED)
    tokens = ApiToken.objects.filter(user=owner(request))
    context = {"form": form, "tokens": tokens, "plain": plain, "role": owner_role}
    return render(request, "console/api_tokens.html", context, status=400 if form.errors else 200)


@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=owner(request))
    token.revoke(request.user)
    messages.success(request, _("Token %(token)s revoked.") % {"token": token})
    return redirect("api_tokens")
