"""Benchmark: `tollbench run` against a bare SDK loop on the same simulator, and `tollbench costs` over a
large database.

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_run.py [--calls 3000] [--concurrency 64 512] [--cost-rows 1000000]

It prints figures and ratios; it asserts nothing about speed (these machines are shared and noisy).

1. Starts the simulator in its own process with no added latency.
2. For each concurrency: a bare ``AsyncOpenAI(max_retries=0)`` streaming loop in ANOTHER process sends N
   calls with the demo suite's prompts; then ``tollbench run demo --repeats R`` (in another process, through
   the CLI, metering into a fresh SQLite file) sends the same number of calls to the same simulator.
   calls/s of tollbench is measured from its own call rows (first start to last finish).
3. Builds a SQLite database with ``--cost-rows`` call rows and times ``tollbench costs --by model,suite``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"

BARE_LOOP = r"""
import sys, time, anyio, httpx2
from openai import AsyncOpenAI
from suites import get_suite

base_url, n, conc, max_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
suite = get_suite("demo")
prompts = [suite.render(item, 0, 0) for item in suite.items]

async def main() -> None:
    # connect timeout raised from the SDK default of 5 s: 512 connects at once on a loaded machine
    timeout = httpx2.Timeout(600, connect=60)
    client = AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=timeout)
    sem = anyio.Semaphore(conc)
    done = 0
    async def one(i: int) -> None:
        nonlocal done
        p = prompts[i % len(prompts)]
        async with sem:
            stream = await client.chat.completions.create(
                model=sys.argv[5], messages=[{"role": m.role, "content": m.content} for m in p.messages],
                max_completion_tokens=max_out, stream=True, stream_options={"include_usage": True})
            text = []
            async for chunk in stream:
                for c in chunk.choices or []:
                    if c.delta.content:
                        text.append(c.delta.content)
            done += 1
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    dt = time.perf_counter() - t0
    print(f"{done} {dt}")
    await client.close()

anyio.run(main)
"""


def bare_loop(base_url: str, calls: int, concurrency: int, max_out: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, base_url, str(calls), str(concurrency), str(max_out), MODEL],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    done, seconds = int(out[0]), float(out[1])
    return done / seconds


def tollbench_run(sim_url: str, calls: int, concurrency: int, max_out: int, db: Path) -> tuple[float, int]:
    from suites import get_suite

    items = len(get_suite("demo").items)
    repeats = max(1, calls // items)
    env = dict(os.environ, OPENAI_API_KEY="bench-not-secret")
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "demo",
        "-m",
        f"openai/{MODEL}",
        "--budget",
        "1000",
        "--base-url",
        sim_url,
        "--repeats",
        str(repeats),
        "-c",
        str(concurrency),
        "--db",
        str(db),
        "--max-output-tokens",
        str(max_out),
        "--json",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    con = sqlite3.connect(db)
    n, first, last = con.execute("select count(*), min(started_at), max(finished_at) from calls").fetchone()
    con.close()
    seconds = (datetime.fromisoformat(str(last)) - datetime.fromisoformat(str(first))).total_seconds()
    return n / seconds, n


def build_cost_db(path: Path, rows: int) -> None:
    from harness.store.engine import Store

    store = Store.open(str(path))
    run_ids = [
        store.create_run(
            suites=["demo"],
            models=["openai/a", "openai/b"],
            budget_nano=10**15,
            simulated=True,
            config={},
            price_table_sha256="bench",
        )
        for _ in range(4)
    ]
    store.close()
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("pragma table_info(calls)")]
    now = datetime.now().isoformat()
    batch = []
    for i in range(rows):
        row = dict.fromkeys(cols)
        row.update(
            id=f"{i:032x}",
            run_id=run_ids[i % 4],
            model=f"openai/{'ab'[i % 2]}",
            provider="openai",
            api="chat",
            provider_model="m",
            suite=("demo", "math500", "gpqa-diamond")[i % 3],
            item_id=str(i % 500),
            repeat=0,
            attempt=1,
            role="target",
            status="ok",
            reserved_nano=10**6,
            cost_nano=1000 + i % 97,
            usage_known=1,
            input_uncached=100,
            cache_read=0,
            cache_write_5m=0,
            cache_write_1h=0,
            output_tokens=200,
            reasoning_tokens=50,
            started_at=now,
            finished_at=now,
            retry_wait_ms=0,
            cached=0,
        )
        batch.append(tuple(row[c] for c in cols))
        if len(batch) == 50_000:
            con.executemany(f"insert into calls values ({','.join('?' * len(cols))})", batch)
            batch.clear()
    if batch:
        con.executemany(f"insert into calls values ({','.join('?' * len(cols))})", batch)
    con.commit()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--max-output-tokens", type=int, default=2048)
    ap.add_argument("--cost-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from harness.sim import start_sim_process

    with tempfile.TemporaryDirectory() as tmp:
        sim = start_sim_process(speed=0.0)
        try:
            for conc in args.concurrency:
                bare = bare_loop(sim.openai_base_url, args.calls, conc, args.max_output_tokens)
                tb, n = tollbench_run(
                    sim.openai_base_url, args.calls, conc, args.max_output_tokens, Path(tmp) / f"run{conc}.db"
                )
                print(
                    f"concurrency {conc}: bare SDK loop {bare:.0f} calls/s; tollbench run {tb:.0f} calls/s "
                    f"({n} calls); ratio {tb / bare:.2f}"
                )
        finally:
            sim.stop()
        if args.cost_rows:
            db = Path(tmp) / "costs.db"
            t0 = time.perf_counter()
            build_cost_db(db, args.cost_rows)
            print(f"built {args.cost_rows:,} call rows in {time.perf_counter() - t0:.1f}s")
            for _ in range(2):
                t0 = time.perf_counter()
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "harness",
                        "costs",
                        "--by",
                        "model,suite",
                        "--json",
                        "--db",
                        str(db),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                ).stdout
                cli_s = time.perf_counter() - t0
                from harness.store.engine import Store

                store = Store.open(str(db))
                t0 = time.perf_counter()
                store.cost_summary(by=["model", "suite"])
                q_s = time.perf_counter() - t0
                store.close()
                print(
                    f"tollbench costs --by model,suite over {args.cost_rows:,} rows: query {q_s:.3f}s, "
                    f"whole command {cli_s:.3f}s ({len(json.loads(out))} groups)"
                )


if __name__ == "__main__":
    main()
