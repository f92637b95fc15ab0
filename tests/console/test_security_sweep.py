"""Security sweep over every URL and websocket route of the project, for every role.

The routes are not listed by hand: they are read from the project's URL resolver (and the websocket router), and
their path converters are filled with ids of real rows, so a page someone adds tomorrow is swept too. What every
route must do:
- anonymous: sent to the login page (only the login page, static files and their translations are public); the
  REST API answers 401;
- a user without a role, or with a role lacking the view's permission (read from its `console.roles.require`): 403,
  or 405 for a view that does not answer that method at all — never the page, never a 500;
- a role with the permission: the page (or a redirect, or 405 for POST-only views) — never 403, 404 or 500,
  and a GET changes nothing in the database;
- a POST without a CSRF token: 403, for every route;
- PUT, PATCH and DELETE, for every role: what the permission says (403/405 or the login page for those without it),
  never a 500, and the database unchanged — no view treats another method as a POST;
- websockets: every role from the console's own Origin gets in as its permission says (anonymous and role-less never),
  nobody from a foreign Origin;
- every field of every form, filled with hostile values one at a time, as an admin: never a 500, never reflected raw;
- the REST API, for every role and method, with a personal token of that role: 401, 403 or 405 as the view's
  permission map (method → permission) says, the permitted answer otherwise, never a 500.
Last, a host password, a vault pair's PFX password, private-key PEM markers, and a notification destination's URL
token and webhook signing secret appear on no page.

Each case records what it exercised (`record_property("exercised", …)`: what, route, role, method), which
benchmarks/security_matrix.py counts for the closing figures.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from api.models import ApiToken
from console.models import AuditEvent
from console.roles import ROLE_PERMISSIONS, set_role
from hosts.models import Host
from jobs.kinds import get_kind
from jobs.models import Job, JobLogLine

ROLES = ("anonymous", "nobody", "viewer", "operator", "admin")
# Single sign-on's steps: they send the browser on (to the provider, back to the login page), never show a page.
SIGN_IN_STEPS = {"oidc_authentication_init", "oidc_authentication_callback"}
# Reachable without login by design; the scripts' translations (/jsi18n/) are as public as the scripts themselves.
PUBLIC = {"login", "logout", "static", "javascript-catalog", *SIGN_IN_STEPS}
# One's own account: for anyone logged in, whatever their role.
SELF_SERVICE = {
    "password_change",
    "two_factor",
    "two_factor_verify",
    "api_tokens",
    "api_token_revoke",
    "my_account",
    "browser_time_zone",
}
API_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HOST_PASSWORD = "Sweep-Host-Passw0rd!x91"  # noqa: S105
PFX_PASSWORD = "Sweep-Pfx-Passw0rd!k27"  # noqa: S105
WEBHOOK_TOKEN = "Sweep-Hook-Token-q81z"  # noqa: S105 - in the webhook's URL path, as chat webhooks carry theirs
WEBHOOK_SECRET = "Sweep-Hook-Signing-w55c"  # noqa: S105
GUESSED_ROUTES: set[str] = set()  # routes whose <int:...> id the sweep had to guess (see World.object_for)
PRIVATE_KEY_MARKERS = ("PRIVATE KEY-----", "BEGIN RSA PRIVATE", "BEGIN ENCRYPTED PRIVATE")

# Known findings in other engineers' areas: (route name, role or check) -> reason. Each is filed in
# /tmp/team/requests.md; the case is xfail(strict=True) so it turns red the moment it is fixed, and is then removed.
KNOWN_FINDINGS: dict[tuple[str, str], str] = {}


# --- the routes ---------------------------------------------------------------------------------------------------


def sweep_urlpatterns() -> list[Any]:
    """The project's URLs (the workflows' pages included, by console/urls.py)."""
    from console.urls import urlpatterns as root

    return list(root)


@dataclass(frozen=True)
class Route:
    name: str  # "hosts:detail"; "static" for the static files pattern
    pattern: str  # the full pattern as written, e.g. "hosts/<int:pk>/edit/"
    callback: Callable[..., Any]

    def __str__(self) -> str:
        return self.name

    @property
    def permission(self) -> str | None:
        return required_permission(self.callback)

    @property
    def is_api(self) -> bool:
        """A route of the REST API for scripts: it answers an anonymous caller 401 itself, never the login page."""
        return self.pattern.startswith("api/") and getattr(self.callback, "login_required", True) is False

    def api_permission(self, method: str) -> str:
        return str(api_view(self.callback).permissions.get(method, "view_console"))

    def answers(self, method: str) -> bool:
        return hasattr(api_view(self.callback), method.lower())


def project_routes() -> list[Route]:
    return walk_routes(get_resolver(__name__))


def walk_routes(resolver: URLResolver) -> list[Route]:
    routes: list[Route] = []

    def walk(resolver: URLResolver, prefix: str, namespace: str) -> None:
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else entry.namespace
                walk(entry, prefix + str(entry.pattern), inner or namespace)
            elif isinstance(entry, URLPattern):
                pattern = prefix + str(entry.pattern)
                name = entry.name or ("static" if "static/" in pattern else pattern)
                routes.append(Route(f"{namespace}:{name}" if namespace else name, pattern, entry.callback))

    walk(resolver, "", "")
    return routes


def api_view(view: Callable[..., Any]) -> Any:
    return getattr(view, "view_class", None)


def required_permission(view: Callable[..., Any]) -> str | None:
    """The permission a view declares: console.roles.require's codename, or the permission of the job kind named by
    jobs.workflows.pages.kind_page, found along the view's __wrapped__ chain; for an API view, its GET's."""
    current: Any = view
    if hasattr(api_view(view), "permissions"):
        return str(api_view(view).permissions.get("GET", "view_console"))
    while current is not None:
        if hasattr(current, "required_permission"):
            return str(current.required_permission)
        if hasattr(current, "required_kind"):
            return get_kind(current.required_kind).permission
        current = getattr(current, "__wrapped__", None)
    return None


# This module is the URLconf of its own tests (pytest.mark.urls below): the project's routes, see sweep_urlpatterns.
urlpatterns = sweep_urlpatterns()
pytestmark = pytest.mark.urls(__name__)
ROUTES = project_routes()
ROUTE_IDS = [route.name for route in ROUTES]


def cases(routes: list[Route], check: str) -> Iterator[Any]:
    """pytest params, with the known findings of `check` marked as strict xfails."""
    for route in routes:
        reason = KNOWN_FINDINGS.get((route.name, check))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(route, id=route.name, marks=marks)


def role_cases(routes: list[Route], *, refused_only: bool = False) -> Iterator[Any]:
    for role in ROLES:
        for route in routes:
            own_account = route.name in SELF_SERVICE and role != "anonymous"
            if refused_only and (route.name in PUBLIC or own_account or role_may(role, route.permission)):
                continue
            reason = KNOWN_FINDINGS.get((route.name, role))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(role, route, id=f"{role}-{route.name}", marks=marks)


# --- a small world of real rows the converters point at -----------------------------------------------------------


@dataclass
class World:
    host: Host
    job: Job
    vm: Any
    pair: Any
    users: dict[str, Any]
    signing_pfx: bytes = b""
    tokens: dict[str, str] = field(default_factory=dict)  # role → a personal API token of that role
    sessions: dict[str, str] = field(default_factory=dict)  # role → the key of a session logged in as that role
    destination: Any = None  # a team's notification webhook

    def object_for(self, route: Route, kwarg: str) -> Any:
        """The row whose id fills `kwarg` of the route, chosen by the route's URL prefix."""
        if kwarg == "job_id" or route.pattern.startswith("jobs/"):
            return self.job
        by_prefix = {
            "hosts/": self.host,
            "users/": self.users["viewer"],
            "vms/": self.vm,
            "vault/": self.pair,
            "notifications/": self.destination,
        }
        for prefix, row in by_prefix.items():
            if route.pattern.startswith(prefix) and row is not None:
                return row
        # A route added after this sweep was written: still swept (no 500, permissions), with the host's id as a
        # guess, so a 404 is accepted for it. Add its prefix above to sweep it fully.
        GUESSED_ROUTES.add(route.name)
        return self.host

    def guardian_key(self) -> str:
        """A guardian identity (the vault pair's), made inside the test's transaction: pages address it by pair."""
        from hosts.inventory.models import KnownGuardian

        pair = (self.pair.signing_thumbprint, self.pair.encryption_thumbprint)
        names = {"display_name": "UntrustedGuardian (sweep)", "sort_name": "untrustedguardian (sweep)"}
        KnownGuardian.objects.get_or_create(signing_thumbprint=pair[0], encryption_thumbprint=pair[1], defaults=names)
        return f"{pair[0]}-{pair[1]}"

    def url(self, route: Route) -> str:
        def fill(match: re.Match[str]) -> str:
            converter, kwarg = match.group(1) or "str", match.group(2)
            if converter == "int":
                return str(self.object_for(route, kwarg).pk)
            if kwarg == "key" and route.pattern.startswith("guardians/"):
                return self.guardian_key()
            return {"path": "console.css"}.get(converter, "not-a-real-token")

        path = re.sub(r"\(\?P<\w+>[^)]*\)", "console.css", route.pattern)  # regex routes: only static files
        path = re.sub(r"<(?:(\w+):)?(\w+)>", fill, path)
        return "/" + path.strip("^$")


