"""Command-line interface: a thin click layer over `landscape` and `fusion`."""
