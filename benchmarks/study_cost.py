"""What the seed-study presets cost before they run: the dry run's job list (work in trained
examples, forward passes and Hessian-vector products, upper bounds) timed with per-example costs
measured here, and the expected time on one GPU under a stated throughput assumption. The GPU
figures are estimates, never measurements: this project's machines have no GPU. On a GPU, `landscape
study --preset P --dry-run --calibrate --device cuda` measures the per-example costs there instead.

The data are stand-in folders of random images in the standard CIFAR-10 and MNIST file formats and
sizes (the cost depends on shapes and counts, not on pixels), written to a temporary folder.

Usage: python benchmarks/study_cost.py [--threads N] [--presets a,b] [--repeats R] [--gpu-rate R]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from landscape import progress
from landscape.data.datasets import data_shape
from landscape.study import presets
from landscape.study.config import load_config
from landscape.study.cost import calibrate, clock, describe, plan_text, seconds, work
from landscape.study.execute import todo
from landscape.study.plan import plan_study

# Assumed throughput of one A100/H100-class GPU training ResNet-18 on CIFAR-10 in fp32 at batch 128
# (forward, backward and SGD step), in examples per second: an assumption (an epoch of 50k images in
# about 12 s), not a measurement. The GPU is taken to be that much faster than this CPU for every
# kind of work, model and batch.
GPU_RATE = 4000.0
REFERENCE = (
    "resnet18",
    {"input_shape": [3, 32, 32], "num_classes": 10, "bn": False, "bias": False, "head_bias": False},
    ("train", 128),
)


def cifar10_folder(root: Path) -> str:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", 10000) for i in range(1, 6)), ("test_batch", 10000)]:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(),
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    return f"cifar10:{root}"


def mnist_folder(root: Path) -> str:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array, code in (
            ("images-idx3-ubyte", images, 3),
            ("labels-idx1-ubyte", labels, 1),
        ):
            header = bytes([0, 0, 8, code]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            with gzip.open(root / f"{prefix}-{kind}.gz", "wb") as fh:
                fh.write(header + array.tobytes())
    return f"mnist:{root}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", default="cifar10-resnet18,mnist-resnet18,cifar10-vgg11")
    parser.add_argument(
        "--repeats", type=int, default=2, help="Timed calls per measurement (the fastest counts)."
    )
    parser.add_argument(
        "--gpu-rate",
        type=float,
        default=GPU_RATE,
        help="Assumed trained examples per second on one GPU.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    arch, kwargs, key = REFERENCE
    reference = calibrate(arch, kwargs, [key], "cpu", repeats=args.repeats)[key]
    speedup = args.gpu_rate * reference
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); per-example costs measured on this "
        "CPU (fastest "
        f"of {args.repeats} timed calls after a warm-up, random inputs). Reference: ResNet-18 on "
        "32x32 trains at "
        f"{1 / reference:.0f} examples/s at batch 128 here; assuming {args.gpu_rate:.0f}/s on one "
        f"GPU, the GPU is {speedup:.0f}x this CPU for all work (an assumption, not a measurement)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "cifar10": cifar10_folder(Path(tmp) / "cifar10"),
            "mnist": mnist_folder(Path(tmp) / "mnist"),
        }
        for name in args.presets.split(","):
            cfg = load_config(presets.path(name))
            cfg = replace(cfg, data=data[cfg.data.split(":")[0]])
            planned = plan_study(cfg, Path(tmp) / "runs" / name, data_shape(cfg.data))
            stages = todo(planned)
            keys = sorted({key for _, _, left in stages for key in work(left)})
            rates = calibrate(cfg.arch, planned.arch_kwargs, keys, "cpu", repeats=args.repeats)
            print(
                f"\n== {name}: {cfg.arch} {cfg.arch_kwargs} on {cfg.data.split(':')[0]} (stand-in "
                "data)"
            )
            print(plan_text(stages, rates, "this CPU", list_jobs=False))
            total = work([j for _, _, left in stages for j in left])
            print(f"work: {describe(total)}")
            cpu = seconds(total, rates)
            print(
                f"CPU estimate: {clock(cpu)}; one-GPU estimate (assumption above): "
                f"{clock(cpu / speedup)}"
            )


if __name__ == "__main__":
    main()
