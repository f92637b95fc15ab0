"""URLs of the inventory app: /guardians/, /vms/, /risks/ and /marks/ (lost or retired, and the way back).

console/urls.py includes them under the namespace "inventory", together with the refresh buttons' routes
(/hosts/<pk>/refresh/, /hosts/refresh/), whose views start jobs and so are console's.
"""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("guardians/", views.guardian_list, name="guardians"),
    path("vms/", views.vm_list, name="vms"),
    path("vms/<int:pk>/", views.vm_detail, name="vm"),
    path("risks/", views.risk_list, name="risks"),
    path("vms/<int:pk>/mark/", views.vm_mark, name="vm-mark"),
    path("guardians/<str:key>/mark/", views.guardian_mark, name="guardian-mark"),
    path("marks/", views.mark_list, name="marks"),
    path("marks/<int:pk>/unmark/", views.unmark, name="unmark"),
]
