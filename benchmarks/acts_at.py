"""Activation-based OT fusion with activations read before or after the nonlinearity (`acts_at`):
test accuracy of the fused model on digits, for pairs of MLPs and pairs of small ResNets trained
from different initialisations and data orders.

Every pair is fused with the defaults otherwise (exact EMD, uniform marginals, Euclidean cost, 200
training examples, anchor B); the ResNets' BatchNorm statistics are recomputed on 500 training
examples after fusion, as the OT-fusion paper does for ResNets. The same examples, drawn with the
same seed, serve both settings, so the two columns differ only by `acts_at`.

Usage: python benchmarks/acts_at.py [--pairs N] [--threads N]   (about two minutes on one thread)
"""

from __future__ import annotations

import argparse
import statistics

import torch

import fusion
from landscape.data import load_data, subsample
from landscape.models.zoo import arch_kwargs_for
from landscape.training.bn import reset_bn
from landscape.training.loop import TrainConfig, init_model, train
from landscape.training.metrics import evaluate

ARCHS = (
    ("MLP 128-64", "mlp", {"hidden": [128, 64]}, 20),
    ("ResNet18 x0.125", "resnet18", {"width": 0.125}, 10),
)


def _parent(data, arch: str, kwargs: dict, epochs: int, seed: int) -> torch.nn.Module:
    """Return a model trained on `data` with init seed and data seed `seed`."""
    model = init_model(
        arch, arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs), seed
    )
    cfg = TrainConfig(batch_size=32, lr=0.05, epochs=epochs, data_seed=seed)
    return train(model, data, cfg).model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="pairs of parents per architecture")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data("digits")
    x = subsample(data.train, 200, 0).x
    print("test accuracy (%) on digits; OT fusion, mode acts, EMD, 200 examples, anchor B")
    print(f"\n{'model':<16} {'pair':>5} {'A':>6} {'B':>6} {'vanilla':>8} {'pre':>6} {'post':>6}")
    for name, arch, kwargs, epochs in ARCHS:
        gains = []
        for pair in range(args.pairs):
            a, b = (_parent(data, arch, kwargs, epochs, 2 * pair + k + 1) for k in range(2))
            fused = {"vanilla": fusion.fuse([a, b], method="vanilla")}
            for where in ("pre", "post"):
                fused[where] = fusion.fuse([a, b], x=x, acts_at=where)
            if arch != "mlp":
                for model in fused.values():
                    reset_bn(model, subsample(data.train, 500, 0))
            acc = {k: 100 * evaluate(m, data.test).acc for k, m in fused.items()}
            parents = [100 * evaluate(m, data.test).acc for m in (a, b)]
            gains.append(acc["post"] - acc["pre"])
            print(
                f"{name:<16} {pair:>5} {parents[0]:6.2f} {parents[1]:6.2f} {acc['vanilla']:8.2f} "
                f"{acc['pre']:6.2f} {acc['post']:6.2f}"
            )
        print(
            f"{name:<16} post - pre: mean {statistics.mean(gains):+.2f}, "
            f"min {min(gains):+.2f}, max {max(gains):+.2f} percentage points"
        )


if __name__ == "__main__":
    main()
