"""Turning a VM's virtual TPM off or on: the checks Hyper-V makes (the VM off, no saved state, a key protector and a"""
