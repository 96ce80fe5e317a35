"""The batch-size study of the seed paper: its config and bundled presets, the cached pipeline, the report, the
seed study's published values, and the cost of a study before it runs."""
from .._lazy import exporter

_EXPORTS = {"StudyConfig": ".config", "load_config": ".config", "StudyRun": ".run", "write_report": ".report",
            "seed_tables": ".published", "plan_text": ".cost", "calibrate": ".cost"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
