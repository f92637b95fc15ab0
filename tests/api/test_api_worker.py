"""A script that knows only the OpenAPI schema: it reads /api/schema/, finds the operations by their ids, starts a
refresh and then a guardian reset on a simulated host (which, under the two-person policy, a second admin's script
approves), and follows each job's log to its end, with a real worker."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.test import Client

from api.models import ApiToken
from console.models import AuditEvent
from jobs.models import JobState
from tests.plugins.users import make_user

pytestmark = pytest.mark.worker


class SchemaClient:
    """Calls operations by their OpenAPI operationId: the paths and methods come from the schema only."""

    def __init__(self, token: str) -> None:
        self.http = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        self.schema = self.http.get("/api/schema/", HTTP_ACCEPT="application/json").json()
        self.operations = {
            operation["operationId"]: (method.upper(), path)
            for path, item in self.schema["paths"].items()
            for method, operation in item.items()
        }

    def enum(self, component: str, field: str) -> list[str]:
        prop = self.schema["components"]["schemas"][component]["properties"][field]
        if "$ref" in prop:  # drf-spectacular names a choice field's enum as a component of its own
            prop = self.schema["components"]["schemas"][prop["$ref"].rsplit("/", 1)[1]]
        return list(prop["enum"])

    def call(self, operation_id: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        method, template = self.operations[operation_id]
        path = re.sub(r"\{(\w+)\}", lambda m: str(params.pop(m.group(1))), template)
        if method == "GET":
            return self.http.get(path, params)
        return self.http.generic(method, path, json_body(body), content_type="application/json")

    def follow_log(self, job_id: int, timeout: float = 90) -> tuple[str, list[str]]:
        """Read the job's log after the last seq seen until it says the job ended: its state and every line."""
        after, lines, deadline = 0, [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.call("jobs_log", id=job_id, after=after).json()
            seqs = [line["seq"] for line in answer["lines"]]
            assert seqs == sorted(seqs) and all(seq > after for seq in seqs)  # in order, never twice
            lines += [line["text"] for line in answer["lines"]]
            after = seqs[-1] if seqs else after
            if answer["ended"]:
                return answer["state"], lines
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still running after {timeout}s: {lines[-5:]}")


def json_body(body: dict[str, Any] | None) -> str:
    return json.dumps(body or {})


def test_a_schema_only_client_refreshes_and_resets_with_approval_and_follows_the_logs(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any, settings: Any
) -> None:
    settings.TWO_PERSON_APPROVAL = True  # the reset waits for a second admin
    sim = sim_host("deleted-certs")
    registered_host(sim)
    _token, plain = ApiToken.issue(admin, "schema client", "admin", 1)
    api = SchemaClient(plain)
    _token, second_plain = ApiToken.issue(make_user("bea", "admin"), "approver's script", "admin", 1)
    approver = SchemaClient(second_plain)
    assert {"refresh", "reset"} <= set(api.enum("JobStartRequest", "workflow"))
    host = api.call("hosts_list", name=sim.name).json()["results"][0]

    refresh = api.call("jobs_start", {"workflow": "refresh", "choices": {"hosts": [host["id"]]}})
    assert refresh.status_code == 201, refresh.content
    state, lines = api.follow_log(refresh.json()["started"]["id"])
    assert state == JobState.SUCCEEDED, lines
    assert api.call("guardians_list", host=host["id"]).json()["count"] >= 1  # the inventory the reset reads

    choices = {"host": host["id"], "guardian": "UntrustedGuardian"}
    preview = api.call("jobs_start", {"workflow": "reset", "choices": choices, "dry_run": True}).json()
    assert preview["job"]["kind"] == "reset_guardian" and preview["started"] is None
    assert any("Remove-HgsGuardian" in line for line in preview["powershell"])
    reset = api.call("jobs_start", {"workflow": "reset", "choices": choices})
    assert reset.status_code == 201, reset.content
    job_id = reset.json()["started"]["id"]
    assert reset.json()["started"]["state"] == JobState.AWAITING_APPROVAL
    assert api.call("jobs_decide", {"decision": "approve"}, id=job_id).status_code == 409  # not one's own job
    assert approver.call("jobs_decide", {"decision": "approve"}, id=job_id).status_code == 200
    state, lines = api.follow_log(job_id)
    assert state == JobState.SUCCEEDED, lines
    assert api.call("jobs_retrieve", id=job_id).json()["state"] == JobState.SUCCEEDED
    assert sim.model.guardian("UntrustedGuardian") is None
    assert AuditEvent.objects.filter(action="guardian.reset", username=admin.username).exists()
    assert plain not in str(list(AuditEvent.objects.values())) + "\n".join(lines)
