"""Gauss-Newton and empirical Fisher matrices of the loss, as operators the solvers take unchanged.

`GaussNewtonOperator` computes both exactly (its docstring has the math and the papers); the
batches, caching of the graphs, progress, torchrun sums and checks are those of
`HessianOperator`, whose two graph hooks it replaces. `curvature_operator` picks the matrix a
measurement's `curvature` names.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..choices import CURVATURES
from ..data.batches import Batch, Inputs
from ..data.split import Split
from ..errors import LandscapeError, check_choice
from ..loss import Criterion
from ..models.outputs import Output, predict
from .operator import HessianOperator

Graph = tuple[torch.Tensor, ...]


def _curved(r: torch.Tensor, z: torch.Tensor) -> bool:
    """Whether the output gradient `r` (with its graph) changes with the outputs `z`.

    The output Hessian times a fixed random vector is not zero (that of cross-entropy vanishes on
    constant rows only).

    Returns:
        True when the loss is curved in the outputs.
    """
    if not r.requires_grad:
        return False
    probe = torch.randn(
        z.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).to(z)
    h = torch.autograd.grad(r, z, probe, retain_graph=True, allow_unused=True)[0]
    return h is not None and bool(h.any())


class GaussNewtonOperator(HessianOperator):
    """G = (1/N) Σ_i J_i^T M_i J_i over `data`, the Gauss-Newton or empirical Fisher matrix.

    With outputs z_i = f_θ(x_i), per-example losses l(z_i, y_i) and J_i = ∂z_i/∂θ, the Hessian
    of the mean loss splits as H = (1/N) Σ_i J_i^T ∇²_z l J_i + (1/N) Σ_i Σ_c ∂l/∂z_ic ∇²_θ z_ic.
    The generalised Gauss-Newton matrix (`kind="ggn"`, M_i = ∇²_z l) is the first term alone
    (Schraudolph, "Fast curvature matrix-vector products for second-order gradient descent",
    Neural Computation 2002; Martens, "New insights and perspectives on the natural gradient
    method", JMLR 2020): positive semi-definite whenever the loss is convex in the outputs
    (cross-entropy is), and equal to H where the model is linear in θ. The empirical Fisher
    (`kind="fisher"`) replaces the output Hessian by the outer product of the output gradient,
    M_i = r_i r_i^T with r_i = ∇_z l, so that G = (1/N) Σ_i g_i g_i^T with g_i = J_i^T r_i the
    per-example gradient (Kunstner, Balles & Hennig, "Limitations of the empirical Fisher
    approximation for natural gradient descent", NeurIPS 2019).

    A product runs through the output layer of every batch: J v by the double-backward trick
    (J v = ∂/∂u <J^T u, v>, J^T u being linear in a dummy u; Townsend, "A new trick for
    calculating Jacobian vector products", 2017), then M J v (by automatic differentiation of the
    criterion with respect to the outputs, or r r^T row by row), then J^T by one more backward
    pass. Nothing is approximated: both are the exact matrices. The outputs of one example must
    depend on that example alone (eval mode), and the criterion must be a sum of per-example terms
    (every criterion `landscape.loss` offers is).

    Args:
        model: the model, as for `HessianOperator`.
        data: a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        output: which tensor of the model's output is the prediction.
        kind: "ggn" or "fisher" (another kind is refused by `check_choice`).

    Raises:
        LandscapeError: as `HessianOperator`; for "ggn", a loss linear in the outputs (its
            Gauss-Newton matrix through them is zero).

    Examples:
        Least squares on a linear model at w = 0 with targets 1: the GGN is the Hessian (2/N) X^T X,
        and the per-example gradients g_i = -2 y_i x_i give the Fisher (1/N) Σ_i g_i g_i^T.

        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2, 1))]
        >>> for kind in ("ggn", "fisher"):
        ...     op = GaussNewtonOperator(model, data, criterion=torch.nn.MSELoss(), kind=kind)
        ...     print(kind, op.matmat(torch.eye(2)).tolist())
        ggn [[1.0, 0.0], [0.0, 4.0]]
        fisher [[2.0, 0.0], [0.0, 8.0]]
    """

    def __init__(
        self,
        model: nn.Module,
        data: Split | Iterable[Batch],
        batch_size: int = 256,
        cache: bool | None = None,
        criterion: Criterion = "ce",
        output: Output = None,
        kind: str = "ggn",
    ):
        check_choice(kind, ("ggn", "fisher"), "Gauss-Newton kind")
        self.kind = kind
        super().__init__(model, data, batch_size, cache=cache, criterion=criterion, output=output)

    def _grads(self, x: Inputs, y: torch.Tensor, create_graph: bool) -> tuple[Graph, torch.Tensor]:
        """The graph a product needs, or without `create_graph` the gradient as `HessianOperator`'s.

        With `create_graph`: J^T u as one flat tensor, the dummy u, the outputs z, and the
        output-space factor: ∇_z l with its graph (GGN) or r = ∇_z l itself (Fisher).

        Args:
            x: the batch's inputs.
            y: its targets.
            create_graph: build the product's graph.

        Returns:
            (the graph or the gradient, the prediction).

        Raises:
            LandscapeError: "ggn" with a loss linear in the outputs.
        """
        if not create_graph:
            return super()._grads(x, y, create_graph)
        with self._graph_forward():
            out = predict(self.model, x, self.output)
        u = torch.zeros_like(out, requires_grad=True)
        jt_u = torch.autograd.grad(
            out,
            self.params,
            grad_outputs=u,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        flat = torch.cat([g.reshape(-1) for g in jt_u])
        z = out.detach().requires_grad_(True)
        r = torch.autograd.grad(self.loss(z, y), z, create_graph=self.kind == "ggn")[0]
        if self.kind == "ggn" and not _curved(r, z):
            raise LandscapeError(
                f"the loss ({self.criterion}) is linear in the model's outputs, so its "
                "Gauss-Newton "
                "matrix through them is zero (the nll `criterion` on log-probabilities?): measure "
                "a model that outputs logits with the ce `criterion`, or use the fisher `curvature`"
            )
        return (flat, u, out, z, r if self.kind == "ggn" else r.detach()), out

    def _second_backward(self, graph: Graph, vectors: torch.Tensor, retain: bool) -> torch.Tensor:
        """J^T M J v for each row v of `vectors`, the rows sharing each backward pass.

        Args:
            graph: one batch's graph from `_grads`.
            vectors: (b, size) flat vectors.
            retain: keep the graph for later products.

        Returns:
            (b, size): the batch's summed J^T M J v for each row.
        """
        flat, u, out, z, r = graph
        b = len(vectors)
        batched = b > 1
        jv = torch.autograd.grad(
            flat,
            u,
            grad_outputs=vectors if batched else vectors[0],
            retain_graph=True,
            is_grads_batched=batched,
        )[0].reshape(b, *out.shape)
        if self.kind == "ggn":
            mjv = torch.autograd.grad(
                r,
                z,
                grad_outputs=jv if batched else jv[0],
                retain_graph=True,
                is_grads_batched=batched,
            )[0].reshape(b, *out.shape)
        else:
            rows = r.reshape(1, len(r), -1)
            mjv = (rows * (rows * jv.reshape(b, len(r), -1)).sum(-1, keepdim=True)).reshape(
                b, *out.shape
            )
        gv = torch.autograd.grad(
            out,
            self.params,
            grad_outputs=mjv if batched else mjv[0],
            retain_graph=retain,
            allow_unused=True,
            materialize_grads=True,
            is_grads_batched=batched,
        )
        return torch.cat([g.reshape(b, -1) for g in gv], dim=1)


def check_curvature(curvature: str, backend: str = "landscape") -> None:
    """Raise unless `curvature` is one of CURVATURES and the backend can compute it.

    An unknown curvature is refused by `check_choice`; PyHessian measures the Hessian only.

    Args:
        curvature: "hessian", "ggn" or "fisher".
        backend: "landscape" or "pyhessian".

    Raises:
        LandscapeError: a curvature other than "hessian" with the pyhessian backend.

    Examples:
        >>> check_curvature("fisher")
        >>> check_curvature("ggn", backend="pyhessian")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the pyhessian `backend` measures the Hessian only, ...
    """
    check_choice(curvature, CURVATURES, "curvature")
    if backend == "pyhessian" and curvature != "hessian":
        raise LandscapeError(
            f"the pyhessian `backend` measures the Hessian only, not the `curvature` {curvature}"
        )


def curvature_operator(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 256,
    cache: bool | None = None,
    criterion: Criterion = "ce",
    output: Output = None,
    curvature: str = "hessian",
) -> HessianOperator:
    """The operator of `curvature` of the mean loss of `model` on `data`.

    An unknown curvature is refused (`check_curvature`); bad models or data as the operators refuse
    them.

    Args:
        model: the model measured.
        data: a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        output: which tensor of the model's output is the prediction.
        curvature: "hessian" (a `HessianOperator`), "ggn" or "fisher" (a `GaussNewtonOperator`).

    Returns:
        The operator.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = curvature_operator(model, data, criterion=torch.nn.MSELoss(), curvature="ggn")
        >>> type(op).__name__, op.matmat(torch.eye(2)).tolist()
        ('GaussNewtonOperator', [[1.0, 0.0], [0.0, 4.0]])
    """
    check_curvature(curvature)
    if curvature == "hessian":
        return HessianOperator(
            model, data, batch_size, cache=cache, criterion=criterion, output=output
        )
    return GaussNewtonOperator(
        model, data, batch_size, cache=cache, criterion=criterion, output=output, kind=curvature
    )
