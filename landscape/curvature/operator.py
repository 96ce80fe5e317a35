"""Hessian-vector products of the loss over a dataset, the engine behind eig, trace and esd.

The loss is that of docs/conventions.md: the mean cross-entropy (or the user's criterion,
`landscape.loss`) over the chosen examples, the model in eval mode, batches weighted by their size.
The Hessian is taken with respect to the trainable parameters, flattened in `model.parameters()`
order. A product is exact (no Gauss-Newton or finite differences; the formula and its paper are in
`HessianOperator`'s docstring). Several vectors go through one backward pass together
(`is_grads_batched`).

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
    """Raise unless `backend` is one of `choices.BACKENDS` and measures `criterion` and `output`.

    PyHessian calls the model itself and takes its whole output as the prediction, with the ce or
    nll loss, so it measures neither a chosen `output` nor the language-model loss; an unknown
    `backend` is refused by `check_choice`.

    Args:
        backend: "landscape" or "pyhessian".
        criterion: the loss the measurement uses (`landscape.loss`).
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`).

    Raises:
        LandscapeError: the pyhessian backend with an `output` or the "lm" criterion.

    Examples:
        >>> check_backend("pyhessian", criterion="nll")
        >>> check_backend("pyhessian", criterion="lm")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the pyhessian backend takes the model's output ...
    """
    check_choice(backend, BACKENDS, "backend")
    if backend == "pyhessian" and (output is not None or criterion == "lm"):
        raise LandscapeError(
            "the pyhessian backend takes the model's output as it is, with the ce or nll loss: "
            "use the landscape backend for `output` or the language-model loss"
        )


class Operator(Protocol):
    """A symmetric linear operator on flat vectors that counts its products (what the solvers need).

    `HessianOperator`, `ggn.GaussNewtonOperator` and `blocks.BlockOperator` are Operators; so is any
    object with these attributes and a `matmat`.

    Attributes:
        size: the length n of the vectors.
        dtype: the dtype of the vectors `matmat` takes and returns.
        device: where the vectors live.
        hvps: the products computed so far, one per vector.

    Examples:
        >>> import torch
        >>> class Diagonal:
        ...     size, dtype, device, hvps = 2, torch.float32, torch.device("cpu"), 0
        ...     def matmat(self, vectors):
        ...         self.hvps += len(vectors)
        ...         return vectors * torch.tensor([1.0, 4.0])
        >>> op: Operator = Diagonal()
        >>> op.matmat(torch.eye(2)).tolist(), op.hvps
        ([[1.0, 0.0], [0.0, 4.0]], 2)
    """

    size: int
    dtype: torch.dtype
    device: torch.device
    hvps: int

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """Products with the rows of `vectors`.

        Args:
            vectors: (b, size) vectors, one per row.

        Returns:
            (b, size): the operator times each row.
        """
        ...


def check_model(model: nn.Module) -> None:
    """Refuse a model whose Hessian over a dataset is not defined or not finite.

    The loss must be a fixed function of the parameters: a model in train mode with active
    dropout (random masks) or with BatchNorm (batch statistics, so the loss depends on how the
    data is batched) is refused, and so is one without trainable parameters. Non-finite
    parameters or buffers are refused by `check_finite`.

    Args:
        model: the model to be measured.

    Raises:
        LandscapeError: train-mode dropout or BatchNorm, or no trainable parameters.

    Examples:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        >>> check_model(model)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the model is in train mode with Dropout: ...
        >>> check_model(model.eval())
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
    """The examples of a curvature measurement as `Batches` on the model's device.

    One-shot iterators, loaders without batches and loaders whose batches change between passes
    (their Hessian is not defined) are refused by `landscape.data.batches.as_batches`.

    Args:
        model: the model measured (its first parameter gives the device).
        data: a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.

    Returns:
        The batches, sharded across ranks under torchrun.

    Raises:
        LandscapeError: an empty `Split`.

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> data = Split(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long))
        >>> [len(y) for _, y in data_batches(torch.nn.Linear(2, 3), data, batch_size=2)]
        [2, 2, 1]
    """
    batches = as_batches(data, batch_size, next(model.parameters()).device)
    if isinstance(batches.source, Split) and len(batches.source) == 0:
        raise LandscapeError("no examples to measure the Hessian on")
    return batches


def _available_bytes(device: torch.device) -> int:
    """The bytes of memory free on `device` (the GPU's, else the host's available memory).

    Returns:
        The free bytes.
    """
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
    """H = ∇²_θ (1/N) Σ_i loss(f_θ(x_i), y_i) over `data`, as an operator on flat parameter vectors.

    θ are the trainable parameters flattened in `model.parameters()` order, N the number of terms
    the criterion counts (the examples, or the predicted tokens of "lm"). A product is exact,
    reverse-over-reverse automatic differentiation H v = ∇_θ <∇_θ L(θ), v> (Pearlmutter, "Fast exact
    multiplication by the Hessian", Neural Computation 1994); how the graphs are kept or recomputed
    is in the module docstring (`path`).

    Args:
        model: the model, in eval mode if it has dropout or BatchNorm (`check_model`).
        data: a `Split` or any re-iterable of batches (a DataLoader without shuffling; `(inputs,
            targets)` or a mapping with `labels`, `landscape.data.batches`).
        batch_size: examples per batch of a `Split`.
        cache: keep every batch's gradient graph between products (True), never (False), or when
            they fit in `CACHE_FRACTION` of the free memory (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`;
            None for its rule).

    Attributes:
        size: the number of trainable parameters n.
        n_examples: N, the terms the mean loss divides by (all ranks together).
        hvps: the products computed so far, one per vector.
        criterion: the criterion's name, as results record it.

    Raises:
        LandscapeError: no examples, outputs that are not finite on the first batch, a model whose
            outputs differ between two identical calls, or whose outputs change when its BatchNorm
            layers are written as affine maps (and as `check_model` and `data_batches` refuse).

    Examples:
        A least-squares model, whose Hessian is (2/N) X^T X whatever its weights:

        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())
        >>> op.matmat(torch.eye(2)).tolist()
        [[1.0, 0.0], [0.0, 4.0]]
        >>> op.size, op.n_examples, op.hvps
        (2, 2, 2)
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
        """Show a progress bar (stderr, rank 0) counting products up to `total` while inside.

        Args:
            total: the products the bar expects.
            desc: the bar's label.

        Yields:
            Nothing; the products computed inside advance the bar.
        """
        self._bar = progress.bar(total=total, desc=desc)
        try:
            yield
        finally:
            self._bar.close()
            self._bar = None

    def _batches(self) -> Iterator[Batch]:
        """The local batches, floating inputs cast to the parameters' dtype.

        Yields:
            (inputs, targets) per batch.
        """
        for x, y in self.batches:
            yield map_inputs(self._cast, x), y

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        """`t` in the parameters' dtype when it is floating, else unchanged.

        Returns:
            The tensor.
        """
        return t.to(self.dtype) if t.is_floating_point() else t

    @property
    def path(self) -> str:
        """How products are computed: "kept graphs" or "recomputed graphs".

        "kept graphs": every batch's gradient graph is kept and a product is one second backward
        pass; "recomputed graphs": forward, backward and second backward per batch and product.
        """
        return "kept graphs" if self.cache else "recomputed graphs"

    @contextlib.contextmanager
    def _graph_forward(self) -> Iterator[int]:
        """Forwards whose graph is differentiated twice, with eval-mode BatchNorm as its affine map.

        BatchNorm written as its affine map has a cheaper second backward (`affine_norm`), and the
        math kernel of `scaled_dot_product_attention` is the only one with a second derivative.

        Yields:
            How many BatchNorm layers were rewritten.
        """
        with batchnorm_as_affine(self.model) as switched, sdpa_kernel(SDPBackend.MATH):
            self._rewritten = switched
            yield switched

    def _grads(
        self, x: Inputs, y: torch.Tensor, create_graph: bool
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The gradient of the batch's summed loss and the model's prediction.

        Args:
            x: the batch's inputs.
            y: its targets.
            create_graph: build the gradient's graph (with `_graph_forward`) for second derivatives.

        Returns:
            (the gradient per trainable parameter, the prediction).
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
        """Check the model on the first batch and decide whether graphs are kept.

        The first batch's gradient graph is built here unless graphs are never kept. A model whose
        outputs differ between two identical calls is refused, and so is one whose product graphs'
        forward (`_graph_forward`) differs from the plain one beyond rounding (`outputs_agree`). The
        bytes that graph holds are measured, and every batch's graph is kept when they fit in
        CACHE_FRACTION of the free memory.

        Without BatchNorm to rewrite, the graph's forward is the plain model's (up to the attention
        kernel's rounding) and one plain forward more is the determinism check; with it, two plain
        forwards are compared with each other and the rewritten one with them.

        Raises:
            LandscapeError: non-finite outputs, a non-deterministic model, or a rewrite that
                changes the outputs.
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
        """d<grads, v>/dθ for each row v of `vectors`; several rows share one vmapped backward pass.

        Args:
            grads: one batch's gradient graph.
            vectors: (b, size) flat vectors.
            retain: keep the graph for later products.

        Returns:
            (b, size): the batch's summed-loss Hessian times each row.
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
        """Every local batch's gradient graph, kept or built anew.

        The kept ones are built (and kept) during the first product when graphs are kept;
        otherwise they are built anew batch by batch.

        Yields:
            One batch's gradient graph at a time.
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
        """H times each row of `vectors`, summed over all ranks' batches.

        Args:
            vectors: (b, size) flat vectors (any dtype and device; cast to the parameters').

        Returns:
            (b, size): H v for each row v.

        Raises:
            ValueError: `vectors` is not of shape (b, size).
        """
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
        """H v for one flat vector.

        Args:
            vector: (size,) flat vector.

        Returns:
            (size,): H v.
        """
        return self.matmat(vector[None])[0]

    def as_linear_operator(self) -> LinearOperator:
        """The operator as a SciPy `LinearOperator` on float64 NumPy vectors.

        For SciPy's solvers, e.g. `scipy.sparse.linalg.eigsh`.

        Returns:
            A (size, size) `LinearOperator` whose products call `matmat`.
        """

        def matmat(v: np.ndarray) -> np.ndarray:
            rows = torch.as_tensor(np.asarray(v).reshape(self.size, -1).T.copy())
            return self.matmat(rows).double().cpu().numpy().T

        return LinearOperator(
            (self.size, self.size), matvec=matmat, matmat=matmat, dtype=np.float64
        )

    def gradient(self) -> torch.Tensor:
        """The mean gradient over the data, flat (one forward and backward pass; for comparisons).

        Returns:
            (size,): ∇_θ L.
        """
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for x, y in self._batches():
            out += torch.cat([g.reshape(-1) for g in self._grads(x, y, create_graph=False)[0]])
        return dist.all_reduce_sum(out) / self.n_examples


def outputs_agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two forwards of one model on one batch agree up to float rounding.

    They agree when |a - b| <= ROUNDING_ULPS * eps * (|b| + rms(b)) everywhere, eps the machine
    epsilon of their promoted dtype.

    Args:
        a: one forward's outputs.
        b: the other's, the reference for the scale.

    Returns:
        True when the shapes match and every output is within that bound.

    Examples:
        >>> import torch
        >>> b = torch.ones(3)
        >>> outputs_agree(b + 1e-5, b), outputs_agree(b + 1e-2, b), outputs_agree(b[:2], b)
        (True, False, False)
    """
    if a.shape != b.shape:
        return False
    eps = torch.finfo(torch.promote_types(a.dtype, b.dtype)).eps
    a, b = a.double(), b.double()
    return bool(((a - b).abs() <= ROUNDING_ULPS * eps * (b.abs() + b.square().mean().sqrt())).all())


def probes(
    op: Operator, count: int, generator: torch.Generator, kind: str = "rademacher"
) -> torch.Tensor:
    """`count` random vectors, drawn on CPU from `generator` so every rank gets the same ones.

    Args:
        op: the operator whose `size`, `dtype` and `device` the vectors take.
        count: how many vectors.
        generator: the random generator (CPU).
        kind: "rademacher" (entries ±1) or "normal" (standard Gaussian); another kind is refused by
            `check_choice`.

    Returns:
        (count, size) vectors.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(3, 1)
        >>> data = [(torch.ones(1, 3), torch.zeros(1, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())
        >>> v = probes(op, 2, torch.Generator().manual_seed(0))
        >>> v.shape, bool((v.abs() == 1).all())
        (torch.Size([2, 4]), True)
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
