"""Users and roles, managed by admins in the console: create a user with a role, change a role, deactivate.

Routed under /users/ by console/urls.py. An admin cannot take away their own admin role or deactivate themselves,
nobody can deactivate or demote the superuser here, and the last active admin stays one: so the console always
keeps someone who can manage it. Admins also lift login lockouts here (django-axes, console/accounts.py), and reset
the two-factor of someone who lost their phone (console/two_factor.py). The role of a user who signs in through
single sign-on follows their groups there at their next login (console/sso.py).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, password_validation
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from .accounts import lockouts, unlock, wait_text
from .models import AuditEvent, PasswordChangeRequired
from .roles import ADMIN, require, role_of, role_title, set_role
from .two_factor import forget_devices, has_two_factor

NO_ROLE = "none"
ROLE_CHOICES = [
    ("viewer", gettext_lazy("viewer — reads everything, changes nothing")),
    ("operator", gettext_lazy("operator — also runs non-destructive jobs")),
    ("admin", gettext_lazy("admin — also manages hosts, credentials, users and destructive jobs")),
    (NO_ROLE, gettext_lazy("no role — can log in but sees nothing")),
]


class UserCreateForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("Username"), max_length=150)
    password = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    role = forms.ChoiceField(
        label=gettext_lazy("Role"), choices=ROLE_CHOICES, initial="viewer", widget=forms.RadioSelect
    )
    must_change_password = forms.BooleanField(
        label=gettext_lazy("Must choose a new password at first login"), required=False, initial=True
    )

    def clean_username(self) -> str:
        username = str(self.cleaned_data["username"]).strip()
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            validator(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("A user with this name already exists."))
        return username

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password") and cleaned.get("username"):
            user = get_user_model()(username=cleaned["username"])
            try:
                password_validation.validate_password(cleaned["password"], user)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class UserEditForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=ROLE_CHOICES, widget=forms.RadioSelect)
    is_active = forms.BooleanField(label=gettext_lazy("Active (may log in)"), required=False)
    new_password = forms.CharField(
        label=gettext_lazy("New password"),
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Leave empty to keep the current password."),
    )
    must_change_password = forms.BooleanField(
        label=gettext_lazy("Must choose a new password at next login"), required=False
    )

    def __init__(self, *args: Any, user: Any, editor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user, self.editor = user, editor

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.user.pk == self.editor.pk and (cleaned.get("role") != ADMIN or not cleaned.get("is_active")):
            raise forms.ValidationError(_("You cannot take away your own admin role or deactivate yourself."))
        if self.user.is_superuser and cleaned.get("role") != ADMIN:
            self.add_error("role", _("This is a superuser (admin by definition); change it with manage.py."))
        if self.user.is_superuser and self.user.is_active and not cleaned.get("is_active"):
            self.add_error("is_active", _("This is the superuser: it cannot be deactivated here (use manage.py)."))
        if cleaned.get("new_password"):
            try:
                password_validation.validate_password(cleaned["new_password"], self.user)
            except forms.ValidationError as error:
                self.add_error("new_password", error)
        return cleaned


def apply_role(user: Any, role: str) -> None:
    if role == NO_ROLE:
        user.groups.clear()
    else:
        set_role(user, role)


def active_admins() -> Any:
    """Users who can manage the console now: active, with the admin role or superusers."""
    return get_user_model().objects.filter(Q(is_superuser=True) | Q(groups__name=ADMIN), is_active=True).distinct()


def leaves_no_admin(subject: Any, data: dict[str, Any]) -> bool:
    """Would this edit take away the last active admin? Call inside the transaction that applies it: the admin rows
    are locked, so two admins demoting each other at once cannot both succeed."""
    stays_admin = data["role"] == ADMIN and data["is_active"]
    if stays_admin or not active_admins().filter(pk=subject.pk).exists():
        return False
    others = get_user_model().objects.select_for_update().filter(pk__in=active_admins().values("pk"))
    return not others.exclude(pk=subject.pk).exists()


@require("manage_users")
def user_list(request: HttpRequest) -> HttpResponse:
    users = get_user_model().objects.order_by("username").prefetch_related("groups").select_related("external_account")
    locked, enrolled = lockouts("username"), has_two_factor()
    rows = [
        (user, role_of(user) or NO_ROLE, lock_wait(locked, user.get_username()), user.pk in enrolled) for user in users
    ]
    addresses = sorted((address, wait_text(ends)) for address, ends in lockouts("ip_address").items())
    return render(request, "console/users.html", {"rows": rows, "locked_addresses": addresses})


def lock_wait(locked: dict[str, Any], username: str) -> str:
    return wait_text(locked[username]) if username in locked else ""


@require("manage_users")
@require_POST
def user_unlock(request: HttpRequest, pk: int) -> HttpResponse:
    """Lift the login lockout of a user name (its failed logins are forgotten)."""
    subject = get_object_or_404(get_user_model(), pk=pk)
    unlock(request.user, username=subject.get_username())
    messages.success(request, _("%(name)s can log in again.") % {"name": subject.get_username()})
    return redirect("users:list")


@require("manage_users")
@require_POST
def two_factor_reset(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget a user's authenticator app and recovery codes (a lost phone): they set two-factor up again."""
    subject = get_object_or_404(get_user_model(), pk=pk)
    with transaction.atomic():
        forget_devices(subject)
        AuditEvent.record(request.user, "two_factor.reset", subject)
    messages.success(
        request, _("The two-factor of %(name)s is reset: they set it up again.") % {"name": subject.get_username()}
    )
    return redirect("users:list")


