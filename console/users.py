"""Users and roles, managed by admins in the console: create a user with a role, change a role, deactivate.

Routed under /users/ by console/urls.py. An admin cannot take away their own admin role or deactivate themselves,
so the console always keeps someone who can manage it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, password_validation
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from .models import AuditEvent
from .roles import ADMIN, require, role_of, set_role

NO_ROLE = "none"
ROLE_CHOICES = [
    ("viewer", "viewer — reads everything, changes nothing"),
    ("operator", "operator — also runs non-destructive jobs"),
    ("admin", "admin — also manages hosts, credentials, users and destructive jobs"),
    (NO_ROLE, "no role — can log in but sees nothing"),
]


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="viewer", widget=forms.RadioSelect)

    def clean_username(self) -> str:
        username = str(self.cleaned_data["username"]).strip()
        field = get_user_model()._meta.get_field("username")
        for validator in field.validators:
            validator(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with this name already exists.")
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
    role = forms.ChoiceField(choices=ROLE_CHOICES, widget=forms.RadioSelect)
    is_active = forms.BooleanField(label="Active (may log in)", required=False)
    new_password = forms.CharField(
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current password.",
    )

    def __init__(self, *args: Any, user: Any, editor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user, self.editor = user, editor

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.user.pk == self.editor.pk and (cleaned.get("role") != ADMIN or not cleaned.get("is_active")):
            raise forms.ValidationError("You cannot take away your own admin role or deactivate yourself.")
        if self.user.is_superuser and cleaned.get("role") != ADMIN:
            self.add_error("role", "This is a superuser (admin by definition); change it with manage.py.")
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


@require("manage_users")
def user_list(request: HttpRequest) -> HttpResponse:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    rows = [(user, role_of(user) or NO_ROLE) for user in users]
    return render(request, "console/users.html", {"rows": rows})


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
            AuditEvent.record(request.user, "user.create", user, role=data["role"])
        messages.success(request, f"User {user.get_username()} created as {data['role']}.")
        return redirect("users:list")
    return render(request, "console/users_form.html", {"form": form, "subject": None})


@sensitive_post_parameters("new_password")
@require("manage_users")
@require_http_methods(["GET", "POST"])
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    subject = get_object_or_404(get_user_model(), pk=pk)
    before = {"role": role_of(subject) or NO_ROLE, "is_active": subject.is_active}
    form = UserEditForm(request.POST or None, initial=before, user=subject, editor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            _apply_edit(request, subject, before, form.cleaned_data)
        messages.success(request, f"User {subject.get_username()} saved.")
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
