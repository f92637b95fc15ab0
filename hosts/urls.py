"""URLs of the hosts app: the host registry under /hosts/ and user management under /users/."""

from __future__ import annotations

from django.urls import include, path

from console import users

from . import views

host_patterns = [
    path("", views.host_list, name="list"),
    path("new/", views.host_create, name="create"),
    path("prepare/", views.prepare_host, name="prepare"),
    path("<int:pk>/", views.host_detail, name="detail"),
    path("<int:pk>/edit/", views.host_edit, name="edit"),
    path("<int:pk>/delete/", views.host_delete, name="delete"),
    path("<int:pk>/test/", views.host_test, name="test"),
]

user_patterns = [
    path("", users.user_list, name="list"),
    path("new/", users.user_create, name="create"),
    path("<int:pk>/", users.user_edit, name="edit"),
]

urlpatterns = [
    path("hosts/", include((host_patterns, "hosts"))),
    path("users/", include((user_patterns, "users"))),
]
