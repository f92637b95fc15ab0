"""Rescue a VM whose guardian's keys exist nowhere (no host, no vault): a new VM without a vTPM on its disks, the
old one kept, renamed, for reference. The plan (what runs, and Show PowerShell), the kind, the page."""