def make_user(username: str, role: str | None) -> Any:
    user = get_user_model().objects.create_user(username, password="sweep-Passw0rd-unused")  # noqa: S106
    if role:
        set_role(user, role)
    return user


def make_host(name: str = "HV-SWEEP", port: int = 9) -> Host:
    host = Host(name=name, address="127.0.0.1", port=port, transport="http", auth="negotiate", username="labadmin")
    host.set_password(HOST_PASSWORD)
    host.full_clean()
    host.save()
    return host


def make_job(host: Host, user: Any) -> Job:
    job = Job.objects.create(kind="refresh_inventory", host_names=[host.name], requested_by=user, state="succeeded")
    job.hosts.add(host)
    JobLogLine.objects.create(job=job, seq=1, at=timezone.now(), level="info", text="→ Get-VM (HV-SWEEP)")
    Job.objects.filter(pk=job.pk).update(last_seq=1, finished_at=timezone.now())
    return job


def make_vm(host: Host) -> Any:
    from hosts.inventory.models import HostInventory, VirtualMachine

    HostInventory.objects.create(host=host, mode="Local", refreshed_at=timezone.now())
    return VirtualMachine.objects.create(
        host=host, vm_id="5b3c1c6a-0000-4000-8000-000000000001", name="Win11-Sweep", state="Off", generation=2
    )


