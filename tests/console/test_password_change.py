"""A person changes their own password; the first admin's printed password (and one an admin hands out with "must
change") has to be changed before anything else."""

from __future__ import annotations

import io
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from console.management.commands.runconsole import Command as RunConsole
from console.models import AuditEvent, PasswordChangeRequired
from tests.plugins.users import PASSWORD

NEW = "my-own-long-passphrase-8812"


def change(client: Client, old: str, new: str) -> Any:
    return client.post(
        "/account/password/", {"old_password": old, "new_password1": new, "new_password2": new}, follow=True
    )


def logged_in(username: str, password: str) -> Client:
    client = Client()
    assert client.post("/login/", {"username": username, "password": password}).status_code == 302
    return client


def test_a_viewer_changes_their_password_from_my_account(viewer: Any) -> None:
    client = logged_in("vera", PASSWORD)
    assert 'href="/account/"' in client.get("/").content.decode()  # the top bar's My account
    assert 'href="/account/password/"' in client.get("/account/").content.decode()
    page = change(client, PASSWORD, NEW)
    assert page.redirect_chain[-1][0] == "/" and "Your password has been changed" in page.content.decode()
    assert client.get("/").status_code == 200  # still logged in
    assert Client().post("/login/", {"username": "vera", "password": NEW}).status_code == 302
    event = AuditEvent.objects.get(action="user.password_change")
    assert (event.username, event.detail["required"]) == ("vera", False)
    assert NEW not in str(event.detail) and PASSWORD not in str(event.detail)


def test_a_wrong_current_password_or_the_same_one_again_is_refused(viewer: Any) -> None:
    client = logged_in("vera", PASSWORD)
    assert "incorrect" in change(client, "not-my-password", NEW).content.decode()
    assert "different from the current one" in change(client, PASSWORD, PASSWORD).content.decode()
    assert not AuditEvent.objects.filter(action="user.password_change").exists()


def test_the_first_admin_of_make_run_must_change_the_printed_password_first(db: None) -> None:
    command = RunConsole(stdout=io.StringIO())
    printed = command.ensure_admin().split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert PasswordChangeRequired.applies_to(admin)

    client = logged_in("admin", printed)
    for page in ("/", "/hosts/", "/users/", "/jobs/"):
        response = client.get(page)
        assert (response.status_code, response["Location"]) == (302, "/account/password/"), page
    assert client.post("/users/new/", {"username": "x", "password": NEW, "role": "admin"}).status_code == 302
    assert not get_user_model().objects.filter(username="x").exists()  # redirected, not done
    form = client.get("/account/password/")
    assert form.status_code == 200 and "choose your own before going on" in form.content.decode()
    assert client.get("/static/console.css").status_code == 200

    change(client, printed, NEW)
    assert client.get("/").status_code == 200
    assert not PasswordChangeRequired.applies_to(admin)
    assert AuditEvent.objects.get(action="user.password_change").detail["required"] is True


def test_someone_who_must_change_may_still_log_out(viewer: Any) -> None:
    PasswordChangeRequired.set_for(viewer, True)
    client = logged_in("vera", PASSWORD)
    assert client.post("/logout/").status_code == 302
    assert client.get("/")["Location"].startswith("/login/")


def test_an_admin_hands_out_a_password_to_be_changed_at_first_login(admin_client: Client) -> None:
    admin_client.post(
        "/users/new/", {"username": "olga", "password": NEW, "role": "operator", "must_change_password": "on"}
    )
    olga = get_user_model().objects.get(username="olga")
    assert PasswordChangeRequired.applies_to(olga)
    assert logged_in("olga", NEW).get("/")["Location"] == "/account/password/"
    # Unticked on her page: she is not asked any more; ticked again: she is, from her next login.
    admin_client.post(f"/users/{olga.pk}/", {"role": "operator", "is_active": "on"})
    assert not PasswordChangeRequired.applies_to(olga)
    admin_client.post(f"/users/{olga.pk}/", {"role": "operator", "is_active": "on", "must_change_password": "on"})
    assert PasswordChangeRequired.applies_to(olga)
    assert AuditEvent.objects.filter(action="user.must_change_password").count() == 2


def test_the_test_suites_users_are_not_asked_to_change_anything(viewer: Any) -> None:
    assert logged_in("vera", PASSWORD).get("/").status_code == 200
