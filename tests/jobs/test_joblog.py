"""Workflows log with their module's logger: while a job runs, those records become lines of that job's log
(jobs/joblog.py), with the job log's levels; anywhere else they are ordinary log records and no job line."""

from __future__ import annotations

import logging
import threading

import pytest

from jobs.kinds import JobContext, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.runner import execute

story = logging.getLogger("jobs.workflows.test_story")  # as a workflow module's `logging.getLogger(__name__)`
elsewhere = logging.getLogger("tests.jobs.elsewhere")  # not domain code: never a job line


@job_kind("test_story", label="Tells a story (test)", mutating=False, refresh_inventory=False)
def tells_a_story(ctx: JobContext) -> str:
    story.debug("Reading the guardians of %s", "HV01")
    story.info("Exporting the guardian %s", "UntrustedGuardian")
    story.info("Copied 3 of 5 certificates", extra={"job_level": "progress"})
    story.warning("The guardian has no private key")
    story.error("Could not remove %s", "HV01-old")
    story.info("Connecting with password=hunter2")
    elsewhere.warning("a diagnostic of the machinery: not a line")
    # Another thread does not run the job: the refresh passes its log callables to its threads for this reason.
    other = threading.Thread(target=lambda: story.info("from another thread: not a line"))
    other.start()
    other.join()
    return "told"


@pytest.mark.django_db(transaction=True)
def test_records_of_a_workflow_logger_become_lines_of_the_running_job_and_only_then() -> None:
    story.info("before the job: not a line")
    job = Job.objects.create(kind="test_story")
    assert execute(job.pk) == JobState.SUCCEEDED
    story.warning("after the job: not a line")

    lines = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("level", "text"))
    assert lines == [
        ("info", "Tells a story (test) requested by console"),
        ("debug", "Reading the guardians of HV01"),
        ("info", "Exporting the guardian UntrustedGuardian"),
        ("progress", "Copied 3 of 5 certificates"),
        ("warning", "The guardian has no private key"),
        ("error", "Could not remove HV01-old"),
        ("info", "Connecting with password=********"),  # redacted like every line
        ("info", "Job succeeded: told"),
    ]
    assert not JobLogLine.objects.filter(text__contains="not a line").exists()


@job_kind("test_remedy", label="Names its remedy (test)", mutating=False, refresh_inventory=False)
def names_its_remedy(ctx: JobContext) -> str:
    story.error("The guardian of HV03 has lost its keys: reset it", extra={"job_link": "/jobs/new/reset/?host=3"})
    story.error("A link to another site is not kept", extra={"job_link": "//evil.example/reset"})
    return "named"


@pytest.mark.django_db(transaction=True)
def test_a_remedy_line_keeps_its_page_as_a_link_field_and_the_socket_sends_it() -> None:
    job = Job.objects.create(kind="test_remedy")
    assert execute(job.pk) == JobState.SUCCEEDED
    rows = {text: link for text, link in JobLogLine.objects.filter(job=job).values_list("text", "link")}
    assert rows["The guardian of HV03 has lost its keys: reset it"] == "/jobs/new/reset/?host=3"
    assert rows["A link to another site is not kept"] == ""
    line = JobLogLine.objects.get(job=job, link__gt="")
    assert line.as_message()[3:] == ["The guardian of HV03 has lost its keys: reset it", "/jobs/new/reset/?host=3"]
    assert len(JobLogLine.objects.get(job=job, text__startswith="A link").as_message()) == 4  # no link, no field
