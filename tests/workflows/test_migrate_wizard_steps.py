"""The migration wizard step by step (VM → target → method → unsealing → review) as plain GETs, as a browser without
JavaScript sends them: each step shows only its fields and carries the others; a step asked for before the earlier
ones are complete shows the first open one and why; the method step reads both hosts and offers only the methods
that can work; the review warns when the source copy left off keeps the VM's id on two hosts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hypervsim.model import VM_ROOT
from jobs.models import Job
from tests.plugins.sim import kind_to_the_second_hop

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hosts.test_vault_support")]


@pytest.fixture
def workgroup(sim_lab: Any, registered_host: Any) -> Any:
    """Two workgroup hosts reached with NTLM, the second hop refused as on Windows: only "register" can work."""
    lab = sim_lab(scenarios=["migration"])
    for sim in lab.hosts:
        sim.model.domain = None
    lab.source_host, lab.target_host = (registered_host(sim) for sim in lab.hosts)
    assert refresh_host(lab.source_host).ok and refresh_host(lab.target_host).ok
    return lab


def fields_of(page: str) -> set[str]:
    """The names of the fields a user can change on the page (not the hidden ones, not the CSRF token)."""
    shown = re.findall(r'<(?:input|select)(?![^>]*type="hidden")[^>]*name="([a-z_]+)"', page)
    return set(shown)


def hidden_of(page: str) -> dict[str, str]:
    """The hidden fields of the wizard's step form (the first form of the page's content)."""
    form = re.search(r'<form method="(?:get|post)"(?: id="migrate-wizard")?>(.*?)</form>', page, re.S)
    assert form is not None
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form.group(1)))


def test_each_step_shows_only_its_fields_and_carries_the_others(workgroup: Any, operator_client: Client) -> None:
    source, target = workgroup.source_host, workgroup.target_host
    page = operator_client.get("/jobs/new/migrate/", {"host": source.pk}).content.decode()
    assert 'data-step="vm"' in page and fields_of(page) == {"host", "vm"}
    chosen = {"host": source.pk, "vm": "Win11-B"}  # as the first step sends them: "start" is ticked by default
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "step": "target"}).content.decode()
    assert 'id="wizard-step" data-step="target"' in page and fields_of(page) == {"target"}
    assert hidden_of(page) == {"form": "1", "host": str(source.pk), "vm": "Win11-B", "start": "on"}
    chosen |= {"form": "1", "start": "on", "target": target.pk, "method": "register"}
    chosen |= {"files_path": f"{VM_ROOT}\\Win11-B\\A.vmcx"}
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "step": "unseal"}).content.decode()
    assert fields_of(page) == {"unseal", "start", "source_after"}
    assert hidden_of(page)["files_path"] == f"{VM_ROOT}\\Win11-B\\A.vmcx" and "Register VM files" in page
    # The trail links back to every step reached, with the choices in the query string; not past the open one.
    assert 'href="?form=1&amp;host=' in page and "step=target" in page and "step=review" not in page
    assert not workgroup.hosts[1].command_log or "Import-VM" not in str(workgroup.hosts[1].command_log)


def test_a_step_asked_for_too_early_shows_the_first_open_one_and_why(workgroup: Any, operator_client: Client) -> None:
    chosen = {"form": "1", "host": workgroup.source_host.pk, "vm": "Win11-B", "step": "review"}
    page = operator_client.get("/jobs/new/migrate/", chosen).content.decode()
    assert 'id="wizard-step" data-step="target"' in page and "Choose the target host first." in page
    chosen |= {"target": workgroup.target_host.pk, "method": "register", "files_path": "\\\\attacker\\x.vmcx"}
    page = operator_client.get("/jobs/new/migrate/", chosen).content.decode()
    assert 'id="wizard-step" data-step="method"' in page and "not a network or device path" in page
    assert 'id="migrate-preflight"' not in page and Job.objects.count() == 0


def test_the_method_step_gives_every_verdict_and_offers_only_what_can_work(
    workgroup: Any, operator_client: Client
) -> None:
    chosen = {"form": "1", "host": workgroup.source_host.pk, "vm": "Win11-B", "target": workgroup.target_host.pk}
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "step": "method"}).content.decode()
    for method in ("pull", "export", "live"):
        assert f'data-method="{method}" data-runnable="no"' in page
        assert f'name="method" value="{method}"' not in page  # shown with its reasons, not offered
    assert "A workgroup pair cannot live-migrate" in page and "What would make it work" in page
    assert 'data-method="register" data-runnable="yes"' in page and 'name="method" value="register"' in page
    # Register asks for the VM's configuration file, and lists the folders the target reported for it.
    folders = re.search(r'<ul id="target-folders">(.*?)</ul>', page, re.S)
    assert folders is not None and f"<code>{VM_ROOT}</code>" in folders.group(1)
    assert 'name="files_path"' in page and 'name="new_id"' not in page  # no copy method can work here


def test_the_review_warns_of_the_vm_id_left_on_two_hosts_and_asks_the_name_to_remove_the_source(
    sim_lab: Any, registered_host: Any, operator_client: Client
) -> None:
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = (registered_host(sim) for sim in lab.hosts)
    assert refresh_host(source).ok
    chosen = {"form": "1", "host": source.pk, "vm": "Win11-B", "target": target.pk, "method": "export"}
    chosen |= {"unseal": "authorise", "source_after": "off", "start": "on", "step": "review"}
    page = operator_client.get("/jobs/new/migrate/", chosen).content.decode()
    vm_id = lab.hosts[0].model.vm("Win11-B").id
    assert 'id="twin-warning"' in page and f"keeps its ID {vm_id} on HV02" in page
    assert 'id="migrate-submit"' in page and "Show PowerShell" in page and 'name="confirm_name"' not in page
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "new_id": "on"}).content.decode()
    assert 'id="twin-warning"' not in page  # a copy with a new ID is another VM
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "source_after": "remove"}).content.decode()
    assert 'id="twin-warning"' not in page and 'name="confirm_name"' in page
    # The review's own form starts the job: every choice went along in hidden fields, the name typed.
    form = re.search(r'<form method="post">(.*?)</form>', page, re.S)
    assert form is not None
    sent = hidden_of(form.group(0)) | {"confirm_name": "Win11-B"}
    response = operator_client.post("/jobs/new/migrate/", sent)
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.params["source_after"] == "remove"
    assert job.params["method"] == "export" and job.params["unseal"] == "authorise"


def test_live_migration_is_refused_from_the_stored_inventory_when_a_host_has_it_off(
    sim_lab: Any, registered_host: Any, operator_client: Client
) -> None:
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    lab.hosts[1].model.live_migration = False  # HV02 never ran Enable-VMMigration
    source, target = (registered_host(sim) for sim in lab.hosts)
    assert refresh_host(source).ok and refresh_host(target).ok
    chosen = {"form": "1", "host": source.pk, "vm": "Win11-B", "target": target.pk}
    page = operator_client.get("/jobs/new/migrate/", {**chosen, "step": "method"}).content.decode()
    assert 'data-method="live" data-runnable="no"' in page and 'name="method" value="live"' not in page
    assert "Live migration is not enabled on HV02" in page and 'href="/hosts/prepare/#live-migration"' in page
    # The review refuses it before asking either host: nothing more is sent to them.
    sent = [len(sim.command_log) for sim in lab.hosts]
    chosen |= {"method": "live", "unseal": "carry", "source_after": "off", "start": "on", "step": "review"}
    page = operator_client.get("/jobs/new/migrate/", chosen).content.decode()
    assert "Live migration is not enabled on HV02" in page and "Live migration is not enabled on HV01" not in page
    assert 'href="/hosts/prepare/#live-migration"' in page and 'id="migrate-submit"' not in page
    assert [len(sim.command_log) for sim in lab.hosts] == sent


def test_the_wizard_speaks_japanese_to_a_japanese_browser(workgroup: Any, operator_client: Client) -> None:
    chosen = {"form": "1", "host": workgroup.source_host.pk, "vm": "Win11-B", "target": workgroup.target_host.pk}
    page = operator_client.get(
        "/jobs/new/migrate/", {**chosen, "step": "method"}, HTTP_ACCEPT_LANGUAGE="ja"
    ).content.decode()
    assert "ホスト間で仮想マシンを移行" in page and "3. 移行方法" in page and "使用不可" in page
    assert "ワークグループのホスト間ではライブ マイグレーションできません" in page  # a verdict, made at run time
    assert "移行先に既にある仮想マシン ファイルを登録" in page  # a method's label, from a lazy table
