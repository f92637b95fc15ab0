"""Fixtures: sim."""
