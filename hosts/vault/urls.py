"""URLs of the vault app."""

from django.urls import path

urlpatterns: list = []
