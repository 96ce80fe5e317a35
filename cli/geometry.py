"""Placeholder: filled by the geometry work."""
COMMANDS: list = []