def make_destination() -> Any:
    """A team webhook whose URL holds WEBHOOK_TOKEN and whose signing secret is WEBHOOK_SECRET."""
    from console.notifications.models import Destination

    destination = Destination(name="sweep-hook", type=Destination.WEBHOOK, kinds=["job_failed"])
    destination.set_url(f"https://hooks.lab.example/services/{WEBHOOK_TOKEN}")
    destination.set_secret(WEBHOOK_SECRET)
    destination.save()
    return destination


def make_pair(user: Any, host: Host) -> tuple[Any, bytes]:
    """A vault entry whose PFX password is PFX_PASSWORD, and its signing PFX bytes."""
    from hosts.vault.models import EscrowedPair
    from hosts.vault.services import store_pair
    from tests.hosts.test_vault_support import make_pair as pfx_pair

    signing, encryption = pfx_pair(host="HV-SWEEP", password=PFX_PASSWORD, slot=7)
    stored = store_pair(signing, encryption, PFX_PASSWORD, user=user, origin=EscrowedPair.ORIGIN_UPLOAD)
    return stored.pair, signing


@pytest.fixture(scope="module")
def shared_world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """Built once for the module (hundreds of cases read it) and removed afterwards, so other modules never see it."""
    with django_db_blocker.unblock():
        audit_before = set(AuditEvent.objects.values_list("pk", flat=True))
        users = {role: make_user(f"sweep-{role}", None if role == "nobody" else role) for role in ROLES[1:]}
        host = make_host()
        pair, signing_pfx = make_pair(users["admin"], host)
        job, vm = make_job(host, users["admin"]), make_vm(host)
        world = World(host=host, job=job, vm=vm, pair=pair, users=users, signing_pfx=signing_pfx)
        world.destination = make_destination()
        world.tokens = {role: ApiToken.issue(users[role], "sweep", role, 1)[1] for role in ROLES[2:]}
        world.sessions = {role: session_cookie(user) for role, user in users.items()}
    yield world
    with django_db_blocker.unblock():
        Session.objects.filter(session_key__in=world.sessions.values()).delete()
        Job.objects.filter(pk=job.pk).delete()
        world.destination.delete()
        pair.delete()
        host.delete()
        get_user_model().objects.filter(pk__in=[user.pk for user in users.values()]).delete()
        AuditEvent.objects.exclude(pk__in=audit_before).delete()


