"""The migration job's outline: the job page lists the steps its options decide before it runs ("to come"), and the
steps the job records are those same steps, done, with the ones the hosts' answers decided (shutting the VM down,
carrying its owner's pair) in their place among them."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils.html import escape

from jobs.models import Job, JobState
from jobs.runner import execute
from jobs.workflows.migrate.plan import MigrationOptions
from jobs.workflows.migrate.run import migration_outline
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.users import client_for
from tests.plugins.worlds import registered


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    return registered(kind_to_the_second_hop(sim_lab(scenarios=["migration"])), registered_host)


def migration_job(lab: Any, user: Any, opts: MigrationOptions) -> Job:
    job = Job.objects.create(
        kind="migrate_vm", host_names=["HV01", "HV02"], vms=[opts.vm_name], params=opts.as_params(), requested_by=user
    )
    job.hosts.set([lab.source_host, lab.target_host])
    return job


def steps_of(job: Job) -> list[tuple[str, str]]:
    return [(step.title, step.state) for step in job.progress().steps]


@pytest.mark.django_db(transaction=True)
def test_an_export_job_shows_its_planned_steps_and_then_runs_them_all(lab: Any, admin: Any) -> None:
    opts = MigrationOptions("Win11-A", method="export", unseal="carry", source_after="remove")
    job = migration_job(lab, admin, opts)
    planned = [
        "Preflight on HV01 and HV02",
        f"Export-VM 'Win11-A' to the lab share {opts.share}",
        "Compare-VM on HV02",
        "Import-VM 'Win11-A' on HV02",
        "Start 'Win11-A' on HV02 and check it runs",
        "Remove the source copy of 'Win11-A' from HV01",
    ]
    assert steps_of(job) == [(title, "to_come") for title in planned]
    page = client_for(admin).get(f"/jobs/{job.pk}/").content.decode()
    assert all(escape(title) in page for title in planned) and "0 of 6 done" in page

    assert execute(job.pk) == JobState.SUCCEEDED, Job.objects.get(pk=job.pk).error
    steps = steps_of(Job.objects.get(pk=job.pk))
    assert {state for _, state in steps} == {"done"}  # nothing planned was left out, nothing recorded unplanned
    titles = [title for title, _ in steps]
    assert [title for title in titles if title in planned] == planned
    # What the hosts' answers decided, in its place: Win11-A ran, so it was shut down before the export; the vault
    # lacked its owner's pair, so it was escrowed and imported on HV02 after the preflight.
    assert (
        titles[1:4]
        == [
            "Escrow the owner guardian of 'Win11-A' from HV01",
            titles[2],
            "Shut down 'Win11-A' on HV01",
        ]
        and titles[2].startswith("Import ")
        and titles[2].endswith(" to HV02")
    )


@pytest.mark.django_db(transaction=True)
def test_a_live_migration_job_plans_the_move_and_leaves_no_source_copy_step(lab: Any, admin: Any) -> None:
    job = migration_job(lab, admin, MigrationOptions("Win11-A", method="live", unseal="carry", start=False))
    planned = ["Preflight on HV01 and HV02", "Compare-VM on HV01 for the move to HV02", "Move-VM 'Win11-A' to HV02"]
    assert steps_of(job) == [(title, "to_come") for title in planned]
    assert execute(job.pk) == JobState.SUCCEEDED, Job.objects.get(pk=job.pk).error
    steps = steps_of(Job.objects.get(pk=job.pk))
    assert [title for title, _ in steps if title in planned] == planned and {s for _, s in steps} == {"done"}


def test_the_pull_and_register_outlines_follow_their_own_steps() -> None:
    share = "\\\\HV01\\VMExports"
    pull = MigrationOptions("Win11-B", method="pull", share=share + "\\", source_after="off", start=False)
    assert migration_outline(pull, "HV01", "HV02") == [
        "Preflight on HV01 and HV02",
        f"Export-VM 'Win11-B' on HV01 to the folder behind {share}",
        f"Map {share} on HV02 with the share's account",
        f"Copy the export from {share} to HV02",
        f"Remove the mapping of {share} on HV02",
        "Compare-VM on HV02",
        "Import-VM 'Win11-B' on HV02",
    ]
    register = MigrationOptions("Win11-B", method="register", files_path="D:\\VMs\\x.vmcx", source_after="remove")
    assert migration_outline(register, "HV01", "HV02")[1:] == [
        "Compare-VM on HV02",
        "Import-VM 'Win11-B' on HV02",
        "Start 'Win11-B' on HV02 and check it runs",
        "Remove the source copy of 'Win11-B' from HV01",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_japanese_job_plans_and_records_its_steps_in_japanese_whoever_looks(lab: Any, admin: Any) -> None:
    opts = MigrationOptions("Win11-B", method="export", unseal="carry")
    job = migration_job(lab, admin, opts)
    job.language = "ja"
    job.save(update_fields=["language"])
    assert steps_of(job)[0] == ("HV01 と HV02 の事前チェック", "to_come")  # the viewer's language is English here
    assert execute(job.pk) == JobState.SUCCEEDED, Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    steps = steps_of(job)
    assert {state for _, state in steps} == {"done"} and "Import-VM 'Win11-B' を HV02 で" in [t for t, _ in steps]
    assert "を HV01 から HV02 に移行しました" in job.summary
