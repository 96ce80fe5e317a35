"""I/O: atomic file writes, the HDF5 result store (the only HDF5 door), checkpoints, wrapping."""

from .._lazy import exporter

_EXPORTS = {
    "atomic_path": ".atomic",
    "write_result": ".store",
    "write_results": ".store",
    "read_result": ".store",
    "list_results": ".store",
    "open_store": ".store",
    "result_arrays": ".store",
    "content_key": ".store",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "file_hash": ".checkpoint",
    "wrap": ".foreign",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
