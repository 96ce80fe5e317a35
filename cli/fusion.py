"""Placeholder: filled by the fusion work."""
COMMANDS: list = []