@pytest.fixture
def world(shared_world: World, db: None) -> World:
    """The shared rows, inside this test's own transaction (rolled back after it)."""
    return shared_world


def client_as(world: World, role: str, **options: Any) -> Client:
    """A client logged in as `role`: with the role's session made once for the module (a case's changes to it are
    rolled back with the rest of its transaction), which spares each of the ~1,700 cases a login of its own."""
    client = Client(raise_request_exception=False, **options)
    if role in world.sessions:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[role]
    elif role != "anonymous":
        client.force_login(world.users[role])
    return client


def described(response: Any) -> str:
    """Status plus, for a 500, the exception — so a failing case says what broke."""
    exc_info = getattr(response, "exc_info", None)
    if exc_info:
        return f"{response.status_code} ({exc_info[0].__name__}: {exc_info[1]})"
    return f"{response.status_code} {response.get('Location', '')}".strip()


def role_may(role: str, permission: str | None) -> bool:
    return permission is not None and permission in ROLE_PERMISSIONS.get(role, [])


def row_counts() -> dict[str, int]:
    """The rows of each table a request could write to, counted in one query (every case counts twice or more)."""
    names, sql = row_count_query()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(zip(names, cursor.fetchone(), strict=True))


@functools.cache
def row_count_query() -> tuple[list[str], str]:
    from console.notifications.models import Destination, Subscription
    from hosts.vault.models import EscrowedPair

    models: list[Any] = [AuditEvent, Job, JobLogLine, Host, EscrowedPair, get_user_model(), Destination, Subscription]
    table = connection.ops.quote_name
    counts = [f"(SELECT COUNT(*) FROM {table(model._meta.db_table)})" for model in models]  # noqa: S608 - model tables
    return [model.__name__ for model in models], "SELECT " + ", ".join(counts)


# --- every page, every role ---------------------------------------------------------------------------------------


def test_the_sweep_sees_the_whole_project() -> None:
    """Guards the sweep itself: if the resolver walk broke, every parametrized case below would silently vanish."""
    names = set(ROUTE_IDS)
    assert {"dashboard", "hosts:detail", "jobs:detail", "vault_detail", "inventory:vm", "users:edit"} <= names
    assert len(ROUTES) >= 25


@pytest.mark.parametrize("route", [r for r in ROUTES if r.name not in PUBLIC | SELF_SERVICE], ids=str)
def test_every_page_but_login_requires_a_permission(route: Route) -> None:
    assert route.permission in {p for perms in ROLE_PERMISSIONS.values() for p in perms}, (
        f"{route} ({route.pattern}) is not protected by console.roles.require"
    )


@pytest.mark.parametrize(("role", "route"), list(role_cases(ROUTES)))
def test_get_answers_each_role_as_its_permission_says(
    world: World, role: str, route: Route, record_property: Callable[[str, object], None]
) -> None:
    record_property("exercised", ("api" if route.is_api else "page", route.name, role, "GET"))
    client, url = client_as(world, role), world.url(route)
    before = row_counts()
    response = client.get(url)
    status, seen = response.status_code, f"GET {url} as {role} → {described(response)}"
    assert status < 500, seen
    if route.name in PUBLIC:
        if route.name in SIGN_IN_STEPS:
            assert status == 302 and response["Location"].startswith("/login/"), seen  # SSO is off here
        assert role != "anonymous" or route.name in {"logout", *SIGN_IN_STEPS} or status == 200, seen  # login's CSS
        return
    if role == "anonymous" and route.is_api:
        assert status == 401, seen
    elif role == "anonymous":
        assert status == 302, seen
        assert response["Location"].startswith("/login/?next="), seen
    elif route.name in SELF_SERVICE:
        assert status in (200, 405), seen
    elif not role_may(role, route.permission):
        assert status in (403, 405), seen
    else:
        assert status in (200, 302, 405) or (status == 404 and route.name in GUESSED_ROUTES), seen
    if status == 405:
        assert "GET" not in response.get("Allow", ""), f"{seen}: 405 but Allow says GET"
    if status == 200 and response.get("Content-Type", "").startswith("text/html"):
        assert response.get("X-Frame-Options") == "DENY", f"{seen}: page may be framed (clickjacking)"
        assert response.get("X-Content-Type-Options") == "nosniff", seen
    assert row_counts() == before, f"{seen}: a GET changed the database"


