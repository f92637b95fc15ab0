"""The notification pages: "My account → Notifications" for anyone who may read the console, and the team's
destinations with the delivery log for admins (those who manage users manage the team's settings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from console.roles import require

from .forms import DestinationForm, SubscriptionForm
from .models import EVENT_KINDS, DeliveryAttempt, Destination
from .subscriptions import (
    remove_destination,
    save_destination,
    save_subscription,
    subscription_of,
    test_destination,
)

LOG_ROWS = 100  # the latest attempts the admin page shows


def signed_in(request: HttpRequest) -> Any:
    """The signed-in user (`require` lets no anonymous request through)."""
    return request.user


@require("view_console")
@require_http_methods(["GET", "POST"])
def my_notifications(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    subscription = subscription_of(user)
    initial = {"email": user.email, "kinds": subscription.kinds, "mode": subscription.mode}
    form = SubscriptionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        save_subscription(user, **form.cleaned_data)
        messages.success(request, _("Your notifications are saved."))
        return redirect("notifications:mine")
    context = {"form": form, "digest_hours": settings.NOTIFY_DIGEST_HOURS}
    return render(request, "notifications/mine.html", context, status=400 if form.errors else 200)


@require("manage_users")
@require_http_methods(["GET", "POST"])
def team_notifications(request: HttpRequest) -> HttpResponse:
    form = DestinationForm(request.POST or None, initial={"kinds": EVENT_KINDS})
    if request.method == "POST" and form.is_valid():
        destination = save_destination(request.user, None, form.cleaned_data)
        messages.success(request, _("Destination %(name)s added.") % {"name": destination})
        return redirect("notifications:team")
    context = {"form": form, "destinations": Destination.objects.all(), "log": DeliveryAttempt.objects.all()[:LOG_ROWS]}
    return render(request, "notifications/team.html", context, status=400 if form.errors else 200)


@require("manage_users")
@require_http_methods(["GET", "POST"])
def destination_edit(request: HttpRequest, pk: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=pk)
    initial = {key: getattr(destination, key) for key in ("name", "type", "kinds", "enabled")}
    form = DestinationForm(request.POST or None, instance=destination, initial=initial)
    if request.method == "POST" and form.is_valid():
        save_destination(request.user, destination, form.cleaned_data)
        messages.success(request, _("Destination %(name)s saved.") % {"name": destination})
        return redirect("notifications:team")
    context = {"form": form, "destination": destination}
    return render(request, "notifications/destination.html", context, status=400 if form.errors else 200)


@require("manage_users")
@require_POST
def destination_delete(request: HttpRequest, pk: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=pk)
    remove_destination(request.user, destination)
    messages.success(request, _("Destination %(name)s removed.") % {"name": destination})
    return redirect("notifications:team")


@require("manage_users")
@require_POST
def destination_test(request: HttpRequest, pk: int) -> HttpResponse:
    destination = get_object_or_404(Destination, pk=pk)
    test_destination(request.user, destination)
    messages.success(
        request, _("A test message to %(name)s is on its way: see the delivery log.") % {"name": destination}
    )
    return redirect("notifications:team")
