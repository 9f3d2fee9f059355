"""Targets: the systems actions talk to, their settings and their drivers."""
