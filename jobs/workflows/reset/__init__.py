"""Reset a broken guardian, and undo a reset: the plan (what runs, and what Show PowerShell prints), the kind, the
pages."""
