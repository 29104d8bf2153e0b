"""Storage benchmarks (not part of the default test run).

    python tests/benchmarks/bench_storage.py [--rows 1000000] [--ops 20000] [--keep DIR]

1. Ledger throughput on SQLite: reserve + settle pairs per second with 64 and 512 concurrent tasks
   (group commit, one transaction per batch), with ``synchronous=NORMAL`` (the default) and ``FULL``.
2. ``Store.cost_summary(by=model,suite)`` (and other groupings) over a database of 1,000,000 call rows,
   built with fast bulk inserts. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from harness.budget.ledger import CallEnd, CallStart, Ledger
from harness.store.engine import Store
from harness.types import Usage

PRICE = "p" * 64


def _store_with_run(
    path: Path, budget: int, pragmas: dict[str, str | int] | None = None
) -> tuple[Store, str]:
    store = Store.open(str(path), sqlite_pragmas=pragmas)
    store.ensure_price(PRICE, "openai", "o3-mini", {"input_mtok": "1.10"}, "t" * 64)
    run_id = store.create_run(
        suites=["bench"],
        models=["openai/o3-mini"],
        budget_nano=budget,
        simulated=True,
        config={},
        price_table_sha256="t" * 64,
    )
    return store, run_id


async def _throughput(store: Store, run_id: str, tasks: int, ops: int) -> tuple[float, int]:
    usage = Usage(input_uncached=900, cache_read=100, output=400, reasoning=300)
    async with Ledger(store, run_id) as ledger:
        remaining = ops

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                call_id = uuid.uuid4().hex
                start = CallStart(
                    call_id,
                    run_id,
                    "openai/o3-mini",
                    "openai",
                    "chat",
                    "o3-mini",
                    "bench",
                    "i",
                    0,
                    1,
                    "target",
                    10_000,
                    PRICE,
                    datetime.now(UTC),
                )
                if not await ledger.reserve(start):
                    raise RuntimeError("budget too small for the benchmark")
                await ledger.settle(
                    CallEnd(
                        call_id,
                        "ok",
                        4_000,
                        usage,
                        True,
                        {"prompt_tokens": 1000},
                        "req",
                        "stop",
                        None,
                        None,
                        200,
                        5,
                        20,
                        0,
                        datetime.now(UTC),
                    )
                )

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(worker)
        await ledger.flush()
        elapsed = time.perf_counter() - t0
        batches = ledger.batches
    return ops / elapsed, batches


def bench_ledger(tmp: Path, ops: int) -> None:
    for sync in ("NORMAL", "FULL"):
        for tasks in (64, 512):
            path = tmp / f"ledger-{sync}-{tasks}.db"
            store, run_id = _store_with_run(path, 10**15, {"synchronous": sync})
            rate, batches = anyio.run(_throughput, store, run_id, tasks, ops)
            store.close()
            print(
                f"ledger  synchronous={sync:<6} tasks={tasks:<4} {rate:9.0f} reserve+settle/s "
                f"({ops} pairs, {batches} transactions)"
            )


def build_calls(path: Path, rows: int) -> None:
    store, _ = _store_with_run(path, 10**15)
    store.close()
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    runs = []
    base = datetime(2026, 1, 1)
    for r in range(20):
        run_id = f"2026010{r % 9 + 1}-000000-{r:06x}"
        runs.append(run_id)
        conn.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                str(base + timedelta(days=r)),
                None,
                "done",
                10**12,
                0,
                0,
                r % 3 == 0,
                '["a"]',
                '["m"]',
                "{}",
                "0.1.0",
                "t" * 64,
                None,
            ),
        )
    models = [f"openai/model-{i}" for i in range(4)] + [f"anthropic/model-{i}" for i in range(3)]
    suites = ["demo", "math500", "gpqa", "aime", "mmlu"]
    raw = json.dumps(
        {
            "prompt_tokens": 1234,
            "completion_tokens": 567,
            "prompt_tokens_details": {"cached_tokens": 128},
            "completion_tokens_details": {"reasoning_tokens": 400},
        }
    )
    columns = (
        "id, run_id, model, provider, api, provider_model, suite, item_id, repeat, attempt, role, status, "
        "reserved_nano, cost_nano, usage_known, input_uncached, cache_read, cache_write_5m, cache_write_1h, "
        "output_tokens, reasoning_tokens, raw_usage, price_id, request_id, finish_reason, error_type, "
        "error_message, http_status, started_at, finished_at, ttft_ms, latency_ms, retry_wait_ms, cached"
    )
    sql = f"INSERT INTO calls ({columns}) VALUES ({','.join('?' * 34)})"
    t0 = time.perf_counter()
    chunk = []
    for n in range(rows):
        run_i = n * len(runs) // rows
        model = models[n % len(models)]
        status = "reserved" if n % 997 == 0 else ("error" if n % 53 == 0 else "ok")
        started = base + timedelta(days=run_i, seconds=n % 86400)
        cost = None if status == "reserved" else rng.randint(0, 10**6)
        chunk.append(
            (
                uuid.UUID(int=rng.getrandbits(128)).hex,
                runs[run_i],
                model,
                model.split("/")[0],
                "chat",
                model.split("/")[1],
                suites[n % 5],
                f"item-{n % 500}",
                n % 3,
                1,
                "target",
                status,
                2 * 10**6,
                cost,
                1,
                1106,
                128,
                0,
                0,
                567,
                400,
                raw,
                PRICE,
                f"req_{n}",
                "stop",
                None,
                None,
                200,
                started.strftime("%Y-%m-%d %H:%M:%S.%f"),
                started.strftime("%Y-%m-%d %H:%M:%S.%f"),
                300,
                2000,
                0,
                0,
            )
        )
        if len(chunk) == 50_000:
            conn.executemany(sql, chunk)
            chunk.clear()
    if chunk:
        conn.executemany(sql, chunk)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    size = path.stat().st_size / 1e6
    print(f"built   {rows} call rows in {time.perf_counter() - t0:.1f}s ({size:.0f} MB)")


def bench_queries(path: Path) -> None:
    store = Store.open(str(path))
    busiest = max(store.list_runs(), key=lambda r: r["calls"])["id"]
    cases: list[tuple[str, object]] = [
        ("cost_summary(by=model,suite)", lambda: store.cost_summary(by=("model", "suite"))),
        ("cost_summary(by=model)", lambda: store.cost_summary(by=("model",))),
        (
            "cost_summary(by=run,model,suite,day)",
            lambda: store.cost_summary(by=("run", "model", "suite", "day")),
        ),
        (
            "cost_summary(by=day, since..until)",
            lambda: store.cost_summary(
                by=("day",), since=datetime(2026, 1, 5).date(), until=datetime(2026, 1, 7).date()
            ),
        ),
        ("cost_summary(by=model, run=one)", lambda: store.cost_summary(by=("model",), run_id=busiest)),
        ("run_report(one run of 50,000 calls)", lambda: store.run_report(busiest)),
        ("list_runs()", store.list_runs),
    ]
    for name, fn in cases:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        print(f"query   {name:<40} best {min(times):.3f}s  first {times[0]:.3f}s  ({len(result)} rows)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="build the databases in DIR and keep them")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = args.keep or Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        bench_ledger(tmp, args.ops)
        path = tmp / "million.db"
        if not path.exists():
            build_calls(path, args.rows)
        bench_queries(path)


if __name__ == "__main__":
    main()
