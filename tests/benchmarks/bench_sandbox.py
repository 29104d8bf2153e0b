"""Benchmark: what one sandboxed run costs, per isolation level, and the pool's throughput.

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_sandbox.py [--runs 40]

It prints figures; it asserts nothing about speed (these machines are shared and noisy).

1. For each level this machine has (``bwrap``, ``namespaces``, and ``none`` for comparison): the wall
   time of ``--runs`` sequential runs of ``print(1)`` (the per-test overhead LiveCodeBench pays).
2. ``--runs`` runs through :func:`harness.sandbox.run_python` at once: the pool (CPU count) bounds
   them; runs per second.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.sandbox import core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    files = {"p.py": "print(1)\n"}
    levels: list[core.IsolationLevel] = []
    if shutil.which("bwrap"):
        levels.append("bwrap")
    if shutil.which("unshare"):
        levels.append("namespaces")
    levels.append("none")
    print(f"isolation here: {core.isolation().level}; pool size {core.pool_size()}")
    for level in levels:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = core.run_python_sync(files, "p.py", level=level)
            times.append(time.perf_counter() - t0)
            assert result.ok, result
        times.sort()
        p90 = times[int(0.9 * (len(times) - 1))]
        median = statistics.median(times) * 1000
        print(f"{level:>10}: median {median:6.1f} ms, p90 {p90 * 1000:6.1f} ms per run")

    async def pooled() -> float:
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(args.runs):
                tg.start_soon(core.run_python, files, "p.py")
        return time.perf_counter() - t0

    took = anyio.run(pooled)
    print(f"pool: {args.runs} runs in {took:.2f} s = {args.runs / took:.1f} runs/s")


if __name__ == "__main__":
    main()
