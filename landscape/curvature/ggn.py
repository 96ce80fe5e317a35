"""Gauss-Newton and empirical Fisher matrices of the loss, as operators the Hessian's solvers take
unchanged.

With outputs z_i = f_θ(x_i) and per-example losses l(z_i, y_i), the Hessian of the mean loss splits
as H = (1/N) Σ_i J_i^T ∇²_z l J_i + (1/N) Σ_i Σ_c ∂l/∂z_ic ∇²_θ z_ic, J_i = ∂z_i/∂θ. The generalised
Gauss-Newton matrix (GGN) is the first term alone (Schraudolph, "Fast curvature matrix-vector
products for second-order gradient descent", Neural Computation 2002; Martens, "New insights and
perspectives on the natural gradient method", JMLR 2020): positive semi-definite whenever the loss
is convex in the outputs (cross-entropy is), and equal to H where the model is linear in θ. The
empirical Fisher replaces the output Hessian by the outer product of the output gradient, F = (1/N)
Σ_i g_i g_i^T with g_i = J_i^T ∇_z l the per-example gradient (Kunstner, Balles & Hennig,
"Limitations of the empirical Fisher approximation for natural gradient descent", NeurIPS 2019).

A product runs through the output layer of every batch: J v by the double-backward trick (J v = ∂/∂u
<J^T u, v>, J^T u being linear in a dummy u; Townsend 2017), then the output-space matrix (∇²_z l by
automatic differentiation of the criterion with respect to the outputs, or r r^T with r = ∇_z l, row
by row), then J^T by one more backward pass. Nothing is approximated: both are the exact matrices.
The batches, caching of the graphs, progress, torchrun sums and checks are those of
`HessianOperator`, whose two graph hooks this class replaces.
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
    """Whether the output gradient `r` (with its graph) changes with the outputs `z`: the output
    Hessian times a fixed random vector is not zero (that of cross-entropy vanishes on constant rows
    only).
    """
    if not r.requires_grad:
        return False
    probe = torch.randn(
        z.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).to(z)
    h = torch.autograd.grad(r, z, probe, retain_graph=True, allow_unused=True)[0]
    return h is not None and bool(h.any())


class GaussNewtonOperator(HessianOperator):
    """G = (1/N) Σ_i J_i^T M_i J_i over `data`, M_i the output Hessian of the loss (`kind="ggn"`) or
    the outer product of its output gradient (`kind="fisher"`, the empirical Fisher); otherwise as
    `HessianOperator`.

    The outputs of one example must depend on that example alone (eval mode), and the criterion must
    be a sum of per-example terms (every criterion `landscape.loss` offers is).
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
        """With `create_graph`, the graph a product needs instead of the gradient's: (J^T u as one
        flat tensor, the dummy u, the outputs z, and the output-space factor: ∇_z l with its graph
        (GGN) or r = ∇_z l itself (Fisher)); without, the gradient as `HessianOperator` computes
        it.
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
        """J^T M J v for each row v of `vectors`, the rows sharing each backward pass."""
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
    """Raise unless `curvature` is one of CURVATURES, and the backend can compute it (PyHessian: the
    Hessian only).

    Raises:
        LandscapeError: for an unknown curvature or a backend without it.
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
    """The operator of `curvature` ("hessian", "ggn" or "fisher", `choices.CURVATURES`) of the mean
    loss of `model` on `data`.

    Raises:
        LandscapeError: for an unknown curvature (and as the operators do for bad models or data).
    """
    check_curvature(curvature)
    if curvature == "hessian":
        return HessianOperator(
            model, data, batch_size, cache=cache, criterion=criterion, output=output
        )
    return GaussNewtonOperator(
        model, data, batch_size, cache=cache, criterion=criterion, output=output, kind=curvature
    )
