"""Shared fixtures. Feature-specific fixtures live in tests/plugins/ and are loaded here."""

from __future__ import annotations

pytest_plugins = ["tests.plugins.users"]
