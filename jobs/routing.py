"""Websocket routes (see jobs/consumers.py)."""

from __future__ import annotations

from django.urls import URLPattern, path

from .consumers import JobListConsumer, JobLogConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/jobs/<int:job_id>/", JobLogConsumer.as_asgi()),
    path("ws/jobs/", JobListConsumer.as_asgi()),
]
