"""Waiting for jobs that a worker runs: the one way tests poll the database for a job's state or a log line.

    job = wait_for_job(create_job(operator, "escrow_guardian", hosts=[host]))   # ended, however it ended
    wait_for_job(second, states={JobState.WAITING}, timeout=10)                  # any state, with its own timeout
    wait_for_line(job, "holding")                                                # a line the job has logged

A job that does not get there fails the test with the state it stayed in and the end of its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from jobs.models import TERMINAL_STATES, Job, JobLogLine

POLL_SECONDS = 0.05


def wait_for_job(job: Job, states: Iterable[str] = TERMINAL_STATES, timeout: float = 60) -> Job:
    """`job`, refreshed from the database, once its state is one of `states` (by default: any final state)."""
    wanted = frozenset(states)

    def arrived() -> bool:
        job.refresh_from_db()
        return job.state in wanted

    if not _poll(arrived, timeout):
        waiting = f" (waiting for {job.waiting_for})" if job.waiting_for else ""
        raise AssertionError(
            f"job {job.pk} stayed {job.state}{waiting} for {timeout} s, expected {' or '.join(sorted(wanted))}; "
            f"its log ends:\n{log_tail(job)}"
        )
    return job


def wait_for_line(job: Job, text: str, timeout: float = 20) -> None:
    """Return once `job` has logged a line that reads exactly `text`."""
    if not _poll(lambda: JobLogLine.objects.filter(job=job, text=text).exists(), timeout):
        job.refresh_from_db()
        raise AssertionError(f"job {job.pk} ({job.state}) never logged {text!r}; its log ends:\n{log_tail(job)}")


def log_tail(job: Job, lines: int = 20) -> str:
    texts = JobLogLine.objects.filter(job=job).order_by("-seq").values_list("text", flat=True)[:lines]
    return "\n".join(reversed(list(texts)))


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def log_integrity(job: Job) -> dict[str, int]:
    """How the job's saved log stands: its lines, the seqs missing below its last_seq (lost lines) and the seqs saved
    twice (duplicates). What a fault test asserts and records for benchmarks/security_matrix.py."""
    job.refresh_from_db()
    seqs = list(JobLogLine.objects.filter(job=job).values_list("seq", flat=True))
    return {
        "lines": len(seqs),
        "lost_lines": len(set(range(1, job.last_seq + 1)) - set(seqs)),
        "duplicated_lines": len(seqs) - len(set(seqs)),
    }