@pytest.mark.parametrize("route", list(cases(ROUTES, "csrf")))
def test_post_without_csrf_token_is_refused(
    world: World, route: Route, record_property: Callable[[str, object], None]
) -> None:
    record_property("exercised", ("csrf", route.name, "admin", "POST"))
    client, url = client_as(world, "admin", enforce_csrf_checks=True), world.url(route)
    before = row_counts()
    response = client.post(url, {"confirm": "yes", "name": "x"})
    assert response.status_code == 403, f"POST {url} without CSRF token → {described(response)}"
    assert b"CSRF" in response.content, f"POST {url}: refused, but not by the CSRF check"
    assert row_counts() == before


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(("role", "route"), list(role_cases(ROUTES, refused_only=True)))
def test_post_by_a_role_without_the_permission_is_refused(
    world: World, role: str, route: Route, record_property: Callable[[str, object], None]
) -> None:
    """Only roles that lack the view's permission: the permitted POSTs are the feature tests' business."""
    record_property("exercised", ("api" if route.is_api else "page", route.name, role, "POST"))
    client, url = client_as(world, role), world.url(route)
    before = row_counts()
    response = client.post(url, {"confirm": "yes", "name": "x"})
    seen = f"POST {url} as {role} → {described(response)}"
    if role == "anonymous" and route.is_api:
        assert response.status_code == 401, seen
    elif role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/login/?next="), seen
    else:
        assert response.status_code in (403, 405), seen
    assert row_counts() == before, f"{seen}: a refused POST changed the database"


OTHER_METHODS = ("PUT", "PATCH", "DELETE")
PAGE_ROUTES = [route for route in ROUTES if not route.is_api]


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(("role", "route"), list(role_cases(PAGE_ROUTES)))
def test_other_methods_answer_each_role_as_its_permission_says(
    world: World, role: str, route: Route, record_property: Callable[[str, object], None]
) -> None:
    """PUT, PATCH and DELETE on a page: no page takes them for a POST (nothing changes), none breaks."""
    client, url = client_as(world, role), world.url(route)
    exercised = []
    for method in OTHER_METHODS:
        before = row_counts()
        response = client.generic(method, url, "confirm=yes&name=x", content_type="application/x-www-form-urlencoded")
        status, seen = response.status_code, f"{method} {url} as {role} → {described(response)}"
        assert status < 500, seen
        if route.name in PUBLIC or (route.name in SELF_SERVICE and role != "anonymous"):
            pass  # their own rules: the login page, one's own account
        elif role == "anonymous":
            assert status == 302 and response["Location"].startswith("/login/?next="), seen
        elif not role_may(role, route.permission):
            assert status in (403, 405), seen
        assert row_counts() == before, f"{seen}: changed the database"
        exercised.append(("page", route.name, role, method))
    record_property("exercised", exercised)


API_ROUTES = [route for route in ROUTES if route.is_api]


def test_the_api_routes_are_in_the_matrix() -> None:
    """Guards the matrix below: the resolver walk finds the API, and each API view declares its permissions."""
    assert {"api-schema", "api-jobs", "api-job-log", "api-job-cancel", "api-vault", "api-audit"} <= {
        route.name for route in API_ROUTES
    }
    assert all(hasattr(api_view(route.callback), "permissions") for route in API_ROUTES)


def api_cases() -> Iterator[Any]:
    for role in ROLES:
        for route in API_ROUTES:
            for method in API_METHODS:
                yield pytest.param(role, route, method, id=f"{role}-{route.name}-{method}")


