"""The forms of the notification pages: one's own subscription, and a team destination.

A destination's URL and webhook secret are typed into password fields that never render a value: what was typed is
not sent back in a page, even when the form is shown again with an error, and a stored one is never shown at all
(left blank, the stored one is kept).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import URLValidator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import Destination, EventKind, Subscription

SECRET_INPUT = forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})


def kinds_field() -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=EventKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label=gettext_lazy("Tell me when"),
    )


class SubscriptionForm(forms.Form):
    email = forms.EmailField(
        label=gettext_lazy("E-mail address"), required=False, help_text=gettext_lazy("Your account's address.")
    )
    kinds = kinds_field()
    mode = forms.ChoiceField(
        label=gettext_lazy("Mode"), choices=Subscription.MODES, widget=forms.RadioSelect, initial=Subscription.IMMEDIATE
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kinds") and not cleaned.get("email"):
            self.add_error("email", _("Notifications go by e-mail: give your address, or tick no event."))
        return cleaned


class DestinationForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=80,
        help_text=gettext_lazy("How the delivery log and the pages name it, e.g. 'ops-chat'."),
    )
    type = forms.ChoiceField(
        label=gettext_lazy("Type"), choices=Destination.TYPES, widget=forms.RadioSelect, initial=Destination.WEBHOOK
    )
    url = forms.CharField(
        label=gettext_lazy("URL"),
        max_length=2000,
        required=False,
        widget=SECRET_INPUT,
        help_text=gettext_lazy(
            "A webhook's https:// address, or an apprise URL (e.g. slack://…, msteams://…, json://…). "
            "It may hold a token: it is stored encrypted and never shown again."
        ),
    )
    secret = forms.CharField(
        label=gettext_lazy("Signing secret"),
        max_length=200,
        required=False,
        strip=False,
        widget=SECRET_INPUT,
        help_text=gettext_lazy(
            "Webhooks only: the key of the HMAC-SHA256 signature the receiver checks. Stored encrypted."
        ),
    )
    kinds = kinds_field()
    enabled = forms.BooleanField(label=gettext_lazy("Enabled"), required=False, initial=True)

    def __init__(self, *args: Any, instance: Destination | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance
        if instance is not None:
            kept = _("Leave blank to keep the stored one (to %(shown)s).") % {"shown": instance.shown}
            self.fields["url"].help_text = kept
            self.fields["secret"].help_text = _("Leave blank to keep the stored one.") if instance.has_secret else ""

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        same = Destination.objects.filter(name__iexact=name)
        if (same.exclude(pk=self.instance.pk) if self.instance else same).exists():
            raise forms.ValidationError(_("Another destination has this name."))
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        url, kind = str(cleaned.get("url") or "").strip(), cleaned.get("type")
        if self.instance is None and not url:
            self.add_error("url", _("Give the URL to send to."))
        elif url and kind == Destination.WEBHOOK:
            self._check_webhook_url(url)
        elif url and kind == Destination.APPRISE and not apprise_knows(url):
            self.add_error("url", _("apprise does not know this kind of URL (see its list of services)."))
        needs_secret = self.instance is None or not self.instance.has_secret
        if kind == Destination.WEBHOOK and needs_secret and not cleaned.get("secret"):
            self.add_error("secret", _("A webhook needs a signing secret (the receiver checks the signature with it)."))
        cleaned["url"] = url
        return cleaned

    def _check_webhook_url(self, url: str) -> None:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except forms.ValidationError:
            self.add_error("url", _("A webhook's URL is an http:// or https:// address."))


def apprise_knows(url: str) -> bool:
    # Imported here: loading apprise's service plugins takes most of a second, paid when a URL is first checked.
    import apprise

    return bool(apprise.Apprise().add(url))
