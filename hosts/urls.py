"""URLs of the hosts app: the host registry under /hosts/."""

from __future__ import annotations

from django.urls import include, path

from . import shares, views

host_patterns = [
    path("", views.host_list, name="list"),
    path("new/", views.host_create, name="create"),
    path("prepare/", views.prepare_host, name="prepare"),
    path("shares/", shares.share_list, name="shares"),
    path("shares/<int:pk>/delete/", shares.share_delete, name="share-delete"),
    path("<int:pk>/", views.host_detail, name="detail"),
    path("<int:pk>/edit/", views.host_edit, name="edit"),
    path("<int:pk>/delete/", views.host_delete, name="delete"),
    path("<int:pk>/test/", views.host_test, name="test"),
]

urlpatterns = [path("hosts/", include((host_patterns, "hosts")))]
