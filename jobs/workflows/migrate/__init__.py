"""Migration of a VM between lab hosts: `plan` (options and the live preflight that decides every branch), `run`
(the steps, with their ledger of changes), `sides` (the hosts as the steps reach them: live for the job, shown for
Show PowerShell), `kind` (the job) and `page` (the wizard)."""
