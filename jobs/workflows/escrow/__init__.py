"""Escrow: copy a guardian's private keys from a host into the vault, as the well-known export script would."""
