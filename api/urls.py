"""The API's routes under /api/, and the "API tokens" page of one's own account: one explicit table."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from . import account, views
from .schema import Schema, api_docs


def api(view: Any) -> Any:
    """An API view answers an anonymous caller 401 itself (a script follows no redirect to the login page). DRF
    marks its views so already; said here for whoever reads the table."""
    return login_not_required(view.as_view())


urlpatterns = [
    path("api/schema/", api(Schema), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/hosts/", api(views.HostList), name="api-hosts"),
    path("api/hosts/<int:pk>/", api(views.HostDetail), name="api-host"),
    path("api/vms/", api(views.VmList), name="api-vms"),
    path("api/vms/<int:pk>/", api(views.VmDetail), name="api-vm"),
    path("api/guardians/", api(views.GuardianList), name="api-guardians"),
    path("api/risks/", api(views.RiskList), name="api-risks"),
    path("api/vault/", api(views.VaultList), name="api-vault"),
    path("api/vault/<int:pk>/", api(views.VaultDetail), name="api-vault-entry"),
    path("api/jobs/", api(views.JobList), name="api-jobs"),
    path("api/jobs/counts/", api(views.JobCounts), name="api-job-counts"),
    path("api/jobs/<int:pk>/", api(views.JobDetail), name="api-job"),
    path("api/jobs/<int:pk>/log/", api(views.JobLog), name="api-job-log"),
    path("api/jobs/<int:pk>/cancel/", api(views.JobCancel), name="api-job-cancel"),
    path("api/jobs/<int:pk>/decision/", api(views.JobDecision), name="api-job-decision"),
    path("api/audit/", api(views.AuditList), name="api-audit"),
    path("account/tokens/", account.api_tokens, name="api_tokens"),
    path("account/tokens/<int:pk>/revoke/", account.api_token_revoke, name="api_token_revoke"),
]
