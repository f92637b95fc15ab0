"""The REST API's answers: the same preflight and refusals as the workflow pages, lists in pages with filters, the
log after a seq, cancel, vault metadata without secrets, rate limits, and the docs page under the console's CSP."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from api.models import ApiToken
from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from jobs.inventory import INVENTORY_REFRESH
from jobs.models import Job, JobLogLine
from jobs.workflows.reset import page as reset_page
from tests.plugins.sim import reinstalled_with_backup_in_vault
from tests.plugins.users import client_for


def api_as(user: Any, role: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test', role, 1)[1]}")


def temp_named(line: str) -> str:
    """A line of Show PowerShell with its temporary file's random name left out (new at every preflight)."""
    return re.sub(r"gc-[0-9a-f]{8}", "gc-…", line)


def start(client: Client, workflow: str, choices: dict[str, Any], dry_run: bool = False) -> Any:
    body = {"workflow": workflow, "choices": choices, "dry_run": dry_run}
    return client.post("/api/jobs/", body, content_type="application/json")


def test_a_dry_run_shows_the_pages_own_preflight_and_starts_nothing(
    sim_host: Any, registered_host: Any, admin: Any
) -> None:
    host = registered_host(sim_host("deleted-certs"))
    assert refresh_host(host).ok
    answer = start(api_as(admin, "admin"), "reset", {"host": host.pk, "guardian": "UntrustedGuardian"}, dry_run=True)
    assert answer.status_code == 200, answer.content
    shown = answer.json()
    page_shows = reset_page.preflight(host, "UntrustedGuardian").powershell
    assert [temp_named(line) for line in shown["powershell"]] == [temp_named(line) for line in page_shows]
    assert shown["job"] == {
        "kind": "reset_guardian", "hosts": [host.name], "vms": [], "params": {"guardian_name": "UntrustedGuardian"}
    }  # fmt: skip
    assert shown["started"] is None and not Job.objects.exists()


def test_the_api_refuses_what_the_page_refuses_with_its_words(registered_host_row: Host, admin: Any) -> None:
    api = api_as(admin, "admin")
    escrow = start(api, "escrow", {"host": registered_host_row.pk, "guardian": "not-a-pair"})
    assert escrow.status_code == 400 and escrow.json()["problems"] == ["Choose a guardian from the list."]
    refresh = start(api, "refresh", {"hosts": ["²"]})
    assert refresh.status_code == 400 and refresh.json()["problems"]
    unknown = start(api, "nuke", {})
    assert unknown.status_code == 400 and "workflow" in unknown.json()
    assert not Job.objects.exists()


def test_an_operator_cannot_start_a_destructive_workflow(registered_host_row: Host, operator: Any) -> None:
    answer = start(api_as(operator, "operator"), "reset", {"host": registered_host_row.pk}, dry_run=True)
    assert answer.status_code == 403 and "run_destructive_jobs" in answer.json()["detail"]


def test_lists_come_in_pages_and_filter_by_id(registered_host_row: Host, viewer: Any) -> None:
    for port, name in enumerate(("HV-B", "HV-C"), start=10):
        Host.objects.create(name=name, address="127.0.0.1", port=port, username="lab")
    api = api_as(viewer, "viewer")
    first = api.get("/api/hosts/", {"page_size": 2}).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    assert api.get("/api/hosts/", {"name": "hv-c"}).json()["results"][0]["name"] == "HV-C"
    assert api.get("/api/vms/", {"host": "²"}).status_code == 400
    assert "password" not in str(first)


def test_the_log_after_a_seq_and_when_it_has_ended(registered_host_row: Host, viewer: Any) -> None:
    job = Job.objects.create(kind=INVENTORY_REFRESH, host_names=["HV-API"], state="running", last_seq=3)
    for seq in (1, 2, 3):
        JobLogLine.objects.create(job=job, seq=seq, at=timezone.now(), text=f"line {seq}")
    api = api_as(viewer, "viewer")
    running = api.get(f"/api/jobs/{job.pk}/log/", {"after": 1}).json()
    assert [line["seq"] for line in running["lines"]] == [2, 3] and not running["ended"]
    Job.objects.filter(pk=job.pk).update(state="succeeded")
    assert api.get(f"/api/jobs/{job.pk}/log/", {"after": 3}).json() == {
        "state": "succeeded", "ended": True, "last_seq": 3, "lines": []
    }  # fmt: skip
    assert api.get(f"/api/jobs/{job.pk}/log/", {"after": "zz"}).status_code == 400


def test_cancel_needs_the_kinds_permission_and_a_job_still_running(operator: Any, admin: Any) -> None:
    refresh = Job.objects.create(kind=INVENTORY_REFRESH, state="queued")
    reset = Job.objects.create(kind="reset_guardian", state="queued")
    api = api_as(operator, "operator")
    assert api.post(f"/api/jobs/{reset.pk}/cancel/").status_code == 403
    answer = api.post(f"/api/jobs/{refresh.pk}/cancel/")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    assert api.post(f"/api/jobs/{refresh.pk}/cancel/").status_code == 409


