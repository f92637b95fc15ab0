"""URLs of the jobs app, under /jobs/."""

from __future__ import annotations

from django.urls import include, path

from . import views

job_patterns = [
    path("", views.job_list, name="list"),
    path("refresh/", views.refresh_inventory, name="refresh"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/log.txt", views.job_log_text, name="log"),
    path("<int:pk>/cancel/", views.job_cancel, name="cancel"),
    path("<int:pk>/rerun/", views.job_rerun, name="rerun"),
]

# The workflows' preflight pages (/jobs/new/<workflow>/) are included once, by console/urls.py.
urlpatterns = [path("jobs/", include((job_patterns, "jobs")))]