@pytest.mark.same_on_every_database
@pytest.mark.parametrize(("role", "route", "method"), list(api_cases()))
def test_the_api_answers_each_role_and_method_as_its_permissions_say(
    world: World, role: str, route: Route, method: str, record_property: Callable[[str, object], None]
) -> None:
    """With a personal token of the role (a session for a user without a role, who cannot have a token)."""
    record_property("exercised", ("api", route.name, role, method))
    token = world.tokens.get(role)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}") if token else client_as(world, role)
    url, before = world.url(route), row_counts()
    response = client.generic(method, url, '{"confirm": "yes"}', content_type="application/json")
    status, seen = response.status_code, f"{method} {url} as {role} → {described(response)}"
    if role == "anonymous":
        assert status == 401 and "json" in response["Content-Type"], seen
    elif not role_may(role, route.api_permission(method)):
        assert status == 403 and response.json()["detail"], seen
    elif not route.answers(method):
        assert status == 405, seen
    else:
        assert status < 500 and status not in (401, 403), seen
        assert status in (200, 400, 409) or (status == 404 and route.name in GUESSED_ROUTES), seen
    assert row_counts() == before, f"{seen}: changed the database"


# Query strings the pages read (preflights: host, vm, guardian, pair, action; job log: after), right and wrong.
QUERIES = (
    "host={host}&vm=Win11-Sweep&guardian=all&pair={pair}&action=disable&after=0",
    "host=abc&vm=%00&guardian=x:y:z&pair=-1&action=nuke&after=zz&page=99999999999999999999&q=%22%3E%3Cscript%3Esweep()",
    "host=99999999&pair=99999999&vm=&guardian=",
    # Digits that str.isdigit() accepts and int() refuses ("²") or reads ("٣"): ids must be ASCII (console.params).
    "host=%C2%B2&pair=%D9%A3&job=%C2%B2&target=%C2%B2&after=%C2%B2&page=%C2%B2",
)
INJECTED = "<script>sweep()"


@pytest.mark.parametrize("route", list(cases([r for r in ROUTES if r.name not in PUBLIC], "input")))
def test_bad_query_strings_and_unknown_ids_never_break_a_page(world: World, route: Route) -> None:
    admin, url = client_as(world, "admin"), world.url(route)
    for query in QUERIES:
        target = f"{url}?{query.format(host=world.host.pk, pair=world.pair.pk)}"
        response = admin.get(target)
        assert response.status_code < 500, f"GET {target} → {described(response)}"
        if not response.streaming:
            assert INJECTED not in response.content.decode(errors="replace"), f"GET {target} reflects markup"
    if "<int:" in route.pattern:
        missing = re.sub(r"<int:\w+>", "987654321", route.pattern)
        response = admin.get("/" + missing)
        assert response.status_code in (302, 404, 405), f"GET /{missing} → {described(response)}"


# What a form field may be sent by someone hostile: PowerShell and markup injection, traversal and UNC paths, control,
# invisible and bidirectional characters, non-ASCII digits, numbers too large for any column, and very long text.
HOSTILE_VALUES = (
    "'; Start-Process calc.exe; $(whoami)`'",
    INJECTED + "</script>",
    "..\\..\\Windows\\System32\\config\\SAM",
    "\\\\attacker.example\\loot",
    "line\r\nWARNING forged log line",
    "HV01\u202egnp.exe\u200b",
    "\u00b2\u0663",
    "99999999999999999999999999",
    "x" * 5000,
    "\x00",
)
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
FIELD = re.compile(r"<(?:input|select|textarea)\b[^>]*?\bname=\"([^\"]+)\"")
SKIPPED_FORMS = {"/logout/"}  # it ends the session the sweep runs in


def forms_on(page: str, url: str) -> list[tuple[str, str, list[str]]]:
    """(method, action, field names) of each form of a page, the CSRF token left out."""
    found = []
    for attributes, body in FORM.findall(page):
        method = "post" if re.search(r"method=\"post\"", attributes, re.I) else "get"
        action = re.search(r"action=\"([^\"]*)\"", attributes)
        target = (action.group(1) if action and action.group(1) else url).replace("&amp;", "&")
        names = sorted({name for name in FIELD.findall(body) if name != "csrfmiddlewaretoken"})
        if target.startswith("/") and target.split("?")[0] not in SKIPPED_FORMS and names:
            found.append((method, target, names))
    return found


