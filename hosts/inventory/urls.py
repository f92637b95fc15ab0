"""URLs of the inventory app."""

from django.urls import path

urlpatterns: list = []