class AddressForm(forms.Form):
    address = forms.GenericIPAddressField(label=gettext_lazy("Address"))


@require("manage_users")
@require_POST
def address_unlock(request: HttpRequest) -> HttpResponse:
    """Lift the login lockout of an address."""
    form = AddressForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("That is not an IP address."))
        return redirect("users:list")
    unlock(request.user, address=form.cleaned_data["address"])
    messages.success(
        request, _("Logins from %(address)s are accepted again.") % {"address": form.cleaned_data["address"]}
    )
    return redirect("users:list")


@sensitive_post_parameters("password")
@require("manage_users")
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with transaction.atomic():
            user = get_user_model().objects.create_user(data["username"], password=data["password"])
            apply_role(user, data["role"])
            PasswordChangeRequired.set_for(user, data["must_change_password"])
            AuditEvent.record(request.user, "user.create", user, role=data["role"])
        messages.success(
            request,
            _("User %(name)s created as %(role)s.") % {"name": user.get_username(), "role": role_title(data["role"])},
        )
        return redirect("users:list")
    return render(request, "console/users_form.html", {"form": form, "subject": None})


@sensitive_post_parameters("new_password")
@require("manage_users")
@require_http_methods(["GET", "POST"])
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    subject = get_object_or_404(get_user_model(), pk=pk)
    before = {
        "role": role_of(subject) or NO_ROLE,
        "is_active": subject.is_active,
        "must_change_password": PasswordChangeRequired.applies_to(subject),
    }
    form = UserEditForm(request.POST or None, initial=before, user=subject, editor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if leaves_no_admin(subject, form.cleaned_data):
                name = subject.get_username()
                form.add_error(
                    None, _("%(name)s is the last active admin: make another user admin first.") % {"name": name}
                )
            else:
                _apply_edit(request, subject, before, form.cleaned_data)
        if form.is_valid():
            messages.success(request, _("User %(name)s saved.") % {"name": subject.get_username()})
            return redirect("users:list")
    return render(request, "console/users_form.html", {"form": form, "subject": subject})


def _apply_edit(request: HttpRequest, subject: Any, before: dict[str, Any], data: dict[str, Any]) -> None:
    if data["role"] != before["role"]:
        apply_role(subject, data["role"])
        AuditEvent.record(request.user, "user.role_change", subject, role_from=before["role"], role_to=data["role"])
    if data["is_active"] != before["is_active"]:
        subject.is_active = data["is_active"]
        subject.save(update_fields=["is_active"])
        AuditEvent.record(request.user, "user.activate" if subject.is_active else "user.deactivate", subject)
    if data.get("new_password"):
        subject.set_password(data["new_password"])
        subject.save(update_fields=["password"])
        AuditEvent.record(request.user, "user.password_reset", subject)
    if data["must_change_password"] != before["must_change_password"]:
        PasswordChangeRequired.set_for(subject, data["must_change_password"])
        AuditEvent.record(request.user, "user.must_change_password", subject, required=data["must_change_password"])