def forms_of(admin: Client, world: World, route: Route) -> list[tuple[str, str, list[str]]]:
    """The forms of the route's page as it opens, and for a preflight page also once a host and a VM are chosen
    (its later steps' forms appear only then), each once."""
    url = world.url(route)
    urls = [url]
    if route.pattern.startswith("jobs/new/"):
        urls.append(f"{url}?{QUERIES[0].format(host=world.host.pk, pair=world.pair.pk)}")
    found: list[tuple[str, str, list[str]]] = []
    for page_url in urls:
        page = admin.get(page_url)
        if page.status_code == 200 and page.get("Content-Type", "").startswith("text/html"):
            found += [form for form in forms_on(page.content.decode(), url) if form not in found]
    return found


FORM_ROUTES = [r for r in ROUTES if r.name not in PUBLIC and not r.is_api and r.name != "static"]


@pytest.mark.parametrize("route", list(cases(FORM_ROUTES, "hostile")))
def test_hostile_values_in_every_field_of_every_form_never_break_it(
    world: World, route: Route, record_property: Callable[[str, object], None]
) -> None:
    """As an admin (who sees every form): each field of each form on the page, one at a time, gets each hostile value
    while the others stay empty; the answer is never a 500 and never shows the markup unescaped."""
    admin, exercised = client_as(world, "admin"), []
    for method, action, names in forms_of(admin, world, route):
        for name in names:
            for value in HOSTILE_VALUES:
                data = {other: "" for other in names} | {name: value}
                send = admin.post if method == "post" else admin.get
                response = send(action.split("?")[0] if method == "get" else action, data)
                seen = f"{method.upper()} {action} with {name}={value[:40]!r} → {described(response)}"
                assert response.status_code < 500, seen
                if not response.streaming:
                    assert INJECTED not in response.content.decode(errors="replace"), f"{seen} reflects markup"
                exercised.append(("form", f"{route.name} {method.upper()} {action.split('?')[0]}", name, value[:20]))
    record_property("exercised", exercised)


def registered_kinds() -> list[Any]:
    from jobs.kinds import KINDS

    return sorted(KINDS.values(), key=lambda kind: kind.name)


@pytest.mark.parametrize("kind", registered_kinds(), ids=lambda kind: kind.name)
def test_run_again_needs_the_kinds_own_permission(world: World, kind: Any) -> None:
    """ "Run again" on a job page must not let a role start a kind it could not start from the kind's own page."""
    job = Job.objects.create(kind=kind.name, host_names=[world.host.name], state="failed", finished_at=timezone.now())
    job.hosts.add(world.host)
    for role in ("nobody", "viewer", "operator", "admin"):
        if role_may(role, kind.permission):
            continue
        before = Job.objects.count()
        response = client_as(world, role).post(f"/jobs/{job.pk}/rerun/")
        assert response.status_code == 403, f"{role} re-running {kind.name} → {described(response)}"
        assert Job.objects.count() == before, f"{role} started {kind.name} through 'Run again'"


# --- websockets ---------------------------------------------------------------------------------------------------


def websocket_paths(world: World) -> list[str]:
    from jobs.routing import websocket_urlpatterns

    paths = []
    for entry in websocket_urlpatterns:
        pattern = str(entry.pattern)
        paths.append("/" + re.sub(r"<(?:\w+:)?\w+>", str(world.job.pk), pattern))
    return paths


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def connects(path: str, user: Any | None, origin: str) -> bool:
    from console.asgi import application

    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await communicator.connect(timeout=3)
    # A refusal is an accept followed at once by a close with 4403/4404 (so the page can say why). Open and quiet
    # counts as connected: the job list socket sends nothing until a job changes state.
    if connected and not await communicator.receive_nothing(timeout=0.5):
        first = await communicator.receive_output(timeout=1)
        connected = first["type"] != "websocket.close"
    await communicator.disconnect()
    return bool(connected)


