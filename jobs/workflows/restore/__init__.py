"""Restore after a reinstall: find the guardians a VM is sealed to, import the vault's pair for one of them, and
start the VM to prove it unseals."""
