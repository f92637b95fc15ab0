"""Pages of the host registry: list, detail, register/edit/delete, test connection, and how to prepare a host."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.db.models import ProtectedError, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from console.models import AuditEvent
from console.params import page_of, parse_id, search_text
from console.roles import require

from . import crypto
from .forms import HostForm
from .jea import ENDPOINT_NAME, JeaEndpoint
from .models import Host, LabShare, failure_headline
from .remoting import catalog, open_session
from .remoting.catalog.host import CLIENT_EDITION_NOTE
from .remoting.errors import RemotingError, remedy_action

logger = logging.getLogger(__name__)

HOSTS_PER_PAGE = 100

# Account names shown inside the copy-paste PowerShell; anything else is replaced by a placeholder, so a host's
# user name can never smuggle text into commands an admin runs.
SAFE_ACCOUNT = re.compile(r"[A-Za-z0-9.][A-Za-z0-9._\\@-]{0,100}")

SECRET_ACTION = gettext_lazy(  # noqa: S105 (advice, not a secret)
    "Re-enter the password on the Edit page, or add the missing key back to CONSOLE_ENCRYPTION_KEYS."
)
# WinRM's ERROR_WSMAN_INVALID_RESOURCE_URI: no session configuration of the requested name on the host.
WSMAN_NO_SUCH_ENDPOINT = "2150858811"
NO_ENDPOINT_ACTION = gettext_lazy(
    "The host has no PowerShell endpoint of that name: correct it on the Edit page, or register it "
    "(Prepare this host → Just Enough Administration)."
)
JEA_MISSING_COMMAND_ACTION = gettext_lazy(
    "The host's JEA role capability does not list this command: re-run the two Set-Content lines of "
    "Prepare this host → Just Enough Administration."
)


@dataclass(frozen=True)
class ConnectionTestOutcome:
    ok: bool
    kind: str  # "" on success, else a RemotingError kind (or "secret")
    message: str

    @property
    def headline(self) -> str:
        return failure_headline(self.kind) if not self.ok else _("Connected")


def run_connection_test(host: Host) -> ConnectionTestOutcome:
    """Open a session to the host and run the catalog's test operation; every failure becomes a plain message."""
    try:
        spec = host.connection_spec()
    except crypto.SecretError as error:
        return _failure("secret", str(error), str(SECRET_ACTION))
    try:
        with open_session(spec) as session:
            result = session.run(catalog.TestConnection())
    except RemotingError as error:
        return _failure(error.kind, _describe_error(error), _action(error, host))
    except Exception as error:  # never a 500: an unknown failure is reported by class only (no message: no secret)
        logger.warning("connection test of host %s failed with %s", host.pk, type(error).__name__)
        failed = _("The test failed unexpectedly (%(error)s)") % {"error": type(error).__name__}
        return _failure("unexpected", failed, "")
    return ConnectionTestOutcome(True, "", _connected(result))


def _connected(facts: catalog.HostFacts) -> str:
    """What the host is; a client edition (Windows 11/10 Pro) also hears how it differs from a server."""
    if facts.client_edition:
        return _("Connected: %(facts)s. %(note)s") % {"facts": facts, "note": CLIENT_EDITION_NOTE}
    return _("Connected: %(facts)s") % {"facts": facts}


def _describe_error(error: Any) -> str:
    detail = str(error)
    seen = getattr(error, "fingerprint_seen", "")
    if seen and seen not in detail:
        detail = _("%(error)s; the host presented a certificate with SHA-256 fingerprint %(fingerprint)s.") % {
            "error": detail.rstrip("."),
            "fingerprint": seen,
        }
    return detail


def _action(error: RemotingError, host: Host) -> str:
    if getattr(error, "code", "") == WSMAN_NO_SUCH_ENDPOINT:
        return str(NO_ENDPOINT_ACTION)
    if host.uses_jea and "CommandNotFound" in getattr(error, "fqid", ""):
        return str(JEA_MISSING_COMMAND_ACTION)
    return remedy_action(error.kind)


def _failure(kind: str, detail: str, action: str) -> ConnectionTestOutcome:
    """The error once, as the remoting layer wrote it, then what to do (the badge carries the failure class)."""
    detail = detail.strip()
    sentence = detail if detail.endswith((".", "…", "!", "?")) else f"{detail}."
    return ConnectionTestOutcome(False, kind, f"{sentence} {action}".strip())


@require("view_console")
def host_list(request: HttpRequest) -> HttpResponse:
    """A page of the registered hosts, searched by name or address in the database."""
    hosts = Host.objects.select_related("inventory")  # the last contact may be the last inventory refresh
    query = search_text(request, "q")
    if query:
        hosts = hosts.filter(Q(name__icontains=query) | Q(address__icontains=query))
    return render(request, "hosts/list.html", {"listing": page_of(request, hosts, HOSTS_PER_PAGE), "q": query})


@require("view_console")
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    return render(request, "hosts/detail.html", {"host": host})


@sensitive_post_parameters("password")  # kept out of error reports, should one ever be made
@require("manage_hosts")
@require_http_methods(["GET", "POST"])
def host_create(request: HttpRequest) -> HttpResponse:
    form = HostForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            host = form.save()
            AuditEvent.record(request.user, "host.create", host, address=host.address, port=host.port)
        messages.success(request, _("Host %(host)s registered. Test the connection next.") % {"host": host})
        return redirect("hosts:detail", pk=host.pk)
    return render(request, "hosts/form.html", {"form": form, "host": None, "jea_url": _jea_url(None)})


