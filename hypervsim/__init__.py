"""Simulated Hyper-V host speaking real WinRM/WSMan + PSRP."""
