"""Full-dataset Hessian-vector products in 1 and 2 processes (torchrun, gloo) on this machine, side
by side.

Launches itself with `torch.distributed.run` for each layout (processes x threads per process),
times `--repeats` HVPs of `landscape.hessian.HessianOperator` over the whole digits training split
(no graph cache, so every product recomputes forward and double backward, as for a data set that
does not fit in memory) and the all_reduce of one parameter-sized vector alone. Prints the median
seconds per HVP, the speed-up over one single-threaded process, and the largest difference between
the products (the numbers must not change).

Usage: python benchmarks/distributed_hvp.py [--repeats R] [--width W]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import torch

LAYOUTS = [(1, 1), (1, 2), (2, 1)]  # (processes, threads per process)


def _worker(args: argparse.Namespace) -> None:
    """One rank: time HVPs and a bare all_reduce, print a JSON line on rank 0."""
    from landscape import dist, progress
    from landscape.curvature.operator import HessianOperator
    from landscape.data import load_data
    from landscape.models.zoo import arch_kwargs_for, build_model

    torch.set_num_threads(args.threads)
    dist.init("cpu")
    progress.set_quiet(True)
    data = load_data("digits")
    torch.manual_seed(0)
    model = build_model(
        "vgg11", arch_kwargs_for("vgg11", data.input_shape, data.num_classes, width=args.width)
    )
    op = HessianOperator(model.eval(), data.train, batch_size=256, cache=False)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = op.matvec(v)  # warm-up
    times = []
    for _ in range(args.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        hv = op.matvec(v)
        times.append(time.perf_counter() - t0)
    comm = []
    buf = torch.zeros(op.size, dtype=op.dtype)
    for _ in range(args.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce_sum(buf)
        comm.append(time.perf_counter() - t0)
    if dist.is_main():
        print(
            json.dumps(
                {
                    "hvp": statistics.median(times),
                    "allreduce": statistics.median(comm),
                    "params": op.size,
                    "examples": op.n_examples,
                    "hv": hv[:1000].tolist(),
                }
            )
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(procs: int, threads: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={procs}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        __file__,
        "--worker",
        "--threads",
        str(threads),
        "--repeats",
        str(args.repeats),
        "--width",
        str(args.width),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed HVPs per layout (default 7)")
    parser.add_argument(
        "--width", type=float, default=0.25, help="VGG11 width multiplier (default 0.25)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    runs = {layout: _launch(*layout, args) for layout in LAYOUTS}
    first = runs[LAYOUTS[0]]
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs; VGG11 width {args.width} with BN "
        f"({first['params']} parameters), full digits train split ({first['examples']} examples), "
        f"batch 256, no graph cache; medians of {args.repeats} HVPs after one warm-up, gloo backend"
    )
    print(
        f"\n{'processes x threads':<20} {'s / HVP':>9} {'speed-up':>9} {'all_reduce s':>13} "
        f"{'comm share':>11} {'max |Hv - Hv_1|':>16}"
    )
    base = torch.tensor(first["hv"])
    for (procs, threads), r in runs.items():
        diff = (torch.tensor(r["hv"]) - base).abs().max().item()
        comm = r["allreduce"] if procs > 1 else 0.0
        print(
            f"{f'{procs} x {threads}':<20} {r['hvp']:>9.3f} {first['hvp'] / r['hvp']:>8.2f}x "
            f"{comm:>13.5f} {comm / r['hvp']:>10.1%} {diff:>16.1e}"
        )
    print(
        "\nspeed-up: over 1 process x 1 thread, measured in this run; comm share: one all_reduce "
        "of a "
        "parameter-sized float32 vector per HVP over the HVP time (see results/distributed_hvp.md)"
    )


if __name__ == "__main__":
    main()
