"""Migration between lab hosts: the options, the checks on both hosts and the plan of what will run, and what"""
