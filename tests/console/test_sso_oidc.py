"""Single sign-on through OpenID Connect, against a real provider process (tests/oidc_provider/, django-oauth-toolkit)
with the Django test client as the browser: users are created at their first sign-in with the role of their groups,
the role follows the groups at every sign-in, and a wrong state or nonce, a person in no mapped group or a local
account's name is refused with a clear message — audited, with no secret in the audit trail or the logs."""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from console import sso
from console.models import AuditEvent, ExternalAccount
from console.roles import ROLE_NAMES, role_of
from tests.plugins.oidc_provider import Provider
from tests.plugins.sso import console_settings, oidc_callback

pytestmark = pytest.mark.django_db


def messages_after(response: Any) -> str:
    """The login page the refused sign-in ended on, as text."""
    return html.unescape(response.content.decode())


def signed_in_as(client: Client) -> str:
    page = client.get("/")
    return page.wsgi_request.user.get_username() if page.status_code == 200 else ""


def test_the_login_page_offers_the_provider(oidc_settings: Provider) -> None:
    page = Client().get("/login/?next=/vms/")
    assert 'id="oidc-sign-in" href="/oidc/authenticate/?next=/vms/"' in page.content.decode()
    assert "Sign in with Test IdP" in page.content.decode()


def test_first_sign_in_creates_the_user_with_the_role_of_their_groups(oidc_settings: Provider) -> None:
    client = Client()
    response = oidc_callback(client, oidc_settings, "alice")
    assert response.status_code == 302 and response["Location"] == "/", response
    alice = get_user_model().objects.get(username="alice")
    assert role_of(alice) == "admin" and not alice.has_usable_password()
    assert alice.email == "alice@provider.test"
    assert signed_in_as(client) == "alice"
    link = ExternalAccount.objects.get(user=alice)
    assert link.source == "oidc" and link.subject == link.subject.strip() and link.subject
    actions = list(AuditEvent.objects.filter(user=alice).order_by("id").values_list("action", flat=True))
    assert actions == ["user.create", "user.role_change", "login"]
    assert AuditEvent.objects.get(user=alice, action="login").detail["via"] == "oidc"


def test_sign_in_returns_to_the_page_asked_for(oidc_settings: Provider) -> None:
    client = Client()  # the button carries the login page's ?next=
    response = oidc_callback(client, oidc_settings, "carol", start_at="/oidc/authenticate/?next=/vms/")
    assert response["Location"] == "/vms/"
    assert role_of(get_user_model().objects.get(username="carol")) == "viewer"


def test_a_group_change_at_the_provider_changes_the_role_at_the_next_login(oidc_settings: Provider) -> None:
    oidc_callback(Client(), oidc_settings, "bob")
    bob = get_user_model().objects.get(username="bob")
    assert role_of(bob) == "operator"
    oidc_settings.set_groups("bob", ["gc-admins", "gc-view"])
    try:
        oidc_callback(Client(), oidc_settings, "bob")
        assert role_of(bob) == "admin"  # the highest role among the groups
        change = AuditEvent.objects.filter(action="user.role_change", object_id=str(bob.pk)).first()
        assert change is not None and change.detail == {
            "role_from": "operator",
            "role_to": "admin",
            "by": "oidc groups",
        }
    finally:
        oidc_settings.set_groups("bob", ["gc-ops"])


def test_someone_in_no_mapped_group_is_refused_and_not_created(oidc_settings: Provider) -> None:
    client = Client()
    response = oidc_callback(client, oidc_settings, "dave")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert str(sso.NO_GROUP) in messages_after(client.get("/login/"))
    assert not get_user_model().objects.filter(username="dave").exists()
    failed = AuditEvent.objects.get(action="login.failed")
    assert failed.detail["reason"] == str(sso.NO_GROUP)


def test_losing_every_group_takes_the_role_away_and_refuses_the_login(oidc_settings: Provider) -> None:
    oidc_callback(Client(), oidc_settings, "carol")
    carol = get_user_model().objects.get(username="carol")
    oidc_settings.set_groups("carol", [])
    try:
        client = Client()
        oidc_callback(client, oidc_settings, "carol")
        assert role_of(carol) == "" and signed_in_as(client) == ""
    finally:
        oidc_settings.set_groups("carol", ["gc-view"])


def test_a_local_account_of_the_same_name_is_not_taken_over(oidc_settings: Provider, admin: Any) -> None:
    client = Client()
    oidc_callback(client, oidc_settings, "ada")  # "ada" at the provider; the local admin is also "ada"
    assert signed_in_as(client) == ""
    assert sso.NAME_TAKEN.format(name="ada") in messages_after(client.get("/login/"))
    assert not ExternalAccount.objects.filter(user=admin).exists()


