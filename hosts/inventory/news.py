"""What the stored analysis tells others when it changes: risks that were not there before.

`risks_appeared` is sent by facts.update inside the transaction of the change, only when there is news, with
`vm_risks` — [(VirtualMachine id, risk code)] of VMs whose risk is new (none before, or another one) — and
`guardians` — ids of Guardian rows that have just come to need a reset (a guardian without private keys). A
receiver that writes rows writes them with the change (and loses them with it when it rolls back); one that acts
outside the database waits for the commit (transaction.on_commit). The inventory imports nothing of who listens.
"""

from __future__ import annotations

from django.dispatch import Signal

risks_appeared = Signal()
