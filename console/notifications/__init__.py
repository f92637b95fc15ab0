"""Notifications: what happened (a new risk, a job that failed or was lost, a certificate entering its expiry window,
a job waiting for approval) told to the people and the team channels that asked for it.

- events.py     notify(kind, subject, body, link): the one entry point; it writes what is owed, inside the caller's
                transaction, and hands it to Celery once that commits (never in the request or the job itself)
- sources.py    what calls it: the audit trail's job events, the stored analysis' new risks, expiring
                certificates
- channels.py   e-mail (Django's mail over SMTP), signed webhooks, and the chat services apprise knows
- tasks.py      delivery with retries and exponential back-off, the digest, the certificate-expiry check
- views.py      "My account → Notifications" and the admin's team destinations with the delivery log
"""
