"""Turn a VM's virtual TPM off or on: the plan (what runs, and what Show PowerShell prints), the kind, the page."""