def test_vault_entries_show_metadata_only(admin: Any) -> None:
    from tests.console.test_security_sweep import PFX_PASSWORD, make_pair

    pair, _signing = make_pair(admin, Host.objects.create(name="HV-V", address="127.0.0.1", port=12, username="l"))
    entry = api_as(admin, "admin").get(f"/api/vault/{pair.pk}/").json()
    assert entry["signing_thumbprint"] == pair.signing_thumbprint
    assert not {"signing_pfx", "encryption_pfx", "pfx_password"} & set(entry)
    assert PFX_PASSWORD not in str(entry)


def test_too_many_calls_are_slowed_down(viewer: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "3/minute"})
    api = api_as(viewer, "viewer")
    answers = [api.get("/api/hosts/").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert "throttled" in api.get("/api/hosts/").json()["detail"]


def test_the_docs_page_is_served_locally_under_the_consoles_csp(viewer: Any) -> None:
    client = client_for(viewer)
    page = client.get("/api/docs/")
    html = page.content.decode()
    assert page.status_code == 200 and "script-src 'self'" in page["Content-Security-Policy"]
    assert "<style" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)  # nothing inline
    files = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(files) >= 4 and all(url.startswith("/") for url in files)  # no CDN
    for url in files:
        assert client.get(url.replace("&amp;", "&")).status_code == 200, url
    assert Client().get("/api/docs/").status_code == 302  # a page: login first


def test_turning_a_tpm_off_needs_each_vms_name_typed_as_on_its_page(
    sim_host: Any, registered_host: Any, admin: Any
) -> None:
    host = registered_host(sim_host("healthy"))
    assert refresh_host(host).ok
    api, chosen = api_as(admin, "admin"), {"host": host.pk, "action": "disable", "vm": ["Win11-B"]}
    unconfirmed = start(api, "vtpm", chosen, dry_run=True)
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["problems"] == ["Type the name 'Win11-B' exactly to confirm turning its TPM off."]
    confirmed = start(api, "vtpm", chosen | {"confirm-Win11-B": "Win11-B"}, dry_run=True).json()
    assert confirmed["job"]["params"]["confirmed"] == ["Win11-B"] and confirmed["powershell"]
    assert not Job.objects.exists()


def test_every_workflow_page_can_start_its_job_through_the_api() -> None:
    """A workflow page added tomorrow must be added to jobs/workflows/preflights.py too, or this fails."""
    from jobs.workflows.preflights import WORKFLOWS
    from jobs.workflows.urls import urlpatterns

    by_api = {workflow.kind for workflow in WORKFLOWS.values()}
    by_pages = {getattr(route.callback, "required_kind", None) for route in urlpatterns} - {None}
    assert by_pages <= by_api and INVENTORY_REFRESH in by_api


def test_risks_come_from_the_stored_analysis_kind_by_kind_in_pages(viewer: Any) -> None:
    import random

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from hosts.inventory import reading
    from hosts.inventory.analysis import Inventory
    from tests.hosts.test_stored_analysis import Lab

    lab = Lab(random.Random(5), hosts=5)
    for _ in range(25):
        lab.step()
    api = api_as(viewer, "viewer")
    everything = api.get("/api/risks/", {"page_size": 500}).json()
    oracle = sorted((r.code, r.subject) for r in Inventory().risks())
    assert sorted((r["code"], r["subject"]) for r in everything["results"]) == oracle and len(oracle) > 3
    codes = [r["code"] for r in everything["results"]]
    assert codes == sorted(codes, key=[kind.code for kind in reading.RISK_KINDS].index)  # the dashboard's order

    walked, url = [], "/api/risks/?page_size=2"
    while url:
        with CaptureQueriesContext(connection) as queries:
            page = api.get(url).json()
        assert len(queries) <= 20, "a page reads a slice of each kind, not the lab"
        walked += page["results"]
        url = page["next"]
    assert walked == everything["results"]

    first_code = codes[0]
    one_kind = api.get("/api/risks/", {"code": first_code, "page_size": 500}).json()
    assert one_kind["count"] == codes.count(first_code)
    assert {r["code"] for r in one_kind["results"]} == {first_code}
    assert api.get("/api/risks/", {"code": "no_such_risk"}).json()["count"] == 0


def test_every_restorable_vm_of_a_host_in_one_job_as_its_page_starts_it(
    sim_host: Any, registered_host: Any, admin: Any
) -> None:
    _sim, host, _pair, _password = reinstalled_with_backup_in_vault(sim_host, registered_host, admin)
    assert refresh_host(host).ok
    api = api_as(admin, "admin")
    answer = start(api, "restore_all", {"host": host.pk}, dry_run=True)
    assert answer.status_code == 200, answer.content
    assert answer.json()["job"]["vms"] == ["Win11-A", "Win11-B"] and not Job.objects.exists()
    started = start(api, "restore_all", {"host": host.pk})
    assert started.status_code == 201 and Job.objects.get().vms == ["Win11-A", "Win11-B"]
    healthy = registered_host(sim_host("healthy", name="HV09"), name="HV09")
    assert refresh_host(healthy).ok
    refused = start(api, "restore_all", {"host": healthy.pk})
    assert refused.status_code == 400 and "No VM of this host is restorable" in refused.json()["problems"][0]
