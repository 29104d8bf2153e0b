"""Simulator capacity: streamed calls per second with no added latency (speed 0).

Run ``python tests/benchmarks/bench_sim.py`` (or ``pytest -m benchmark tests/benchmarks/bench_sim.py``).
The simulator runs in its own process (:func:`harness.sim.start_sim_process`); a bare
``AsyncOpenAI(max_retries=0)`` streaming loop runs in another process at concurrency 64 and 512, each
for a fixed number of calls (stopping early after 15 s). Prints figures; asserts nothing about speed.
Later overhead figures are ratios against this ceiling.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pytest

RUNS = ((64, 2000), (512, 4000))
MAX_S = 15.0


async def _client(base_url: str, concurrency: int, calls: int) -> dict[str, float]:
    import anyio
    from openai import AsyncOpenAI

    done = 0
    errors = 0
    tokens = 0
    next_call = 0
    t0 = time.perf_counter()
    async with AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0) as oa:

        async def worker() -> None:
            nonlocal done, errors, tokens, next_call
            while next_call < calls and time.perf_counter() - t0 < MAX_S:
                i = next_call
                next_call += 1
                try:
                    stream = await oa.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": f"Question {i}: what is {i} + 1?"}],
                        max_completion_tokens=1024,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    async for chunk in stream:
                        if chunk.usage is not None:
                            tokens += chunk.usage.completion_tokens
                    done += 1
                except Exception:
                    errors += 1

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "calls": done,
        "errors": errors,
        "seconds": elapsed,
        "calls_per_s": done / elapsed,
        "output_tokens_per_s": tokens / elapsed,
    }


def run() -> list[dict[str, float]]:
    """Start the simulator process, drive it from a client process per concurrency, return figures."""
    from harness.sim import start_sim_process

    results = []
    proc = start_sim_process(speed=0.0)
    try:
        for concurrency, calls in RUNS:
            out = subprocess.run(
                [sys.executable, __file__, "--client", proc.openai_base_url, str(concurrency), str(calls)],
                capture_output=True,
                text=True,
                timeout=MAX_S + 60,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(
                f"concurrency {r['concurrency']:>4}: {r['calls']:>5.0f} streamed calls "
                f"in {r['seconds']:.2f} s "
                f"= {r['calls_per_s']:.0f} calls/s ({r['output_tokens_per_s']:.0f} output tokens/s, "
                f"{r['errors']:.0f} errors)",
                flush=True,
            )
    finally:
        proc.stop()
    return results


@pytest.mark.benchmark
def test_bench_sim() -> None:
    results = run()
    assert [r["concurrency"] for r in results] == [c for c, _ in RUNS]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", nargs=3, metavar=("BASE_URL", "CONCURRENCY", "CALLS"))
    args = ap.parse_args()
    if args.client:
        import anyio

        base, conc, calls = args.client
        print(json.dumps(anyio.run(_client, base, int(conc), int(calls))))
    else:
        run()


if __name__ == "__main__":
    main()
