"""Jobs run by a real Celery worker process on real Redis: lines saved in order, locks, lost jobs, cancel, resume."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jobs.kinds import JobContext, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job

WORKER_JOB_KINDS = True  # the worker imports this module, so it knows the test-only kinds below

pytestmark = pytest.mark.worker


@job_kind("test_count", label="Count lines (test)", mutating=False, refresh_inventory=False)
def count_lines(ctx: JobContext) -> str:
    for i in range(int(ctx.params.get("lines", 10))):
        ctx.log(f"line {i}", "info")
    return f"counted {ctx.params.get('lines', 10)}"


def wait_state(job: Job, states: set[str], timeout: float = 20) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} stayed {job.state}, expected {states}")


def test_worker_runs_a_job_and_saves_every_line_in_order(celery_worker_process: Any, operator: Any) -> None:
    job = create_job(operator, "test_count", params={"lines": 500})
    wait_state(job, {JobState.SUCCEEDED, JobState.FAILED})
    assert job.state == JobState.SUCCEEDED, job.error
    texts = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("seq", "text"))
    assert [seq for seq, _ in texts] == list(range(1, len(texts) + 1))
    assert [t for _, t in texts if t.startswith("line ")] == [f"line {i}" for i in range(500)]
    assert job.last_seq == len(texts)
    assert job.summary == "counted 500"
