"""Hessian-vector products of the loss over a dataset, the engine behind eig, trace and esd.

The loss is that of docs/conventions.md: the mean cross-entropy (or the user's criterion,
`landscape.loss`) over the chosen examples, the model in eval mode, batches weighted by their size.
The Hessian is taken with respect to the trainable parameters, flattened in `model.parameters()`
order. A product is exact (no Gauss-Newton or finite differences): reverse-over-reverse automatic
differentiation, `d/dθ <∇L(θ), v>` (Pearlmutter 1994). Several vectors go through one backward pass
together (`is_grads_batched`).

Two paths (`HessianOperator.path`), chosen by memory: when the per-batch gradient graphs fit in a
quarter of the free memory they are kept ("kept graphs"), so a product is only the second backward
pass; otherwise every product runs forward, backward and second backward batch by batch ("recomputed
graphs"). In the graphs, eval-mode BatchNorm is written as the affine map it is (`affine_norm`),
whose second backward costs less. On CPU the kept graphs measured fastest of everything tried,
torch.func's forward-over-reverse `jvp(grad(L))` with or without `vmap` and `torch.compile` included
(benchmarks/curvature_vs_peers.py). Start-up shares work: counting the examples needs no forward,
the first batch's graph-building forward is one of the two forwards of the determinism check, and
the other graphs are built during the first product. Under torchrun each rank takes its shard of the
batches and the sums are all-reduced, so every rank holds the same product.

Any model and loader (docs/models.md): batches in the forms of `landscape.data.batches`, the
prediction taken from the model's output by `landscape.models.outputs` (`output=`). The product
graphs are built with PyTorch's math kernel of `scaled_dot_product_attention` selected (the fused
CPU and GPU kernels have no second derivative), the previous selection restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import dist, progress
from ..choices import BACKENDS
from ..data.batches import Batch, Batches, Inputs, as_batches, input_tensors, map_inputs
from ..data.split import Split
from ..errors import LandscapeError, check_choice, check_finite
from ..loss import Criterion, counter, loss_name, loss_sum
from ..models.outputs import Output, predict
from .affine_norm import batchnorm_as_affine

CACHE_FRACTION = 0.25  # share of the free memory that cached gradient graphs may take
# Two forwards agree when every output is within ROUNDING_ULPS float roundings (machine epsilon of
# the dtype) of the outputs' scale, |a - b| <= ROUNDING_ULPS * eps * (|b| + rms(b)): reordered sums
# (the affine BatchNorm, another kernel) move an output by a few roundings of the terms summed into
# it, which are of the outputs' scale even when the output itself is near 0; dropout or a wrong
# rewrite moves outputs by a share of that scale.
ROUNDING_ULPS = 1024  # 1.2e-4 of the scale in float32, 2.3e-13 in float64
_STOCHASTIC = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def check_backend(backend: str, criterion: Criterion = "ce", output: Output = None) -> None:
    """Raise unless `backend` is one of BACKENDS and can measure with `criterion` and `output`
    (PyHessian calls the model itself and takes its output as the prediction).
    """
    check_choice(backend, BACKENDS, "backend")
    if backend == "pyhessian" and (output is not None or criterion == "lm"):
        raise LandscapeError(
            "the pyhessian backend takes the model's output as it is, with the ce or nll loss: "
            "use the landscape backend for `output` or the language-model loss"
        )


class Operator(Protocol):
    """A symmetric linear operator on flat vectors that counts its products (what the solvers
    need).
    """

    size: int
    dtype: torch.dtype
    device: torch.device
    hvps: int

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """Products with the rows of `vectors` (b, size) -> (b, size)."""
        ...


def check_model(model: nn.Module) -> None:
    """Refuse a model whose loss is random or depends on how the data is batched (train-mode dropout
    or BN), or whose parameters or buffers are not finite.
    """
    check_finite(model)
    if model.training:
        stochastic = [
            type(m).__name__ for m in model.modules() if isinstance(m, _STOCHASTIC) and m.p > 0
        ]
        batchwise = [
            type(m).__name__
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        if stochastic:
            raise LandscapeError(
                f"the model is in train mode with {stochastic[0]}: every Hessian-vector product "
                "would see different dropout masks; call model.eval() first"
            )
        if batchwise:
            raise LandscapeError(
                f"the model is in train mode with {batchwise[0]}: the loss would use batch "
                "statistics instead of running statistics; call model.eval() first"
            )
    if not any(p.requires_grad for p in model.parameters()):
        raise LandscapeError(
            "the model has no trainable parameters: there is no Hessian to measure"
        )


def data_batches(model: nn.Module, data: Split | Iterable[Batch], batch_size: int) -> Batches:
    """The examples of a curvature measurement as `Batches` on the model's device; refuses empty
    data and loaders whose batches change between passes (their Hessian is not defined).
    """
    batches = as_batches(data, batch_size, next(model.parameters()).device)
    if isinstance(batches.source, Split) and len(batches.source) == 0:
        raise LandscapeError("no examples to measure the Hessian on")
    return batches


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


class HessianOperator:
    """H = ∇²_θ (1/N) Σ_i loss(f_θ(x_i), y_i) over `data` as an operator on flat parameter vectors.

    `data`: a `Split` or any re-iterable of batches (a DataLoader without shuffling; `(inputs,
    targets)` or a mapping with `labels`, `landscape.data.batches`); `criterion`: "ce" (default),
    "nll", "lm" or a loss callable (`landscape.loss`); `output`: which tensor of the model's output
    is the prediction (`landscape.models.outputs`, None for its rule). `cache`: keep every batch's
    gradient graph between products (True), never (False) or when it fits in CACHE_FRACTION of the
    free memory (None). `hvps` counts products, one per vector. `as_linear_operator()` gives a SciPy
    `LinearOperator`.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Split | Iterable[Batch],
        batch_size: int = 256,
        cache: bool | None = None,
        criterion: Criterion = "ce",
        output: Output = None,
    ):
        check_model(model)
        self.batches = data_batches(model, data, batch_size)
        self.model, self.batch_size, self.cache, self.output = model, batch_size, cache, output
        self.loss = loss_sum(criterion)
        self.criterion = loss_name(criterion)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.size = sum(self.numels)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.n_examples = self.batches.examples(counter(criterion))
        if self.n_examples == 0:
            raise LandscapeError("no examples to measure the Hessian on")
        self.hvps = 0
        self._rewritten = 0  # BatchNorm layers `_graph_forward` writes as affine maps
        self._graphs: list[tuple[torch.Tensor, ...]] = []
        self._complete = False
        self._bar = None
        self._first_graph()

    @contextlib.contextmanager
    def progress(self, total: int, desc: str) -> Iterator[None]:
        """Show a progress bar (stderr, rank 0) counting products up to `total` while inside."""
        self._bar = progress.bar(total=total, desc=desc)
        try:
            yield
        finally:
            self._bar.close()
            self._bar = None

    def _batches(self) -> Iterator[Batch]:
        for x, y in self.batches:
            yield map_inputs(self._cast, x), y

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if t.is_floating_point() else t

    @property
    def path(self) -> str:
        """How products are computed: "kept graphs" (every batch's gradient graph is kept, a product
        is one second backward pass) or "recomputed graphs" (forward, backward and second backward
        per product).
        """
        return "kept graphs" if self.cache else "recomputed graphs"

    @contextlib.contextmanager
    def _graph_forward(self) -> Iterator[int]:
        """Forwards whose graph is differentiated twice: eval-mode BatchNorm written as its affine
        map (a cheaper second backward: `affine_norm`) and the math kernel of
        `scaled_dot_product_attention`, the only one with a second derivative; yields how many
        BatchNorms were rewritten.
        """
        with batchnorm_as_affine(self.model) as switched, sdpa_kernel(SDPBackend.MATH):
            self._rewritten = switched
            yield switched

    def _grads(
        self, x: Inputs, y: torch.Tensor, create_graph: bool
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The gradient of the batch's summed loss (a graph with `create_graph`, built by
        `_graph_forward`) and the model's prediction.
        """
        with self._graph_forward() if create_graph else contextlib.nullcontext():
            out = predict(self.model, x, self.output)
        grads = torch.autograd.grad(
            self.loss(out, y),
            self.params,
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )
        return grads, out

    def _first_graph(self) -> None:
        """On the first batch, whose gradient graph is built here unless graphs are never kept:
        refuse a model whose outputs differ between two identical calls, and one whose product
        graphs' forward (`_graph_forward`) differs from the plain one beyond rounding
        (`outputs_agree`); measure the bytes that graph holds and keep every batch's graph when they
        fit in CACHE_FRACTION of the free memory.

        Without BatchNorm to rewrite, the graph's forward is the plain model's (up to the attention
        kernel's rounding) and one plain forward more is the determinism check; with it, two plain
        forwards are compared with each other and the rewritten one with them.
        """
        first = next(self._batches(), None)
        if first is None:
            self.cache = bool(self.cache)
            return
        x, y = first
        seen: dict[int, int] = {}
        if self.cache is False:
            with torch.no_grad(), self._graph_forward():
                out = predict(self.model, x, self.output)
        else:
            shared = {p.untyped_storage().data_ptr() for p in self.params} | {
                t.untyped_storage().data_ptr() for t in input_tensors(x)
            }

            def pack(t: torch.Tensor) -> torch.Tensor:
                if t.untyped_storage().data_ptr() not in shared:
                    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                grads, out = self._grads(x, y, create_graph=True)
        with torch.no_grad():
            plain = predict(self.model, x, self.output)
            again = predict(self.model, x, self.output) if self._rewritten else out.detach()
        if not torch.isfinite(plain).all():
            raise LandscapeError(
                "the model's outputs on the first batch are not all finite: its loss and Hessian "
                "are not defined there"
            )
        if not outputs_agree(again, plain):
            raise LandscapeError(
                "the model gives different outputs for the same inputs (dropout or other "
                "randomness active in eval mode?): its Hessian is not defined"
            )
        if self._rewritten and not outputs_agree(out.detach(), plain):
            raise LandscapeError(
                "the model's outputs change when its eval-mode BatchNorm layers are written as "
                "their affine maps and attention uses the math kernel: the Hessian-vector "
                "products would not be those of the plain model"
            )
        if self.cache is None:
            nbytes = sum(seen.values()) + self.size * grads[0].element_size()
            batches = -(-self.batches.local_examples() // len(y))
            self.cache = nbytes * batches <= CACHE_FRACTION * _available_bytes(self.device)
        if self.cache:
            self._graphs = [grads]

    def _second_backward(
        self, grads: tuple[torch.Tensor, ...], vectors: torch.Tensor, retain: bool
    ) -> torch.Tensor:
        """d<grads, v>/dθ for each row v of `vectors`; several rows share one vmapped backward
        pass.
        """
        b = len(vectors)
        pieces = [
            v.reshape((b, *s) if b > 1 else s)
            for v, s in zip(vectors.split(self.numels, dim=1), self.shapes)
        ]
        hv = torch.autograd.grad(
            grads,
            self.params,
            grad_outputs=pieces,
            retain_graph=retain,
            allow_unused=True,
            materialize_grads=True,
            is_grads_batched=b > 1,
        )
        return torch.cat([h.reshape(b, -1) for h in hv], dim=1)

    def _graphs_for_product(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """Every local batch's gradient graph: the kept ones, built (and kept) during the first
        product when graphs are kept, or built anew batch by batch when they are not.
        """
        if self._complete:
            yield from self._graphs
            return
        for i, (x, y) in enumerate(self._batches()):
            if i < len(self._graphs):
                yield self._graphs[i]
                continue
            grads = self._grads(x, y, create_graph=True)[0]
            if self.cache:
                self._graphs.append(grads)
            yield grads
        self._complete = self.cache

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """H times each row of `vectors` (b, size) -> (b, size), summed over all ranks' batches."""
        vectors = vectors.to(device=self.device, dtype=self.dtype)
        if vectors.ndim != 2 or vectors.shape[1] != self.size:
            raise ValueError(
                f"expected vectors of shape (b, {self.size}), got {tuple(vectors.shape)}"
            )
        out = torch.zeros_like(vectors)
        for grads in self._graphs_for_product():
            out += self._second_backward(grads, vectors, retain=self.cache)
        self.hvps += len(vectors)
        if self._bar is not None:
            self._bar.update(len(vectors))
        return dist.all_reduce_sum(out) / self.n_examples

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """H v for one flat vector."""
        return self.matmat(vector[None])[0]

    def as_linear_operator(self) -> LinearOperator:
        """The operator as a SciPy `LinearOperator` (float64 NumPy vectors), e.g. for
        `scipy.sparse.linalg.eigsh`.
        """

        def matmat(v: np.ndarray) -> np.ndarray:
            rows = torch.as_tensor(np.asarray(v).reshape(self.size, -1).T.copy())
            return self.matmat(rows).double().cpu().numpy().T

        return LinearOperator(
            (self.size, self.size), matvec=matmat, matmat=matmat, dtype=np.float64
        )

    def gradient(self) -> torch.Tensor:
        """The mean gradient over the data, flat (one forward and backward pass; for cost
        comparisons).
        """
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for x, y in self._batches():
            out += torch.cat([g.reshape(-1) for g in self._grads(x, y, create_graph=False)[0]])
        return dist.all_reduce_sum(out) / self.n_examples


def outputs_agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two forwards of one model on one batch agree up to float rounding
    (`ROUNDING_ULPS`).
    """
    if a.shape != b.shape:
        return False
    eps = torch.finfo(torch.promote_types(a.dtype, b.dtype)).eps
    a, b = a.double(), b.double()
    return bool(((a - b).abs() <= ROUNDING_ULPS * eps * (b.abs() + b.square().mean().sqrt())).all())


def probes(
    op: Operator, count: int, generator: torch.Generator, kind: str = "rademacher"
) -> torch.Tensor:
    """`count` random vectors (count, size), drawn on CPU from `generator` so every rank gets the
    same ones.
    """
    if check_choice(kind, ("rademacher", "normal"), "probe kind") == "rademacher":
        v = (
            torch.randint(0, 2, (count, op.size), generator=generator, dtype=torch.int8).to(
                torch.float64
            )
            * 2
            - 1
        )
    else:
        v = torch.randn(count, op.size, generator=generator, dtype=torch.float64)
    return v.to(device=op.device, dtype=op.dtype)
