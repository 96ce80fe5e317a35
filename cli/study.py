"""Placeholder: filled by the study work."""
COMMANDS: list = []