def test_a_wrong_state_is_refused_with_a_clear_message(oidc_settings: Provider) -> None:
    client = Client()
    client.get("/oidc/authenticate/")
    response = client.get("/oidc/callback/", {"code": "any-code", "state": "not-the-state-we-sent"}, follow=True)
    assert response.redirect_chain[-1][0] == "/login/"
    assert "unknown or already used state" in messages_after(response)
    assert signed_in_as(client) == ""
    assert AuditEvent.objects.get(action="login.failed").detail["reason"] == str(sso.STALE)


def test_a_replayed_answer_is_refused(oidc_settings: Provider) -> None:
    client = Client()
    first = oidc_callback(client, oidc_settings, "carol")
    assert first["Location"] == "/"
    client.post("/logout/")
    again = client.get(first.wsgi_request.get_full_path(), follow=True)  # the same code and state once more
    assert "unknown or already used state" in messages_after(again)
    assert signed_in_as(client) == ""


def test_a_wrong_nonce_is_refused_with_a_clear_message(oidc_settings: Provider) -> None:
    client = Client()
    response = oidc_callback(
        client, oidc_settings, "alice", tamper=lambda url: re.sub(r"nonce=[^&]+", "nonce=someone-elses-nonce", url)
    )
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert str(sso.MISMATCH) in messages_after(client.get("/login/"))
    assert signed_in_as(client) == ""
    assert not get_user_model().objects.filter(username="alice").exists()
    assert AuditEvent.objects.get(action="login.failed").detail["reason"] == str(sso.MISMATCH)


def test_a_deactivated_user_is_logged_out_and_cannot_sign_in_again(oidc_settings: Provider) -> None:
    client = Client()
    oidc_callback(client, oidc_settings, "carol")
    get_user_model().objects.filter(username="carol").update(is_active=False)
    assert signed_in_as(client) == ""
    oidc_callback(client, oidc_settings, "carol")
    assert signed_in_as(client) == ""


def test_no_secret_reaches_the_audit_trail_or_the_logs(oidc_settings: Provider, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    client = Client()
    response = oidc_callback(client, oidc_settings, "alice")
    code = response.wsgi_request.GET["code"]
    oidc_callback(Client(), oidc_settings, "dave")
    audit = str(list(AuditEvent.objects.values_list("detail", flat=True)))
    for secret in (oidc_settings.client_secret, code, client.session.get("oidc_id_token", "no-token-kept")):
        assert secret not in audit
        assert secret not in caplog.text


def test_single_sign_on_is_off_unless_configured() -> None:
    response = Client().get("/oidc/authenticate/", follow=True)
    assert "Single sign-on is not configured" in messages_after(response)
    assert 'id="oidc-sign-in"' not in messages_after(response)


# --- settings -------------------------------------------------------------------------------------------------------


def test_settings_name_what_is_missing(oidc_provider: Provider) -> None:
    env = oidc_provider.console_env()
    del env["CONSOLE_OIDC_TOKEN_ENDPOINT"]
    with pytest.raises(ImproperlyConfigured, match="CONSOLE_OIDC_TOKEN_ENDPOINT is missing"):
        console_settings(**env)


def test_settings_refuse_a_mapping_that_is_not_role_colon_group(oidc_provider: Provider) -> None:
    env = {**oidc_provider.console_env(), "CONSOLE_OIDC_ROLE_GROUPS": "superuser:gc-admins"}
    with pytest.raises(ImproperlyConfigured, match="is not role:group"):
        console_settings(**env)


def test_the_client_secret_may_come_from_a_file(oidc_provider: Provider, tmp_path: Any) -> None:
    env = oidc_provider.console_env()
    secret_file = tmp_path / "secret"
    secret_file.write_text(env.pop("CONSOLE_OIDC_CLIENT_SECRET") + "\n")
    values = console_settings(**env, CONSOLE_OIDC_CLIENT_SECRET_FILE=str(secret_file))
    assert values["OIDC_RP_CLIENT_SECRET"] == oidc_provider.client_secret
    assert values["OIDC_ROLE_GROUPS"] == [("admin", "gc-admins"), ("operator", "gc-ops"), ("viewer", "gc-view")]
    assert values["AUTHENTICATION_BACKENDS"][-1] == "console.sso.OpenIDConnectBackend"


def test_the_settings_know_the_roles_of_console_roles() -> None:
    from django.conf import settings

    assert settings.ROLE_NAMES == ROLE_NAMES


def test_the_highest_role_among_the_groups_wins() -> None:
    mapping = [("viewer", "all-staff"), ("admin", "gc-admins"), ("operator", "gc-ops")]
    assert sso.role_for(["all-staff", "gc-ops"], mapping) == "operator"
    assert sso.role_for(["gc-admins", "all-staff"], mapping) == "admin"
    assert sso.role_for(["printers"], mapping) is None
