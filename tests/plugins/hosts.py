"""Fixtures: hosts."""