@pytest.mark.django_db(transaction=True)
async def test_websockets_refuse_anonymous_roleless_and_foreign_origins(
    record_property: Callable[[str, object], None],
) -> None:
    """Every route, every role, from the console's own Origin and a foreign one: a role that may view gets in from
    home only (the control that makes the refusals mean something); anonymous and role-less never."""
    world = await database_sync_to_async(_world_for_websockets)()
    home, evil = "http://127.0.0.1", "http://evil.example"
    exercised = []
    for route in websocket_paths(world):
        for role in ROLES:
            user = world.users.get(role)
            may_view = role_may(role, "view_console")
            assert await connects(route, user, home) == may_view, f"{route}: {role} from {home}"
            assert not await connects(route, user, evil), f"{route}: {role} from Origin {evil} accepted"
            exercised += [("websocket", route, role, home), ("websocket", route, role, evil)]
    record_property("exercised", exercised)


def _world_for_websockets() -> World:
    users = {role: make_user(f"ws-{role}", None if role == "nobody" else role) for role in ROLES[1:]}
    host = make_host("HV-WS", port=11)
    return World(host=host, job=make_job(host, users["admin"]), vm=None, pair=None, users=users)


# --- no secret on any page ----------------------------------------------------------------------------------------


def test_no_secret_on_any_page(world: World) -> None:
    """A host registered through the form and a vault pair with known passwords: no page shows either, nor a key."""
    admin = client_as(world, "admin")
    response = admin.post(
        "/hosts/new/",
        {
            "name": "HV-FORM",
            "address": "hv-form.lab.example",
            "transport": "http",
            "port": "",
            "auth": "negotiate",
            "cert_check": "system",
            "username": "LAB\\hvconsole",
            "password": HOST_PASSWORD,
        },
    )
    assert response.status_code == 302, described(response)
    form_host = Host.objects.get(name="HV-FORM")
    assert form_host.get_password() == HOST_PASSWORD
    secrets = {
        "host password": HOST_PASSWORD,
        "PFX password": PFX_PASSWORD,
        # A slice at a multiple of 3 bytes: its base64 is a substring of the whole file's base64.
        "PFX bytes (base64)": base64.b64encode(world.signing_pfx[99:147]).decode(),
        "PFX bytes (hex)": world.signing_pfx[100:132].hex(),
        "PFX bytes (HEX)": world.signing_pfx[100:132].hex().upper(),
        "webhook URL token": WEBHOOK_TOKEN,
        "webhook signing secret": WEBHOOK_SECRET,
        **{f"PEM marker {marker!r}": marker for marker in PRIVATE_KEY_MARKERS},
    }
    pages = [world.url(route) for route in ROUTES if route.name != "static"]
    pages += [f"{url}?{QUERIES[0].format(host=world.host.pk, pair=world.pair.pk)}" for url in pages]  # preflights
    pages += [f"/hosts/{form_host.pk}/", f"/hosts/{form_host.pk}/edit/", f"/hosts/prepare/?host={form_host.pk}"]
    for url in pages:
        response = admin.get(url, follow=True)
        body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
        text = body.decode(errors="replace")
        for what, secret in secrets.items():
            assert secret not in text, f"GET {url} as admin shows the {what}"


# --- buttons and links --------------------------------------------------------------------------------------------

LINK = re.compile(r"""<(?:a|form)\b[^>]*?\b(?:href|action)="(/[^"]*)\"""")


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_no_page_offers_a_button_or_link_its_reader_cannot_use(world: World, role: str) -> None:
    """Every link and form on every page a role may open leads to a page that role may open as well: a button that
    answers 403 is not shown (the undo of a reset, to an operator)."""
    from console.templatetags.console_tags import declared_permission

    client, offered = client_as(world, role), []
    for route in ROUTES:
        if route.name in PUBLIC or not role_may(role, route.permission):
            continue
        response = client.get(world.url(route))
        if response.status_code != 200 or not response.get("Content-Type", "").startswith("text/html"):
            continue
        for target in set(LINK.findall(response.content.decode())):
            try:
                match = resolve(target.split("?")[0].replace("&amp;", "&"))
            except Resolver404:
                continue
            needed = declared_permission(match.func)
            if needed is not None and not role_may(role, needed):
                offered.append(f"{route.name} offers {target} (needs {needed})")
    assert not offered, f"{role} is offered what they cannot use:\n" + "\n".join(sorted(offered))
