"""The REST API: hosts, inventory, vault metadata, jobs and the audit trail, for scripts with a personal token.

It sits above jobs and hosts and translates only: a job starts through the same workflow forms and preflights as
its page, and permissions are console.roles' (narrowed by the token's role). Nothing of the console imports it.
"""
