"""The API's views: each translates a request into one query or one action of jobs/hosts and back, no more.

A view's `permissions` maps a method to the console permission it needs (api.permissions.RolePermission); the
security matrix (tests/console/test_api_security.py) reads the same map.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from console.models import AuditEvent
from console.params import parse_id
from hosts.inventory import reading
from hosts.inventory.models import Guardian, VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.models import TERMINAL_STATES, ApprovalRefused, Job, JobLogLine, JobState
from jobs.registry import KINDS
from jobs.services import cancel_job, create_job
from jobs.workflows.approval import APPROVE_PERMISSION, decide
from jobs.workflows.preflights import WORKFLOWS, Outcome, preflight

from . import serializers as s
from .pagination import Pages
from .permissions import RolePermission, require

LOG_PAGE = 1000  # log lines per answer; a client asks again after the last seq it got


class ConsoleView:
    """What every API view shares: the role check and, for lists, pagination."""

    permission_classes = [RolePermission]
    pagination_class = Pages
    permissions: ClassVar[dict[str, str]] = {"GET": "view_console"}
    # query parameter → ORM lookup; an "id" lookup takes ASCII digits only (console.params.parse_id)
    filters: ClassVar[dict[str, str]] = {}

    def filtered(self, rows: QuerySet[Any], request: Request) -> QuerySet[Any]:
        for param, lookup in self.filters.items():
            value = request.query_params.get(param)
            if value in (None, ""):
                continue
            if lookup.endswith("_id") or lookup == "pk":
                value = parse_id(value)
                if value is None:
                    raise ValidationError({param: _("An id is a number.")})
            rows = rows.filter(**{lookup: value})
        return rows


def filter_parameters(names: list[str]) -> list[OpenApiParameter]:
    return [OpenApiParameter(name, str, required=False) for name in names]


def documented_filters(view: type[ConsoleView]) -> Any:
    """The view's filters as query parameters of its GET in the schema."""
    return extend_schema_view(get=extend_schema(parameters=filter_parameters(list(view.filters))))(view)


class FilteredList(ConsoleView, generics.ListAPIView):  # type: ignore[misc]
    def get_queryset(self) -> QuerySet[Any]:
        return self.filtered(self.rows(), self.request)

    def rows(self) -> QuerySet[Any]:
        raise NotImplementedError


@documented_filters
class HostList(FilteredList):
    serializer_class = s.HostSerializer
    filters = {"name": "name__iexact"}

    def rows(self) -> QuerySet[Any]:
        return Host.objects.order_by("name")


class HostDetail(ConsoleView, generics.RetrieveAPIView):  # type: ignore[misc]
    serializer_class = s.HostSerializer
    queryset = Host.objects.all()


@documented_filters
class VmList(FilteredList):
    serializer_class = s.VirtualMachineSerializer
    filters = {"host": "host_id", "name": "name__iexact", "state": "state__iexact"}

    def rows(self) -> QuerySet[Any]:
        return VirtualMachine.objects.select_related("host").order_by("host__name", "name")


class VmDetail(ConsoleView, generics.RetrieveAPIView):  # type: ignore[misc]
    serializer_class = s.VirtualMachineSerializer
    queryset = VirtualMachine.objects.select_related("host")


@documented_filters
class GuardianList(FilteredList):
    serializer_class = s.GuardianSerializer
    filters = {"host": "host_id", "name": "name__iexact", "signing_thumbprint": "signing_thumbprint__iexact"}

    def rows(self) -> QuerySet[Any]:
        return Guardian.objects.select_related("host").order_by("host__name", "name")


class RiskList(ConsoleView, generics.ListAPIView):  # type: ignore[misc]
    """What is about to break, as the dashboard lists it: kind by kind, read from the stored analysis a page at a
    time."""

    serializer_class = s.RiskSerializer

    @extend_schema(parameters=filter_parameters(["code"]))
    def get(self, request: Request) -> Response:
        code = request.query_params.get("code")
        kinds = [kind for kind in reading.RISK_KINDS if not code or kind.code == code]  # unknown code: none
        page = self.paginate_queryset(reading.StoredRisks(kinds))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@documented_filters
class VaultList(FilteredList):
    """Vault entries' metadata; downloading a pair stays an interactive admin action on its page."""

    serializer_class = s.VaultEntrySerializer
    filters = {"signing_thumbprint": "signing_thumbprint__iexact", "guardian_name": "guardian_name__iexact"}

    def rows(self) -> QuerySet[Any]:
        return EscrowedPair.objects.order_by("-created_at", "-id")


class VaultDetail(ConsoleView, generics.RetrieveAPIView):  # type: ignore[misc]
    serializer_class = s.VaultEntrySerializer
    queryset = EscrowedPair.objects.all()


@documented_filters
class AuditList(FilteredList):
    serializer_class = s.AuditEventSerializer
    filters = {"action": "action", "username": "username", "object_type": "object_type", "object_id": "object_id"}

    def rows(self) -> QuerySet[Any]:
        return AuditEvent.objects.all()


