"""The workflows' pages, under /jobs/new/, and the approval of a waiting job: one explicit table, so a newcomer can
grep a URL to its view."""

from __future__ import annotations

from django.urls import path

from .approval import job_approval
from .escrow.page import escrow_preflight
from .import_guardian.page import import_preflight
from .migrate.page import migrate_wizard
from .recovery_kit.page import recovery_kit_download
from .rescue.page import rescue_preflight
from .reset.page import reset_preflight, undo_preflight
from .restore.page import restore_all_preflight, restore_preflight
from .vtpm.page import vtpm_preflight

urlpatterns = [
    path("jobs/new/escrow/", escrow_preflight, name="escrow_preflight"),
    path("jobs/new/import/", import_preflight, name="import_guardian_preflight"),
    path("jobs/new/restore/", restore_preflight, name="restore_preflight"),
    path("jobs/new/restore/all/", restore_all_preflight, name="restore_all_preflight"),
    path("jobs/new/rescue/", rescue_preflight, name="rescue_preflight"),
    path("jobs/new/reset/", reset_preflight, name="reset_preflight"),
    path("jobs/new/reset/undo/", undo_preflight, name="reset_undo_preflight"),
    path("jobs/new/vtpm/", vtpm_preflight, name="vtpm_preflight"),
    path("jobs/new/migrate/", migrate_wizard, name="migrate_wizard"),
    path("jobs/<int:pk>/approval/", job_approval, name="job_approval"),  # two-person approval
    # Not a job: the kit is built in the request (it only reads the vault), but it needs the inventory and the
    # PowerShell renderer, which live above the vault.
    path("vault/recovery-kit/", recovery_kit_download, name="recovery_kit"),
]
