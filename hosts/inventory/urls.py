"""URLs of the inventory app: /guardians/, /vms/ and the refresh action of a host."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "inventory"

urlpatterns = [
    path("guardians/", views.guardian_list, name="guardians"),
    path("vms/", views.vm_list, name="vms"),
    path("vms/<int:pk>/", views.vm_detail, name="vm"),
    path("hosts/<int:pk>/refresh/", views.refresh, name="refresh-host"),
    path("hosts/refresh/", views.refresh_all, name="refresh-all"),
]
