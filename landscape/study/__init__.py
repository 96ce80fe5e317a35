"""The batch-size study of the seed paper: its config and bundled presets, the cached pipeline, the report."""
from .._lazy import exporter

_EXPORTS = {"StudyConfig": ".config", "load_config": ".config", "StudyRun": ".run", "write_report": ".report"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