@sensitive_post_parameters("password")  # kept out of error reports, should one ever be made
@require("manage_hosts")
@require_http_methods(["GET", "POST"])
def host_edit(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    form = HostForm(request.POST or None, request.FILES or None, instance=host)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            host = form.save()
            AuditEvent.record(request.user, "host.update", host, changed=form.changed_fields())
        messages.success(request, _("Host %(host)s saved.") % {"host": host})
        return redirect("hosts:detail", pk=host.pk)
    return render(request, "hosts/form.html", {"form": form, "host": host, "jea_url": _jea_url(host)})


def _jea_url(host: Host | None) -> str:
    """The JEA section of the prepare page (for this host, when there is one): a link inside a translated sentence."""
    query = f"?host={host.pk}" if host else ""
    return f"{reverse('hosts:prepare')}{query}#jea"


@require("manage_hosts")
@require_http_methods(["GET", "POST"])
def host_delete(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    unfinished = _unfinished_jobs(host)
    if request.method == "POST" and unfinished:
        messages.error(
            request,
            ngettext(
                "This host has an unfinished job: wait for it or cancel it first.",
                "This host has %(count)d unfinished jobs: wait for them or cancel them first.",
                unfinished,
            )
            % {"count": unfinished},
        )
        return redirect("hosts:detail", pk=pk)
    if request.method == "POST":
        name = host.name
        try:
            with transaction.atomic():
                AuditEvent.record(request.user, "host.delete", host, address=host.address, port=host.port)
                host.delete()
        except ProtectedError:
            messages.error(
                request,
                _("Host %(host)s is still referenced (for example by jobs) and cannot be deleted.") % {"host": name},
            )
            return redirect("hosts:detail", pk=pk)
        messages.success(request, _("Host %(host)s deleted.") % {"host": name})
        return redirect("hosts:list")
    return render(request, "hosts/confirm_delete.html", {"host": host, "unfinished": unfinished})


def _unfinished_jobs(host: Host) -> int:
    """Jobs (the jobs app's reverse relation) still queued or running on the host: deleting it would pull the
    host from under them."""
    jobs = getattr(host, "jobs", None)
    return jobs.filter(finished_at__isnull=True).count() if jobs is not None else 0


@require("run_jobs")
@require_POST
def host_test(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(Host, pk=pk)
    outcome = run_connection_test(host)
    host.record_test(outcome.ok, outcome.message, kind=outcome.kind)
    AuditEvent.record(request.user, "host.test_connection", host, ok=outcome.ok, failure=outcome.kind)
    # The message itself is on the page once, under "Last connection test"; the flash only says how it went.
    if outcome.ok:
        messages.success(request, _("The connection to %(host)s works.") % {"host": host})
    else:
        messages.error(
            request,
            _("The connection test of %(host)s failed (%(failure)s): what to do is shown below.")
            % {"host": host, "failure": outcome.headline},
        )
    return redirect("hosts:detail", pk=host.pk)


def other_host(host: Host | None) -> str:
    """Another registered host, to name the migration partner in the commands (an example name without one)."""
    others = Host.objects.exclude(pk=host.pk) if host else Host.objects.none()
    partner = others.order_by("name").first()
    return partner.name if partner else "HV02"


def served_share(host: Host | None, console_account: str) -> dict[str, str]:
    """The share this host serves for the workgroup migration, as an administrator listed it in Hosts › Lab shares
    (its name and account), else the names the console suggests. Never the share's password."""
    computer = host.name if host else "HV01"
    listed = next((s for s in LabShare.objects.all() if s.server.casefold() == computer.casefold()), None)
    name = listed.share_name if listed and listed.share_name else "VMExports"
    account = listed.account if listed and listed.account else f"{computer}\\vmshare"
    folder = "D:\\VMExports"
    # Export-VM writes into the folder as the console's account (modify, inherited); the share stays read-only.
    grant = f"{console_account}:(OI)(CI)M"
    return {"name": name, "account": account, "local_user": account.split("\\")[-1], "folder": folder, "grant": grant}


@require("view_console")
def prepare_host(request: HttpRequest) -> HttpResponse:
    """The PowerShell an admin runs once on a new host, filled in with a registered host's account if given."""
    host_id = parse_id(request.GET.get("host"))
    host = Host.objects.filter(pk=host_id).first() if host_id is not None else None
    account = host.username if host and SAFE_ACCOUNT.fullmatch(host.username) else "hvconsole"
    partner = other_host(host)
    dns_name = host.address if host and not host.address.replace(".", "").isdigit() and ":" not in host.address else ""
    context = {
        "host": host,
        "account": account,
        "local_account": account.split("\\")[-1].split("@")[0].lstrip("."),
        "dns_name": dns_name or "hv01.lab.example",
        "computer": host.name if host else "HV01",
        "other_host": partner,
        "migration_service": f"Microsoft Virtual System Migration Service/{partner}",
        "cifs_service": f"cifs/{partner}",
        "share": served_share(host, account),
        "jea": JeaEndpoint(
            name=host.configuration_name if host and host.uses_jea else ENDPOINT_NAME,
            account=account,
            cmdlets=tuple(sorted(catalog.all_cmdlets())),
        ),
    }
    return render(request, "hosts/prepare.html", context)
