"""Fixtures: worker."""
