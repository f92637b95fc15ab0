"""Fencing of lost jobs: a runner that no longer owns its job (paused while the reaper declared it lost, or taken
over by another runner) sends nothing more to any host, writes no line, step or result into the job, and leaves an
orphaned-run record and an audit event that the job's page shows. Also: a lost job names the temporary files its
steps left on a host, with the command that removes them."""

from __future__ import annotations

import ast
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.models import AuditEvent
from hosts.models import Host
from hosts.remoting.catalog.guardians import GetGuardians, RemoveFiles, WriteFileBytes
from jobs.kinds import (
    JobContext,
    OwnershipLost,
    forget_temporary_files,
    job_kind,
    note_temporary_files,
    running,
)
from jobs.models import TEMPORARY_FILES, HostLock, Job, JobLogLine, JobState, JobStep, OrphanedRun
from jobs.services import create_job
from tests.plugins.jobs import log_integrity

WORKER_JOB_KINDS = True  # the worker process imports this module, so it knows the test-only kind below

REPO = Path(__file__).resolve().parents[2]
RUNNER, OTHER_RUNNER = "console-1:101:aaaa", "console-2:202:bbbb"
SLOW_CMDLET = "Get-HgsGuardian"  # what the simulated host answers slowly: the worker is paused while it runs
PFX_FILES = [r"C:\Windows\Temp\gc-fence-signing.pfx", r"C:\Windows\Temp\gc-fence-encryption.pfx"]


@job_kind("test_fenced_copy", label="Copy PFX files in several operations (test)", mutating=True)
def fenced_copy(ctx: JobContext) -> str:
    """Like an import: note the temporary files, write one, read the guardians (slow), write the other, remove both."""
    assert ctx.host is not None
    session = ctx.session(ctx.host)
    with ctx.step(f"Copy the PFX files to {ctx.host}"):
        note_temporary_files(ctx.host, PFX_FILES)
        session.run(WriteFileBytes(PFX_FILES[0], b"signing"))
        session.run(GetGuardians())
        try:
            session.run(WriteFileBytes(PFX_FILES[1], b"encryption"))
        except Exception as exc:  # noqa: BLE001 - what a careless workflow writes: fencing must pass through it
            ctx.log(f"swallowed: {exc}", "warning")
        session.run(RemoveFiles(PFX_FILES))
        forget_temporary_files(ctx.host, PFX_FILES)
    return "copied"


def running_job(host: Host | None = None, runner: str = RUNNER, **fields: Any) -> Job:
    fields = {"heartbeat_at": timezone.now(), **fields}
    job = Job.objects.create(
        kind="test_fenced_copy", state=JobState.RUNNING, runner=runner, host_names=[host.name] if host else [], **fields
    )
    if host is not None:
        job.hosts.set([host])
    return job


def context(job: Job, lines: list[tuple[str, str]] | None = None) -> JobContext:
    hosts = list(job.hosts.all())
    return JobContext(job, hosts, lambda text, level: (lines if lines is not None else []).append((text, level)))


def cmdlets(sim: Any) -> list[str]:
    return [entry["cmdlet"] for entry in sim.command_log]


# The hook and the exception, in-process ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_operation_is_sent_only_while_the_job_runs_under_this_runner(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    job = running_job(host)
    ctx = context(job)
    try:
        ctx.session(host).run(GetGuardians())
        assert cmdlets(sim) == [SLOW_CMDLET]
        assert Job.objects.get(pk=job.pk).take_over(OTHER_RUNNER)  # a redelivered task took the job over
        with pytest.raises(OwnershipLost) as lost:
            try:
                ctx.session(host).run(WriteFileBytes(PFX_FILES[0], b"signing"))
            except Exception:  # noqa: BLE001 - proves no `except Exception` in a workflow can swallow it
                pytest.fail("OwnershipLost was caught by `except Exception`")
        assert cmdlets(sim) == [SLOW_CMDLET]  # nothing more reached the host
        assert lost.value.stopped_before.startswith(f"Set-Content -Path '{PFX_FILES[0]}'")
        with pytest.raises(OwnershipLost):  # and the run stops at its next safe point too
            ctx.check_cancelled()
    finally:
        ctx.close_sessions()


