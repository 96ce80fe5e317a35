"""Placeholder: filled by the curvature work."""
COMMANDS: list = []
