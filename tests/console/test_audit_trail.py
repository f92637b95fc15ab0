"""The audit trail as people read it: sentences with links, filters by who, what, which object and when, a search,
pages, and the CSV export (admins only, a POST that is itself audited, no secret, no spreadsheet formula)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from console.models import AuditEvent
from hosts.models import Host
from jobs.models import Job
from tests.plugins.users import client_for

pytestmark = pytest.mark.django_db


def at(event: AuditEvent, days_ago: int) -> AuditEvent:
    AuditEvent.objects.filter(pk=event.pk).update(at=timezone.now() - timedelta(days=days_ago))
    return event


@pytest.fixture
def trail(operator: Any, admin: Any) -> dict[str, Any]:
    host = Host.objects.create(name="HV03", address="hv03.lab.test", port=5985, transport="http", auth="ntlm")
    job = Job.objects.create(kind="vtpm", host_names=["HV03"], requested_by=operator)
    return {
        "host": host,
        "the_job": job,
        "tpm": at(AuditEvent.record(operator, "vm.tpm_disable", host, job=job.pk, vms=["Win11-A", "Win11-B"]), 1),
        "reset": at(
            AuditEvent.record(admin, "guardian.reset", host, guardian_name="UntrustedGuardian", host_name="HV03"), 3
        ),
        "job": AuditEvent.record(None, "job.succeeded", job, kind="vtpm"),
        "secret": AuditEvent.record(admin, "host.update", host, changed=["password"], password="Hunter2-Secret!"),
        "formula": AuditEvent.record(admin, "share.create", None, path='=HYPERLINK("http://evil")'),
    }


def test_events_read_as_sentences_with_links_to_their_objects(viewer: Any, trail: dict[str, Any]) -> None:
    page = client_for(viewer).get("/audit/").content.decode()
    host = trail["host"]
    assert f'otto turned the vTPM off for Win11-A, Win11-B on <a href="/hosts/{host.pk}/">HV03</a>' in page
    assert f'ada reset the guardian UntrustedGuardian on <a href="/hosts/{host.pk}/">HV03</a>' in page
    job = trail["the_job"]
    assert f'<a href="/jobs/{job.pk}/">#{job.pk} Turn vTPM off or on</a> succeeded' in page
    shown = page[page.index('id="audit-events"') :]  # the table, not the filter's option values
    assert ">vm.tpm_disable<" not in shown and "escrowedpair" not in shown  # no internal codes as text
    assert "Hunter2-Secret!" not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=otto", {"tpm"}),
        ("actor=system", {"job"}),
        ("action=guardian.reset", {"reset"}),
        ("object_type=job", {"job"}),
        ("q=untrusted", set()),  # the search reads who, the object and the action, not every detail
        ("q=tpm_dis", {"tpm"}),
        ("q=HV03&actor=ada", {"reset", "secret"}),
    ],
)
def test_filters_narrow_the_trail(viewer: Any, trail: dict[str, Any], query: str, expected: set[str]) -> None:
    page = client_for(viewer).get(f"/audit/?{query}").content.decode()
    named = {"tpm": "vm.tpm_disable", "reset": "guardian.reset", "job": "job.succeeded", "secret": "host.update"}
    shown = {name for name, action in named.items() if f'data-action="{action}"' in page}
    assert shown == expected, query


def test_the_date_range_is_the_readers_days(viewer: Any, trail: dict[str, Any]) -> None:
    today = timezone.localdate()
    since = (today - timedelta(days=2)).isoformat()
    page = client_for(viewer).get(f"/audit/?since={since}&until={today.isoformat()}").content.decode()
    assert 'data-action="vm.tpm_disable"' in page and 'data-action="guardian.reset"' not in page
    until = (today - timedelta(days=2)).isoformat()
    older = client_for(viewer).get(f"/audit/?until={until}").content.decode()
    assert 'data-action="guardian.reset"' in older and 'data-action="vm.tpm_disable"' not in older


def test_the_trail_is_paged_with_its_filters_kept(viewer: Any, operator: Any) -> None:
    for n in range(105):
        AuditEvent.record(operator, "job.cancel", None, n=n)
    page = client_for(viewer).get("/audit/?actor=otto").content.decode()
    assert page.count('data-action="job.cancel"') == 100
    assert "page 1 of 2" in page and 'href="?actor=otto&amp;page=2"' in page
    second = client_for(viewer).get("/audit/?actor=otto&page=2").content.decode()
    assert second.count('data-action="job.cancel"') == 5


def test_only_admins_export_csv_and_each_export_is_audited(
    viewer: Any, operator: Any, admin: Any, trail: dict[str, Any]
) -> None:
    assert client_for(viewer).post("/audit/export.csv").status_code == 403
    assert client_for(operator).post("/audit/export.csv").status_code == 403
    assert client_for(admin).get("/audit/export.csv").status_code == 405  # an export is recorded: never a GET
    assert 'id="audit-csv"' not in client_for(operator).get("/audit/").content.decode()
    assert not AuditEvent.objects.filter(action="audit.export").exists()

    response = client_for(admin).post("/audit/export.csv?actor=ada")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]  # a streamed response
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:5] == ["time (UTC)", "time", "who", "action", "what happened"]
    actions = {row[3] for row in rows[1:]} - {"login"}  # client_for's own login is ada's too
    assert actions == {"guardian.reset", "host.update", "share.create"}  # the filter holds; not the export itself
    assert "Hunter2-Secret!" not in body and "[redacted]" in body
    formula = next(row for row in rows[1:] if row[3] == "share.create")
    assert all(not cell.startswith("=") for cell in formula)  # a spreadsheet shows it, never runs it
    exported = AuditEvent.objects.get(action="audit.export")
    assert exported.username == "ada" and exported.detail == {"filters": {"actor": "ada"}}
