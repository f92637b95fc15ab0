"""Import a guardian from the vault onto a host, so the host can start the VMs sealed to it."""
