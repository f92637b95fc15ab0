"""What every workflow page shares: the host it is about, the preflight page, the permission of its job kind,
starting the job, and "Run again" links back to a preflight page. One way to do each, so the pages stay ~10 lines.

A page's permission is its job kind's (`@kind_page("reset_guardian")`): declared once, on the kind, and read here
and by `create_job`. A missing permission raises `Forbidden`, which the one 403 page renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from console.params import parse_id
from console.roles import check
from hosts.inventory.models import Guardian
from hosts.models import Host
from jobs.kinds import get_kind
from jobs.models import Job
from jobs.services import create_job, ordered_hosts

View = Callable[..., HttpResponse]


def kind_page(kind: str) -> Callable[[View], View]:
    """View decorator: the user needs the permission of job kind `kind` (looked up when the page is asked for)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            check(request.user, get_kind(kind).permission)
            return view(request, *args, **kwargs)

        wrapped.required_kind = kind  # type: ignore[attr-defined]  # read by the security sweep
        return wrapped

    return decorate


def host_from(request: HttpRequest, field: str = "host") -> Host | None:
    """The registered host a page's `?host=` (or posted `host`) names, or None."""
    pk = parse_id(request.POST.get(field) or request.GET.get(field))
    return Host.objects.filter(pk=pk).first() if pk is not None else None


def preflight_page(
    request: HttpRequest, template: str = "workflows/guardian_preflight.html", **context: Any
) -> HttpResponse:
    """A preflight page with the host picker filled and the lists it shows defaulted."""
    context.setdefault("hosts", Host.objects.order_by("name"))
    context.setdefault("keep", [])
    context.setdefault("warnings", [])
    context.setdefault("cancel_url", "/vault/")
    return render(request, template, context)


def start_job(
    request: HttpRequest,
    kind: str,
    hosts: Sequence[Host],
    vms: Sequence[str] = (),
    params: dict[str, Any] | None = None,
) -> HttpResponse:
    """Create the job as the requesting user (Forbidden without the kind's permission) and show its page."""
    job = create_job(request.user, kind, hosts=list(hosts), vms=list(vms), params=params or {})
    return redirect("jobs:detail", pk=job.pk)


def preflight_link(page: str, job: Job, query: Sequence[tuple[str, Any]] = ()) -> str:
    """ "Run again" of a job with a preflight page: that page, filled from the job (the user confirms there again)."""
    hosts = ordered_hosts(job)
    first = [("host", hosts[0].pk)] if hosts else []
    return f"{page}?{urlencode(first + [(key, value) for key, value in query if value not in (None, '')])}"


def holder_links(signing: str, encryption: str, exclude: Any = None) -> list[tuple[str, str]]:
    """ "Escrow it from HVxx…" for every registered host whose last inventory holds the pair with its private key."""
    holders = Guardian.objects.filter(
        signing_thumbprint=signing, encryption_thumbprint=encryption, has_private_signing_key=True
    ).select_related("host")
    links = []
    for row in holders:
        if exclude is not None and row.host_id == exclude.pk:
            continue
        query = urlencode({"host": row.host_id, "guardian": f"{signing}:{encryption}"})
        links.append((f"Escrow it from {row.host}…", f"/jobs/new/escrow/?{query}"))
    return links
