"""Workflows: job kinds composed from catalog operations (escrow, import, restore, reset, vTPM, migrate)."""
