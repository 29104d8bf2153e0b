"""Benchmark: one run split across 1, 2 and 4 worker processes on PostgreSQL, against the simulator.

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_workers.py [--workers 1 2 4] [--repeats 10] [--concurrency 8] \
        [--speed 0.05] [--postgres postgresql://root@127.0.0.1:5432/test]

It prints figures; it asserts nothing about speed (these machines are shared and noisy).

1. Starts the simulator in its own process (``tollbench sim serve``), with ``--speed`` latency so a
   call takes about as long as a short real one.
2. For each worker count N: a fresh PostgreSQL schema; ``tollbench run demo --run-id R`` started in N
   processes at once (one creates the run, the others join it), each with ``-c`` concurrent calls; they
   buy the run's 40 x ``--repeats`` units between them. (``tollbench worker R`` joins the same way.)
3. Units/s is measured from the run's own call rows (first start to last finish); it also prints how
   the units were split, and checks that each unit was bought once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _tollbench(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _sim(speed: float) -> tuple[subprocess.Popen[bytes], str]:
    proc = _tollbench("sim", "serve", "--port", "0", "--speed", str(speed), "--seed", "5")
    assert proc.stdout is not None
    urls = dict(proc.stdout.readline().decode().strip().partition("=")[::2] for _ in range(2))
    return proc, urls["OPENAI_BASE_URL"].removesuffix("/v1")


def _schema(server: str) -> tuple[Any, str, str]:
    engine = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1))
    schema = "tb_bench_" + secrets.token_hex(5)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    return engine, schema, f"{server}?options=-csearch_path%3D{schema}"


def _one(n: int, args: argparse.Namespace, sim_url: str) -> dict[str, Any]:
    engine, schema, db = _schema(args.postgres)
    try:
        run_id = f"bench-{n}"
        common = ["--sim-url", sim_url, "--db", db, "-c", str(args.concurrency)]
        run_args = [
            "run", "demo", "-m", "openai/gpt-4o-mini", "--budget", "50", "--repeats", str(args.repeats),
            "--max-output-tokens", "400", "--run-id", run_id, "--allow-partial", *common,
        ]  # fmt: skip
        # All N start together (one creates the run, the others join it), so none joins late.
        first, *others = [_tollbench(*run_args) for _ in range(n)]
        for proc in [first, *others]:
            _, err = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise SystemExit(f"a worker failed ({proc.returncode}): {err.decode()[-6000:]}")
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    f"SELECT count(*) AS calls, count(DISTINCT (item_id, repeat)) AS units, "
                    f"min(started_at) AS t0, max(finished_at) AS t1 FROM {schema}.calls"
                )
            ).one()
            split = [
                int(r[0])
                for r in conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {schema}.unit_claims GROUP BY worker_id ORDER BY count(*) DESC"
                    )
                )
            ]
        seconds = (row.t1 - row.t0).total_seconds()
        return {"workers": n, "units": row.units, "calls": row.calls, "seconds": seconds, "split": split}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=10, help="Units = 40 demo items x repeats.")
    parser.add_argument("--concurrency", type=int, default=8, help="Concurrent calls per worker.")
    parser.add_argument("--speed", type=float, default=0.05, help="Simulator latency multiplier.")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TOLLBENCH_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    sim, url = _sim(args.speed)
    try:
        print(
            f"{40 * args.repeats} units, -c {args.concurrency} per worker, simulator speed {args.speed}, "
            f"PostgreSQL ({os.cpu_count()} cores)"
        )
        base = None
        for n in args.workers:
            r = _one(n, args, url)
            rate = r["units"] / r["seconds"] if r["seconds"] > 0 else float("nan")
            base = base or rate
            calls, units = r["calls"], r["units"]
            once = "each bought once" if calls == units else f"{calls} calls for {units} units"
            print(
                f"{n} worker(s): {r['units']} units in {r['seconds']:.1f}s = {rate:.1f} units/s "
                f"(x{rate / base:.2f}); split {r['split']}; {once}"
            )
    finally:
        sim.terminate()
        sim.wait(timeout=20)


if __name__ == "__main__":
    main()
