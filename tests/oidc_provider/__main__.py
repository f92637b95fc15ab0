"""`python -m tests.oidc_provider init --client-id ID --client-secret S --redirect-uri URI…` and
`python -m tests.oidc_provider set-groups NAME [GROUP…]` (OP_DATA_DIR and OP_ISSUER in the environment)."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")

PASSWORD = "provider-Passw0rd-17"  # everyone's password at the provider
# Person → groups at the start. "ada" is also the name of a local account in the console's tests.
PEOPLE = {
    "alice": ["gc-admins"],
    "bob": ["gc-ops"],
    "carol": ["gc-view"],
    "dave": ["printers"],
    "ada": ["gc-admins"],
}


def signing_key() -> None:
    """A fresh RSA key for this provider's ID tokens (its JWKS publishes the public half)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.oidc_provider.settings import KEY_FILE

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    KEY_FILE.write_bytes(pem)


def init(args: argparse.Namespace) -> None:
    signing_key()
    import django

    django.setup()
    from django.core.management import call_command
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    Application.objects.create(
        name="Guardian Console",
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(args.redirect_uri),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    for name, groups in PEOPLE.items():
        create_person(name, groups)


def create_person(name: str, groups: list[str]) -> None:
    from django.contrib.auth.models import User

    user = User.objects.create_user(name, email=f"{name}@provider.test", password=PASSWORD)
    put_in_groups(user, groups)


def put_in_groups(user: object, groups: list[str]) -> None:
    from django.contrib.auth.models import Group

    user.groups.set([Group.objects.get_or_create(name=group)[0] for group in groups])  # type: ignore[attr-defined]


def set_groups(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User

    put_in_groups(User.objects.get(username=args.name), args.groups)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.oidc_provider")
    commands = parser.add_subparsers(required=True)
    start = commands.add_parser("init")
    start.add_argument("--client-id", required=True)
    start.add_argument("--client-secret", required=True)
    start.add_argument("--redirect-uri", action="append", required=True)
    start.set_defaults(run=init)
    change = commands.add_parser("set-groups")
    change.add_argument("name")
    change.add_argument("groups", nargs="*")
    change.set_defaults(run=set_groups)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