def test_the_fencing_exception_is_caught_by_no_workflow() -> None:
    """OwnershipLost is no Exception, and no workflow catches BaseException or uses a bare except — unless it only
    cleans up and raises the same exception again."""
    assert issubclass(OwnershipLost, BaseException) and not issubclass(OwnershipLost, Exception)
    catch_all = []
    for path in sorted((REPO / "jobs" / "workflows").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and (
                node.type is None or (isinstance(node.type, ast.Name) and node.type.id == "BaseException")
            ):
                reraises = isinstance(node.body[-1], ast.Raise) and node.body[-1].exc is None
                if not reraises:
                    catch_all.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert catch_all == []


@pytest.mark.django_db
def test_a_runner_that_lost_its_job_writes_no_line_step_or_result_into_it() -> None:
    job = running_job(last_seq=2)
    with pytest.raises(OwnershipLost), context(job).step("Copy"):  # the step's end is refused
        assert job.save_lines(RUNNER, [JobLogLine(job=job, seq=3, at=timezone.now(), text="mine")])
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
        assert Job.objects.get(pk=job.pk).mark_lost()  # the reaper: its explanation is line 4
        late = [JobLogLine(job=job, seq=4, at=timezone.now(), text="too late")]
        assert not job.save_lines(RUNNER, late)  # no UNIQUE constraint failure, and nothing saved
    job.refresh_from_db()
    assert list(JobLogLine.objects.filter(job=job).values_list("seq", "text")) == [(3, "mine"), (4, job.error)]
    assert not job.heartbeat(RUNNER)  # a lost job keeps the heartbeat its explanation names
    with pytest.raises(OwnershipLost):
        context(job).record("guardian_name", "UntrustedGuardian")
    with pytest.raises(OwnershipLost), context(job).step("Remove the guardian", destructive=True):
        pytest.fail("a step started by a runner that lost its job")
    with pytest.raises(OwnershipLost), running(context(job)):
        note_temporary_files("HV01", PFX_FILES)  # outside a step: a step of its own, which it cannot write either
    job.refresh_from_db()
    assert job.results == {} and job.state == JobState.LOST
    assert list(JobStep.objects.filter(job=job).values_list("key", "state")) == [("Copy", "started")]


# Temporary files ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_temporary_files_are_noted_with_the_running_step_before_they_are_written_and_forgotten_once_removed() -> None:
    job = running_job()
    ctx = context(job)
    with running(ctx), ctx.step("Copy the PFX files") as step:
        note_temporary_files("HV01", PFX_FILES)
        assert JobStep.objects.get(job=job).data == {TEMPORARY_FILES: {"HV01": PFX_FILES}}  # saved at once
        step.data["copied"] = 1
        forget_temporary_files("HV01", PFX_FILES[:1])
        assert Job.objects.get(pk=job.pk).temporary_files_left() == {"HV01": PFX_FILES[1:]}
        forget_temporary_files("HV01", PFX_FILES[1:])
    assert JobStep.objects.get(job=job).data == {"copied": 1}
    note_temporary_files("HV01", PFX_FILES)  # outside a job: nothing to note, no error


@pytest.mark.django_db
def test_a_lost_job_names_the_temporary_files_left_on_each_host_with_the_command_that_removes_them() -> None:
    stale = timezone.now() - timedelta(minutes=5)
    job = running_job(heartbeat_at=stale)
    hostile = "C:\\Windows\\Temp\\gc-it's-$(calc)-`n\u2019.pfx"
    JobStep.objects.create(job=job, key="Copy", data={TEMPORARY_FILES: {"HV01": [PFX_FILES[0], hostile]}})
    JobStep.objects.create(job=job, key="Copy back", data={TEMPORARY_FILES: {"HV02": [PFX_FILES[1]]}})
    JobStep.objects.create(job=job, key="Done", state="done", data={TEMPORARY_FILES: {}})
    assert job.mark_lost()
    assert (
        f"Temporary files may be left on HV01 (PFX files hold private keys): remove them there with "
        f"Remove-Item -LiteralPath '{PFX_FILES[0]}' -Force; "
        "Remove-Item -LiteralPath 'C:\\Windows\\Temp\\gc-it''s-$(calc)-`n\u2019\u2019.pfx' -Force"
    ) in job.error
    assert "HV02 (PFX files hold private keys): remove them there with Remove-Item -LiteralPath" in job.error
    assert job.error.endswith(f"Remove-Item -LiteralPath '{PFX_FILES[1]}' -Force")
    assert JobLogLine.objects.get(job=job).text == job.error  # the log's last line says it too

    clean = running_job(heartbeat_at=stale)
    assert clean.mark_lost()
    assert "Temporary files" not in clean.error


# The whole story with a real worker: paused, declared lost, resumed -------------------------------------------


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


@pytest.mark.worker
def test_a_paused_worker_resumed_after_its_job_was_declared_lost_sends_nothing_more(
    celery_worker_process: Any,
    operator: Any,
    viewer: Any,
    sim_host: Any,
    registered_host: Any,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    arrived = threading.Event()
    delay_for = sim.faults.delay_for

    def spy(cmdlet: str) -> float:
        if cmdlet.lower() == SLOW_CMDLET.lower():
            arrived.set()
        return delay_for(cmdlet)

    monkeypatch.setattr(sim.faults, "delay_for", spy)
    sim.faults.slow_cmdlet = (SLOW_CMDLET, 3.0)
    worker_log_before = len(celery_worker_process.output())

    job = create_job(operator, "test_fenced_copy", hosts=[host])
    assert arrived.wait(30), "the job never sent the slow operation"
    time.sleep(0.3)  # its log line saved: not paused inside a database write
    os.kill(celery_worker_process.pid, signal.SIGSTOP)
    try:
        celery_worker_process.pool.start_another()  # its reaper marks the silent job lost
        wait_until(lambda: Job.objects.get(pk=job.pk).state == JobState.LOST, 60, "the job marked lost")
        wait_until(lambda: SLOW_CMDLET in cmdlets(sim), 10, "the operation in flight ending on the host")
        sent_until_lost = list(sim.command_log)
        assert not HostLock.objects.exists()  # released by the reaper: another job may now take the host
    finally:
        os.kill(celery_worker_process.pid, signal.SIGCONT)
    wait_until(lambda: OrphanedRun.objects.filter(job=job).exists(), 30, "the resumed runner noticing")
    time.sleep(1)  # room for a runner that wrongly carried on

    assert sim.command_log == sent_until_lost
    integrity = log_integrity(job)
    assert integrity["lost_lines"] == integrity["duplicated_lines"] == 0
    after_loss = len(sim.command_log) - len(sent_until_lost)
    record_property("fault", {"case": "paused worker", "commands_after_loss": after_loss, **integrity})
    assert cmdlets(sim) == ["Set-Content", SLOW_CMDLET]  # never the second file, never Remove-Item
    job.refresh_from_db()
    assert job.state == JobState.LOST
    lines = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("seq", "text"))
    assert [seq for seq, _ in lines] == list(range(1, job.last_seq + 1))
    assert lines[-1][1] == job.error  # the reaper's explanation is still the last line
    assert f"Remove-Item -LiteralPath '{PFX_FILES[0]}' -Force" in job.error

    orphan = OrphanedRun.objects.get(job=job)
    assert orphan.stopped_before.startswith(f"Set-Content -Path '{PFX_FILES[1]}'")
    assert orphan.job_state == JobState.LOST and orphan.steps_done == []
    orphan_texts = [text for _, _, text in orphan.lines]
    assert any("no longer owns the job" in text for text in orphan_texts)
    assert not any("swallowed" in text for text in [*orphan_texts, *(t for _, t in lines)])
    every_line = [t for _, t in lines] + orphan_texts
    # Each line kept once, in the job's log or the orphaned run: the slow operation, and Set-Content twice (the first
    # sent, the second logged by the resumed runner and stopped before it was sent).
    for operation, times in (("→ Set-Content", 2), (f"→ {SLOW_CMDLET}", 1)):
        assert sum(text.startswith(operation) for text in every_line) == times, every_line
    new_output = celery_worker_process.output()[worker_log_before:]
    assert "UNIQUE constraint" not in new_output and "IntegrityError" not in new_output

    actions = list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.pk))
        .order_by("at", "id")
        .values_list("action", flat=True)
    )
    assert actions == ["job.create", "job.lost", "job.orphaned"]
    detail = AuditEvent.objects.get(action="job.orphaned").detail
    assert detail["stopped_before"] == orphan.stopped_before and detail["runner"] == orphan.runner

    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "Orphaned run" in page and "sent nothing more to any host" in page
    assert f"Set-Content -Path &#x27;{PFX_FILES[1]}&#x27;" in page
    assert "no longer owns the job" in page
