"""The sections of a batch-size study's TOML file as frozen dataclasses with typed fields.

`settings.from_table` checks every field against its type: `[study]`, `[train]`, `[pairs]`,
`[fusion]`, `[finetune]` (and each of its `runs`), `[measure]`.

`[train]`, `[finetune]` and its runs take any `landscape train` setting (a field of `TrainConfig`
but the batch size, learning rate and data seed, which the study sets per parent); those fields are
optional, None meaning "not set here", and `given` lists the ones a section sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass
from typing import Any, get_type_hints

from ..training.loop import TrainConfig
from .settings import described

FUSED = ("vanilla", "ot")  # the fused models that can be fine-tuned
CONTOUR_KINDS = ("plane", "2d")
LOOP_FIELDS = frozenset(f.name for f in fields(TrainConfig)) - {"batch_size", "lr", "data_seed"}


@dataclass(frozen=True)
class StudySection:
    """`[study]`: the architecture, data, replicates and the seed study's tables to compare with.

    Examples:
        >>> StudySection(arch="mlp").data
        'digits'
    """

    arch: str
    name: str | None = None  # the file's stem
    arch_kwargs: dict = field(default_factory=dict)
    data: str = "digits"
    replicates: int = 1
    compare: str | None = None
    experiments: tuple[str, ...] = ("batch-size",)


@dataclass(frozen=True)
class FusionSection:
    """`[fusion]`: how every pair is aligned and fused.

    Examples:
        >>> FusionSection().mode, FusionSection().align_samples
        ('acts', 200)
    """

    method: str = "ot"  # "ot" or "rebasin" (Git Re-Basin)
    mode: str = "acts"
    align_samples: int = 200
    solver: str = "emd"
    reg: float = 0.01
    iterations: int = 1
    reset_bn_samples: int = 0
    seed: int = 0


@dataclass(frozen=True)
class MeasureSection:
    """`[measure]`: what is measured of every model and pair, on how many examples.

    Examples:
        >>> MeasureSection(eig_k=2).eig_k, MeasureSection().samples
        (2, 1024)
    """

    samples: int = 1024
    batch_size: int = 256
    eig_k: int = 1
    eig_tol: float = 1e-3
    trace_hvps: int = 100
    esd: bool = True
    esd_steps: int = 80
    esd_runs: int = 1
    barrier_points: int = 21
    barrier_samples: int | None = None
    contours: bool = False
    contour_kind: str = "plane"
    contour_steps: int = 15
    contour_range: float = 1.0
    contour_margin: float = 0.25
    seed: int = 0
    # beside the Hessian: the top eigenvalues and trace of these matrices ("ggn", "fisher")
    curvatures: tuple[str, ...] = ()
    sharpness: bool = False
    sharpness_kind: str = "adaptive"
    sharpness_norm: str = "l2"
    sharpness_rho: float = 0.05
    sharpness_steps: int = 10
    sharpness_restarts: int = 3
    sharpness_draws: int = 10


PAIRS = described(tuple[tuple[int, int], ...], "a list of [a, b] integer pairs")


@dataclass(frozen=True)
class PairsSection:
    """`[pairs]`: (init seed, data seed) of A and B for the same- and different-init pairs.

    The same- and different-init pairs are formed at every batch size; the mixed pairs are listed
    as `{ a = [batch, init seed, data seed], b = [...] }`.

    Examples:
        >>> PairsSection(same_init=((42, 42), (42, 43))).same_init[1]
        (42, 43)
    """

    same_init: PAIRS | None = None
    diff_init: PAIRS | None = None
    mixed: tuple[dict, ...] = ()


def _loop_fields(name: str, doc: str, *extra: tuple) -> type:
    """A frozen dataclass of `extra` fields, then the `TrainConfig` fields of LOOP_FIELDS.

    Returns:
        The class; its LOOP_FIELDS are optional, None meaning not set.
    """
    hints = get_type_hints(TrainConfig)
    loop = [(f, hints[f] | None, field(default=None)) for f in sorted(LOOP_FIELDS)]
    cls = make_dataclass(name, [*extra, *loop], frozen=True)
    cls.__doc__, cls.__module__ = doc, __name__
    return cls


TrainSection = _loop_fields(
    "TrainSection",
    "`[train]`: batch sizes, their learning rates, and training settings.",
    ("batch_sizes", tuple[int, ...]),
    ("lrs", tuple[float, ...]),
)
# Fine-tuning mirrors [train] (the seed study's A.3) except what [finetune] and its runs set.
FinetuneSection = _loop_fields(
    "FinetuneSection",
    "`[finetune]`: defaults of every fine-tuning run, and the runs.",
    ("lr_factor", float, field(default=1.0)),
    ("init", tuple[str, ...], field(default=("diff",))),
    ("models", tuple[str, ...], field(default=FUSED)),
    ("data_seed", int, field(default=0)),
    ("runs", tuple[dict, ...], field(default=())),
)
RunSection = _loop_fields(
    "RunSection",
    "One of `[[finetune.runs]]`.",
    ("batches", tuple[int, ...] | None, field(default=None)),
    ("models", tuple[str, ...] | None, field(default=None)),
    ("batch_size", int | None, field(default=None)),
    ("lr", float | None, field(default=None)),
    ("lr_factor", float | None, field(default=None)),
)


def given(section: Any, only: frozenset[str] | None = None) -> dict[str, Any]:
    """The settings a section sets: its fields that are not None (of `only`, when given).

    Args:
        section: a section's dataclass instance.
        only: the field names to keep; None keeps all.

    Returns:
        Field name -> value.

    Examples:
        >>> given(TrainSection(batch_sizes=(32,), lrs=(0.1,), epochs=3), LOOP_FIELDS)
        {'epochs': 3}
    """
    return {
        k: v for k, v in asdict(section).items() if v is not None and (only is None or k in only)
    }
