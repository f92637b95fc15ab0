"""A small OpenID Connect provider for the single sign-on tests: a Django project of its own with
django-oauth-toolkit's OIDC provider, run as a separate process on loopback (tests/plugins/oidc_provider.py).

`python -m tests.oidc_provider init …` makes its SQLite database, an RSA signing key, the console's client and the
people in their groups; `python -m tests.oidc_provider set-groups NAME GROUP…` changes someone's groups; the server
itself is Django's runserver with DJANGO_SETTINGS_MODULE=tests.oidc_provider.settings.
"""
