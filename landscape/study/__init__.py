"""Studies: the batch-size study of the seed paper and the OT-fusion paper's experiments.

Each study (the batch-size study here, the OT-fusion paper's experiments in `otfusion`) has a
config with typed settings and bundled presets, a pure plan of its cached jobs and the code that
runs them, a report, the published values, and the cost of a study before it runs.
"""

from .._lazy import exporter

_EXPORTS = {
    "StudyConfig": ".config",
    "load_config": ".config",
    "plan_study": ".plan",
    "StudyRunner": ".execute",
    "write_report": ".report",
    "seed_tables": ".published",
    "plan_text": ".cost",
    "calibrate": ".cost",
    "load_ot_config": ".otfusion.config",
    "write_ot_report": ".otfusion.report",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
