"""The experiments of Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020), as kinds.

Skill transfer (Sec. 5.1), different widths / structured pruning (Sec. 5.2), ensemble replacement
with K models (Sec. 5.3), and the ablations of App. S2 (with OT against Git Re-Basin). Settings
(typed), a pure plan of cached jobs, their execution, the published values and the report.
"""
