from __future__ import annotations

from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("account/notifications/", views.my_notifications, name="mine"),
    path("notifications/", views.team_notifications, name="team"),
    path("notifications/destinations/<int:pk>/", views.destination_edit, name="destination"),
    path("notifications/destinations/<int:pk>/delete/", views.destination_delete, name="destination-delete"),
    path("notifications/destinations/<int:pk>/test/", views.destination_test, name="destination-test"),
]