@documented_filters
class JobList(FilteredList):
    """GET: the jobs, newest first. POST: start a job of a workflow as its page does (`dry_run`: the preflight
    only) — the page's permission, form and preflight."""

    serializer_class = s.JobSerializer
    permissions = {"GET": "view_console", "POST": "run_jobs"}
    filters = {"state": "state", "kind": "kind", "host": "hosts__id", "requested_by": "requested_by_name"}

    def rows(self) -> QuerySet[Any]:
        return Job.objects.order_by("-created_at", "-id")

    @extend_schema(
        operation_id="jobs_start",
        request=s.JobStartSerializer,
        responses={200: s.PreflightSerializer, 201: s.PreflightSerializer, 400: s.PreflightSerializer},
    )
    def post(self, request: Request) -> Response:
        asked = s.JobStartSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        workflow = asked.validated_data["workflow"]
        require(request, KINDS[WORKFLOWS[workflow].kind].permission)  # the page's own permission
        outcome = preflight(workflow, asked.validated_data["choices"])
        started = None
        if outcome.job is not None and not asked.validated_data["dry_run"]:
            require(request, KINDS[outcome.job.kind].permission)  # the token's role, for the kind it becomes
            new = outcome.job
            started = create_job(request.user, new.kind, hosts=new.hosts, vms=new.vms, params=dict(new.params))
        return Response(answer(workflow, outcome, started), status=answer_status(outcome, started))


def answer(workflow: str, outcome: Outcome, started: Job | None) -> dict[str, Any]:
    new = outcome.job
    job = (
        {"kind": new.kind, "hosts": [h.name for h in new.hosts], "vms": new.vms, "params": new.params} if new else None
    )
    fields = ("steps", "impact", "warnings", "powershell", "problems")
    shown = {"workflow": workflow, **{name: getattr(outcome, name) for name in fields}, "job": job}
    return shown | {"started": s.JobSerializer(started).data if started else None}


def answer_status(outcome: Outcome, started: Job | None) -> int:
    """201 for a job started, 200 for a dry run that would start one, 400 when the preflight refuses."""
    if started is not None:
        return status.HTTP_201_CREATED
    return status.HTTP_200_OK if outcome.job is not None else status.HTTP_400_BAD_REQUEST


class JobCounts(ConsoleView, APIView):  # type: ignore[misc]
    """How many jobs ended (or stand) in each state, with the job list's filters: one query. A job that partly
    failed is counted as such, never as succeeded."""

    filters = JobList.filters

    @extend_schema(operation_id="jobs_counts", parameters=filter_parameters(list(JobList.filters)), responses=dict)
    def get(self, request: Request) -> Response:
        rows = self.filtered(Job.objects.order_by(), request).values("state").annotate(count=Count("id", distinct=True))
        counts = dict.fromkeys(JobState.values, 0) | {row["state"]: row["count"] for row in rows}
        return Response(counts)


class JobDetail(ConsoleView, generics.RetrieveAPIView):  # type: ignore[misc]
    serializer_class = s.JobSerializer
    queryset = Job.objects.all()


class JobLog(ConsoleView, APIView):  # type: ignore[misc]
    """The job's log lines after seq `after`, at most LOG_PAGE of them; `ended` once the job ended and no line is
    left to read."""

    @extend_schema(
        operation_id="jobs_log",
        parameters=[OpenApiParameter("after", int, required=False, description="The last seq already read.")],
        responses=s.JobLogSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(Job, pk=pk)
        after = parse_id(request.query_params.get("after", "0") or "0")
        if after is None:
            raise ValidationError({"after": _("A seq is a number.")})
        lines = list(JobLogLine.objects.filter(job=job, seq__gt=after).order_by("seq")[:LOG_PAGE])
        last = lines[-1].seq if lines else after
        ended = job.state in TERMINAL_STATES and last >= job.last_seq
        data = {"state": job.state, "ended": ended, "last_seq": job.last_seq, "lines": lines}
        return Response(s.JobLogSerializer(data).data)


class JobCancel(ConsoleView, APIView):  # type: ignore[misc]
    """Cancel a job, with the permission of its kind (as its page's Cancel button)."""

    permissions = {"POST": "run_jobs"}

    @extend_schema(operation_id="jobs_cancel", request=None, responses={200: s.JobSerializer, 409: s.JobSerializer})
    def post(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(Job, pk=pk)
        kind = KINDS.get(job.kind)
        require(request, kind.permission if kind else "run_jobs")
        if job.state in TERMINAL_STATES:
            return Response(s.JobSerializer(job).data, status=status.HTTP_409_CONFLICT)
        return Response(s.JobSerializer(cancel_job(job, request.user)).data)


class JobDecision(ConsoleView, APIView):  # type: ignore[misc]
    """Approve or reject a job that waits for a second admin's approval (two-person policy), as its approval page
    does: never the requester's own, never twice, never after the request expired (409, saying why)."""

    permissions = {"POST": APPROVE_PERMISSION}

    @extend_schema(operation_id="jobs_decide", request=s.DecisionSerializer, responses={200: s.JobSerializer})
    def post(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(Job, pk=pk)
        asked = s.DecisionSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        try:
            decide(job, request.user, asked.validated_data["decision"], asked.validated_data["note"])
        except ApprovalRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(s.JobSerializer(job).data)
