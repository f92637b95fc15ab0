"""Workflows: job kinds composed from catalog operations. Each is a package with one job per file — `plan` (plain
functions over a host session: what to check, what to run, and what Show PowerShell prints), `kind` (the job
wrapper, with its permission), `page` (the preflight form and view). Shared: `pages` (page helpers), `transfer`
(moving private keys safely), `powershell` (rendering operations as PowerShell), `urls` (the route table).

KIND_MODULES lists the modules that register job kinds; the jobs app imports them when it is ready.
"""

KIND_MODULES = (
    "jobs.workflows.escrow.kind",
    "jobs.workflows.import_guardian.kind",
    "jobs.workflows.restore.kind",
    "jobs.workflows.reset.kind",
    "jobs.workflows.vtpm.kind",
    "jobs.workflows.migrate.kind",
    "jobs.workflows.rescue.kind",
)
