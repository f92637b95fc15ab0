"""Two-factor for admins (django-otp): an authenticator app's TOTP codes, and recovery codes for a lost phone.

CONSOLE_ADMIN_2FA says when the second factor is asked for (console.roles.needs_second_factor): before a destructive
job, a vault download or managing hosts or users. A session passes it once, on the verify page, and keeps it until it
ends. Setting up (enrolling) shows the secret as text and as a QR code drawn here (no outside service), and takes
effect once a code from the app proves it was copied; the recovery codes are shown once, then, and each works once.
"""

from __future__ import annotations

import base64
import io
import time
from binascii import unhexlify
from typing import Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key

from .accounts import client_detail
from .models import AuditEvent

RECOVERY_CODES = 10
ENROL_MINUTES = 15  # how long the secret shown on the set-up page may still be confirmed


# --- the user's devices ---------------------------------------------------------------------------------------------


def has_two_factor() -> set[int]:
    """The ids of users with a confirmed authenticator app (one query, for the Users page)."""
    return set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))


def app_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def new_recovery_codes(user: Any) -> list[str]:
    """Replace the user's recovery codes with fresh ones: returned to be shown once, stored for one use each."""
    device, _ = StaticDevice.objects.get_or_create(user=user, defaults={"name": "recovery codes", "confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def forget_devices(user: Any) -> None:
    """An admin's reset for someone who lost their phone and codes: they set two-factor up again."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


# --- enrolling --------------------------------------------------------------------------------------------------


def signed_key(user: Any, key: str) -> str:
    """The pending secret travels in the set-up form, signed for this user (nothing is stored until confirmed)."""
    return signing.dumps(key, salt=f"console.two_factor.enrol.{user.pk}")


def pending_key(user: Any, signed: str) -> str | None:
    try:
        key = signing.loads(signed, salt=f"console.two_factor.enrol.{user.pk}", max_age=ENROL_MINUTES * 60)
    except signing.BadSignature:
        return None
    return str(key)


def code_matches(key: str, code: str) -> int | None:
    """The time step at which `code` is the current TOTP code of `key` (one step of drift either way), or None."""
    if not code.isdigit():
        return None
    totp = TOTP(unhexlify(key.encode()))
    totp.time = time.time()
    return totp.t() if totp.verify(int(code), tolerance=1) else None


def enrol(user: Any, key: str, step: int) -> TOTPDevice:
    """Confirm the authenticator app; the code just used (step) cannot be used again."""
    with transaction.atomic():
        device = TOTPDevice.objects.create(user=user, name="authenticator app", key=key, confirmed=True, last_t=step)
        AuditEvent.record(user, "two_factor.enrol", None)
    return device


def qr_code(device: TOTPDevice) -> str:
    """The otpauth:// URL as an SVG QR code, in a data: URL (the Content-Security-Policy allows data: images)."""
    out = io.BytesIO()
    qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def setup_context(user: Any, key: str | None = None) -> dict[str, Any]:
    key = key or default_key()
    preview = TOTPDevice(user=user, key=key)
    return {
        "secret": grouped(base64.b32encode(preview.bin_key).decode()),
        "qr_code": qr_code(preview),
        "signed_key": signed_key(user, key),
    }


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )

    def clean_code(self) -> str:
        return str(self.cleaned_data["code"]).replace(" ", "").lower()


# --- pages ----------------------------------------------------------------------------------------------------------


def safe_next(request: HttpRequest, url: str | None) -> str:
    allowed = url_has_allowed_host_and_scheme(url, {request.get_host()}, require_https=request.is_secure())
    return url if url and allowed else reverse("dashboard")


def send_to_verify(request: HttpRequest, enrolled: bool) -> HttpResponse:
    """Where console.roles' SecondFactorRequired leads (from the 403 page): the verify page, or set-up first, then
    back to the page asked for (after a POST: the page the form was on)."""
    back = request.get_full_path() if request.method == "GET" else request.META.get("HTTP_REFERER")
    target = "two_factor_verify" if enrolled else "two_factor"
    messages.info(request, _("This needs your second factor (your authenticator app's code) first."))
    return redirect(f"{reverse(target)}?{urlencode({'next': safe_next(request, back)})}")


@sensitive_post_parameters("code", "signed_key")
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """My two-factor: set it up, or (in a verified session) replace the recovery codes."""
    if settings.ADMIN_2FA == "off":
        raise Http404("two-factor is off on this console")
    user, device = request.user, app_device(request.user)
    if device is None:
        return enrol_page(request)
    if request.method == "POST" and request.POST.get("action") == "new_codes":
        if not request.user.is_verified():  # type: ignore[union-attr]  # django-otp's OTPMiddleware
            return send_to_verify(request, enrolled=True)
        AuditEvent.record(user, "two_factor.recovery_codes", None, **client_detail(request))
        return render(request, "console/two_factor_codes.html", {"codes": new_recovery_codes(user)})
    verified = request.user.is_verified()  # type: ignore[union-attr]  # django-otp's OTPMiddleware
    context = {"device": device, "codes_left": recovery_codes_left(user), "verified": verified}
    return render(request, "console/two_factor.html", context)


def enrol_page(request: HttpRequest) -> HttpResponse:
    user, form = request.user, CodeForm(request.POST or None)
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    key = pending_key(user, request.POST.get("signed_key", "")) if request.method == "POST" else None
    if request.method == "POST" and form.is_valid():
        step = code_matches(key, form.cleaned_data["code"]) if key else None
        if step is not None:
            otp_login(request, enrol(user, key, step))  # type: ignore[arg-type]  # key is set when step is
            codes = new_recovery_codes(user)
            return render(request, "console/two_factor_codes.html", {"codes": codes, "next": next_url})
        form.add_error("code", _("That code does not match: check the app's clock and type the code it shows now."))
    context = {"form": form, "next": next_url, **setup_context(user, key)}
    return render(request, "console/two_factor.html", context)


@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """Pass the second factor for this session: a code from the app, or a recovery code (used up)."""
    if settings.ADMIN_2FA == "off":
        raise Http404("two-factor is off on this console")
    user, form = request.user, CodeForm(request.POST or None)
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["code"])  # django-otp throttles repeated failures per device
        if device is not None:
            otp_login(request, device)
            audit_verified(request, device)
            return redirect(next_url)
        AuditEvent.record(user, "two_factor.verify_failed", None, **client_detail(request))
        form.add_error("code", _("That code is not valid (or was used already). Wait for the next one and try again."))
    context = {"form": form, "next": next_url, "enrolled": app_device(user) is not None}
    return render(request, "console/two_factor_verify.html", context)


def audit_verified(request: HttpRequest, device: Any) -> None:
    if isinstance(device, StaticDevice):
        left = recovery_codes_left(request.user)
        messages.warning(
            request,
            ngettext(
                "You used a recovery code: %(left)d left. Make new ones on your two-factor page.",
                "You used a recovery code: %(left)d left. Make new ones on your two-factor page.",
                left,
            )
            % {"left": left},
        )
        AuditEvent.record(request.user, "two_factor.verify", None, method="recovery code", left=left)
    else:
        AuditEvent.record(request.user, "two_factor.verify", None, method="app", **client_detail(request))
