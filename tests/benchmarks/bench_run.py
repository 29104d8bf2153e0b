"""Benchmark: `tollbench run` against a bare SDK loop (and Inspect AI when installed) on one simulator,
side by side; `tollbench run` start-up; 10,000 concurrent long streams; `tollbench costs` over a large
database.

Run it directly (it is not part of the test suite)::

    python tests/benchmarks/bench_run.py [--calls 2000] [--concurrency 64 512]
        [--baseline-src DIR] [--streams 10000 --stream-seconds 30 --sim-workers 2 --pace 0.25]
        [--cost-rows 10000000]

It prints figures; it asserts nothing about speed (these machines are shared and noisy).

1. Starts the simulator in its own process with no added latency.
2. For each concurrency, each runner sends the same N streamed calls with the demo suite's prompts, in
   its own process: a bare ``AsyncOpenAI(max_retries=0)`` streaming loop; ``tollbench run demo``
   (through the CLI, metering into a fresh SQLite file); the same from ``--baseline-src`` (a checkout
   of another revision, for before/after figures in one sitting); Inspect AI's ``eval`` when
   ``inspect_ai`` is importable. Per runner: calls/s over the calls (first start to last finish; for
   tollbench from its own call rows), that divided by the bare loop's (the throughput ratio), the whole
   command's wall time, client CPU per call (user + system of the whole process, start-up included)
   and peak resident memory.
3. ``tollbench run`` start-up: from the process's start to its first call's start (from the call row).
4. With ``--streams``: one ``tollbench run -c N`` over N simulated reasoning streams (``o4-mini``,
   its profile set so that the hidden reasoning makes the first event come after most of
   ``--stream-seconds`` and about 400 visible tokens stream after), the simulator in real time with
   ``--sim-workers`` processes and the pacing tick ``--pace``; prints the calls ok and failed (by error
   type), the whole command's wall time, peak resident memory, CPU per call, start-up and the calls'
   latency.
5. Builds a SQLite database of ``--cost-rows`` call rows (rows copied inside SQLite) and times
   ``tollbench costs --by model,suite``: the live query (every call summed) beside the snapshot path
   (per-run ``run_totals``; cold = computed on the way, warm = read), the query alone and the whole
   command (``--concurrency`` with no value skips the streaming figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
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
    # connect timeout raised from the SDK default of 5 s: 512 connects at once on a loaded machine;
    # the pool sized to the concurrency, as anyone writing this loop for speed would
    timeout = httpx2.Timeout(600, connect=60)
    limits = httpx2.Limits(max_connections=conc, max_keepalive_connections=conc)
    http = httpx2.AsyncClient(limits=limits, timeout=timeout)
    client = AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=timeout, http_client=http)
    sem = anyio.Semaphore(conc)
    done = failed = 0
    async def one(i: int) -> None:
        nonlocal done, failed
        p = prompts[i % len(prompts)]
        async with sem:
            try:
                stream = await client.chat.completions.create(
                    model=sys.argv[5], messages=[{"role": m.role, "content": m.content} for m in p.messages],
                    max_completion_tokens=max_out, stream=True, stream_options={"include_usage": True})
                text = []
                async for chunk in stream:
                    for c in chunk.choices or []:
                        if c.delta.content:
                            text.append(c.delta.content)
            except Exception:  # counted, not retried (a dropped keep-alive connection on a loaded host)
                failed += 1
                return
            done += 1
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    dt = time.perf_counter() - t0
    print(f"{done} {dt} {failed}")
    await client.close()

anyio.run(main)
"""

INSPECT = r"""
import sys, time
from inspect_ai import Task, eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate
from suites import get_suite

base_url, n, conc, max_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
suite = get_suite("demo")
prompts = [suite.render(item, 0, 0) for item in suite.items]
samples = [Sample(input=prompts[i % len(prompts)].messages[-1].content, id=i) for i in range(n)]
t0 = time.perf_counter()
logs = inspect_eval(
    Task(dataset=samples, solver=generate()), model="openai/" + sys.argv[5], model_base_url=base_url,
    max_connections=conc, max_tokens=max_out, display="none", log_dir=sys.argv[6], max_retries=0,
)
dt = time.perf_counter() - t0
print(f"{sum(len(log.samples or []) for log in logs)} {dt}")
"""


@dataclass
class Figure:
    name: str
    calls: int
    calls_per_s: float
    wall_s: float
    cpu_s: float
    peak_mb: float
    note: str = ""


def _measured(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> tuple[str, float, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN's peak RSS is a maximum over all children)
    out_text = ""
    assert proc.stdout is not None and proc.stderr is not None
    import threading

    chunks: dict[str, str] = {}

    def read(name: str, stream: object) -> None:
        chunks[name] = stream.read()  # type: ignore[attr-defined]

    readers = [
        threading.Thread(target=read, args=("out", proc.stdout)),
        threading.Thread(target=read, args=("err", proc.stderr)),
    ]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_text = chunks.get("out", "")
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:5])} exited {proc.returncode}: {chunks.get('err', '').strip()[-2000:]}"
        )
    return out_text, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def bare_loop(base_url: str, calls: int, concurrency: int, max_out: int) -> Figure:
    cmd = [sys.executable, "-c", BARE_LOOP, base_url, str(calls), str(concurrency), str(max_out), MODEL]
    out, wall, cpu, peak = _measured(cmd, cwd=ROOT)
    done, seconds, failed = out.split()
    note = f"failed {failed} (no retries)" if int(failed) else ""
    return Figure("bare SDK loop", int(done), int(done) / float(seconds), wall, cpu, peak, note)


def inspect_run(base_url: str, calls: int, concurrency: int, max_out: int, log_dir: Path) -> Figure | str:
    if importlib.util.find_spec("inspect_ai") is None:
        return "not installed"
    env = dict(os.environ, OPENAI_API_KEY="bench-not-secret")
    cmd = [
        sys.executable,
        "-c",
        INSPECT,
        base_url,
        str(calls),
        str(concurrency),
        str(max_out),
        MODEL,
        str(log_dir),
    ]
    try:
        out, wall, cpu, peak = _measured(cmd, cwd=ROOT, env=env)
    except RuntimeError as exc:
        return f"failed: {str(exc)[-300:]}"
    done, seconds = out.split()[-2:]
    return Figure("Inspect AI", int(done), int(done) / float(seconds), wall, cpu, peak)


def _call_window(db: Path) -> tuple[int, float, datetime, Counter[str]]:
    con = sqlite3.connect(db)
    n, first, last = con.execute(
        "select count(*), min(started_at), max(finished_at) from calls where status = 'ok'"
    ).fetchone()
    errors = Counter(
        {
            str(k): v
            for k, v in con.execute(
                "select coalesce(error_type, status), count(*) from calls where status != 'ok' group by 1"
            )
        }
    )
    con.close()
    start = datetime.fromisoformat(str(first))
    seconds = (datetime.fromisoformat(str(last)) - start).total_seconds()
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return int(n), seconds, start, errors


def tollbench_run(
    name: str,
    src: Path,
    sim_url: str,
    calls: int,
    concurrency: int,
    max_out: int,
    db: Path,
    model: str = MODEL,
    sim_root: str | None = None,
) -> tuple[Figure, float, Counter[str]]:
    """A figure, the start-up (process start to first call start) and the failures by type."""
    from suites import get_suite

    items = len(get_suite("demo").items)
    repeats = max(1, calls // items)
    env = dict(os.environ, OPENAI_API_KEY="bench-not-secret", PYTHONPATH=str(src))
    cmd = [
        sys.executable, "-m", "harness", "run", "demo", "-m", f"openai/{model}", "--budget", "1000000",
        *(["--sim-url", sim_root] if sim_root else ["--base-url", sim_url]),
        "--repeats", str(repeats), "-c", str(concurrency), "--db", str(db),
        "--max-output-tokens", str(max_out), "--json",
    ]  # fmt: skip
    spawned = datetime.now(UTC)
    _, wall, cpu, peak = _measured(cmd, cwd=src, env=env)
    n, seconds, first, errors = _call_window(db)
    startup = (first - spawned).total_seconds()
    return Figure(name, n, n / seconds if seconds > 0 else 0.0, wall, cpu, peak), startup, errors


def mean_output_tokens(db: Path) -> float:
    con = sqlite3.connect(db)
    (value,) = con.execute("select avg(output_tokens) from calls where status = 'ok'").fetchone()
    con.close()
    return float(value or 0.0)


def print_table(title: str, bare: Figure, rows: list[Figure | tuple[str, str]]) -> None:
    print(title)
    print(
        f"  {'runner':<22} {'calls':>6} {'calls/s':>8} {'ratio':>6} {'wall s':>7} "
        f"{'CPU ms/call':>11} {'peak MB':>8}"
    )
    for row in [bare, *rows]:
        if isinstance(row, tuple):
            print(f"  {row[0]:<22} {row[1]}")
            continue
        ratio = row.calls_per_s / bare.calls_per_s if bare.calls_per_s else 0.0
        cpu_ms = 1000 * row.cpu_s / row.calls if row.calls else 0.0
        print(
            f"  {row.name:<22} {row.calls:>6} {row.calls_per_s:>8.0f} {ratio:>6.2f} {row.wall_s:>7.1f} "
            f"{cpu_ms:>11.2f} {row.peak_mb:>8.0f}{('  ' + row.note) if row.note else ''}"
        )
    sys.stdout.flush()


def build_cost_db(path: Path, rows: int) -> None:
    """``rows`` call rows over 4 runs, 2 models and 3 suites: 100,000 written from Python, the rest
    copied inside SQLite with fresh ids."""
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
    for run_id in run_ids:  # finished runs: ``costs`` reads them from their run_totals snapshot
        store.set_run_status(run_id, "done")
    store.close()
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode=off")
    con.execute("pragma synchronous=off")
    cols = [r[1] for r in con.execute("pragma table_info(calls)")]
    now = datetime.now(UTC).isoformat()
    seed = min(rows, 100_000)
    batch = []
    for i in range(seed):
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
    con.executemany(f"insert into calls values ({','.join('?' * len(cols))})", batch)
    con.commit()
    copied = seed
    while copied < rows:
        take = min(seed, rows - copied)
        select = ", ".join(f"printf('%032x', rowid + {copied})" if c == "id" else f'"{c}"' for c in cols)
        con.execute(
            f"insert into calls ({', '.join(chr(34) + c + chr(34) for c in cols)}) "
            f"select {select} from calls where rowid <= {take}"
        )
        copied += take
    con.commit()
    con.execute("analyze")
    con.close()


def costs_figures(tmp: Path, rows: int, src: Path) -> None:
    """The live query (every call summed) beside the snapshot path (``run_totals``: cold = the first
    call computes and stores the finished runs' totals, warm = it reads them), in process and as the
    whole ``tollbench costs`` command."""
    db = tmp / "costs.db"
    t0 = time.perf_counter()
    build_cost_db(db, rows)
    print(f"built {rows:,} call rows in {time.perf_counter() - t0:.1f}s ({db.stat().st_size / 2**20:.0f} MB)")
    cmd = [sys.executable, "-m", "harness", "costs", "--by", "model,suite", "--json", "--db", str(db)]
    env = dict(os.environ, PYTHONPATH=str(src))
    from harness.store.engine import Store

    def query(**kw: bool) -> tuple[float, list[dict[str, object]]]:
        store = Store.open(str(db))
        t0 = time.perf_counter()
        result = store.cost_summary(by=["model", "suite"], **kw)
        elapsed = time.perf_counter() - t0
        store.close()
        return elapsed, result

    def forget() -> None:
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM run_totals_state")
            con.execute("DELETE FROM run_totals")
        con.close()

    live_s, live = query(snapshots=False)
    cold_s, cold = query()
    warm_s, warm = query()
    assert live == cold == warm, "the snapshot path must equal the live query"
    forget()
    _, cli_cold_s, _, _ = _measured(cmd, cwd=src, env=env)
    out, cli_warm_s, _, _ = _measured(cmd, cwd=src, env=env)
    label = f"tollbench costs --by model,suite over {rows:,} rows ({len(json.loads(out))} groups)"
    print(
        f"{label}: query live {live_s:.3f}s | snapshots cold {cold_s:.3f}s, warm {warm_s:.3f}s; "
        f"whole command cold {cli_cold_s:.3f}s, warm {cli_warm_s:.3f}s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[64, 512])
    ap.add_argument("--max-output-tokens", type=int, default=2048)
    ap.add_argument("--baseline-src", type=Path, help="another checkout to measure as 'before'")
    ap.add_argument("--streams", type=int, default=0, help="also run this many concurrent long streams")
    ap.add_argument("--stream-seconds", type=float, default=30.0)
    ap.add_argument("--sim-workers", type=int, default=2, help="simulator processes for --streams")
    ap.add_argument(
        "--pace", type=float, default=0.25, help="the simulator's pacing tick for --streams (0 = per event)"
    )
    ap.add_argument("--cost-rows", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from harness.sim import start_sim_process

    srcs = [("tollbench", ROOT)]
    if args.baseline_src is not None:
        srcs.append(("tollbench (baseline)", args.baseline_src.resolve()))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mean_out = 0.0
        sim = start_sim_process(speed=0.0)
        try:
            for conc in args.concurrency:
                bare = bare_loop(sim.openai_base_url, args.calls, conc, args.max_output_tokens)
                rows: list[Figure | tuple[str, str]] = []
                for name, src in srcs:
                    db = tmp / f"run-{conc}-{len(rows)}.db"
                    fig, startup, errors = tollbench_run(
                        name, src, sim.openai_base_url, args.calls, conc, args.max_output_tokens, db
                    )
                    fig.note = f"start-up {startup:.2f}s" + (f"; failed {dict(errors)}" if errors else "")
                    rows.append(fig)
                    if src == ROOT:
                        mean_out = mean_output_tokens(db)
                inspect = inspect_run(
                    sim.openai_base_url, args.calls, conc, args.max_output_tokens, tmp / f"inspect-{conc}"
                )
                rows.append(inspect if isinstance(inspect, Figure) else ("Inspect AI", inspect))
                print_table(
                    f"concurrency {conc}, {args.calls} streamed calls, up to {args.max_output_tokens} output "
                    "tokens (ratio: calls/s over the bare loop's)",
                    bare,
                    rows,
                )
        finally:
            sim.stop()
        if args.streams:
            streams_figure(args, srcs, tmp, mean_out)
        if args.cost_rows:
            costs_figures(tmp, args.cost_rows, ROOT)


STREAM_MODEL = "o4-mini"
STREAM_VISIBLE_TOKENS = 400


def stream_profile(path: Path, seconds: float) -> tuple[int, float]:
    """Write a profile file that makes every ``o4-mini`` stream last about ``seconds`` at speed 1.

    A reasoning model's stream, as on the real API: its hidden reasoning tokens are not streamed, so
    the first event comes after the time to first token plus the reasoning's time, and the visible
    answer (about 400 tokens, 25 events) streams after. Both draws are nearly fixed (sigma 0.02), so
    the streams last about the same. Returns (reasoning tokens, time to first token in seconds).
    """
    from harness.sim.profiles import sim_profiles

    profile = sim_profiles()[STREAM_MODEL]
    visible_s = STREAM_VISIBLE_TOKENS / profile.tokens_per_s
    reasoning = max(64, round((seconds - profile.ttft_s - visible_s) * profile.tokens_per_s))
    path.write_text(
        f'[models."{STREAM_MODEL}"]\n'
        f"output_tokens = {{ median = {STREAM_VISIBLE_TOKENS}, sigma = 0.02, min = 16, max = 8000 }}\n"
        f"reasoning_tokens = {{ easy_median = {reasoning}, hard_median = {reasoning}, sigma = 0.02, "
        "min = 64, max = 100000 }\n"
        "rpm = 100000000\ntpm = 100000000000\n",
        encoding="utf-8",
    )
    return reasoning, profile.ttft_s + reasoning / profile.tokens_per_s


def _stream_rows(db: Path) -> dict[str, float]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "select ttft_ms, latency_ms from calls where status = 'ok' and latency_ms is not null"
    ).fetchall()
    starts = sorted(datetime.fromisoformat(str(r[0])) for r in con.execute("select started_at from calls"))
    ends = sorted(
        datetime.fromisoformat(str(r[0]))
        for r in con.execute("select finished_at from calls where finished_at is not null")
    )
    con.close()
    if not rows:
        return {}
    lat = sorted(r[1] / 1000 for r in rows)
    ttft = sorted(r[0] / 1000 for r in rows if r[0] is not None)

    def q(xs: list[float], f: float) -> float:
        return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else float("nan")

    t0 = starts[0]
    return {
        "start_p50": (starts[len(starts) // 2] - t0).total_seconds(),
        "start_last": (starts[-1] - t0).total_seconds(),
        "end_first": (ends[0] - t0).total_seconds() if ends else float("nan"),
        "end_last": (ends[-1] - t0).total_seconds() if ends else float("nan"),
        "latency_p50": q(lat, 0.5),
        "latency_p99": q(lat, 0.99),
        "latency_max": lat[-1],
        "ttft_p50": q(ttft, 0.5),
    }


def streams_figure(
    args: argparse.Namespace, srcs: list[tuple[str, Path]], tmp: Path, mean_out: float
) -> None:
    """One ``tollbench run -c N`` over N concurrent reasoning streams of about ``--stream-seconds``."""
    from harness.sim import start_sim_process

    del mean_out  # the stream's length comes from its own profile (a reasoning model), not the demo's
    prof = tmp / "streams-profile.toml"
    reasoning, first_event_s = stream_profile(prof, args.stream_seconds)
    sim = start_sim_process(profiles=prof, speed=1.0, workers=args.sim_workers, pace_s=args.pace)
    try:
        for name, src in srcs[:1]:
            db = tmp / "streams.db"
            fig, startup, errors = tollbench_run(
                name,
                src,
                sim.openai_base_url,
                args.streams,
                args.streams,
                16000,
                db,
                model=STREAM_MODEL,
                # --sim-url: the simulator is the provider (OpenAI's dialect: a reasoning model takes
                # max_completion_tokens only; --base-url would make it an OpenAI-compatible server)
                sim_root=sim.openai_base_url.removesuffix("/v1"),
            )
            failed = f"; failed {dict(errors)}" if errors else "; none failed"
            d = _stream_rows(db)
            print(
                f"{args.streams:,} concurrent streams of about {args.stream_seconds:g}s ({name}; simulated "
                f"{STREAM_MODEL}: {reasoning:,} hidden reasoning tokens, first event planned at "
                f"{first_event_s:.1f}s, then about {STREAM_VISIBLE_TOKENS} visible tokens; simulator at "
                f"speed 1, {args.sim_workers} processes, pacing tick {args.pace:g}s):"
            )
            print(
                f"  {fig.calls:,} calls ok in {fig.wall_s:.1f}s wall (the whole command), peak RSS "
                f"{fig.peak_mb:.0f} MB, CPU {1000 * fig.cpu_s / max(1, fig.calls):.2f} ms/call, "
                f"start-up {startup:.2f}s{failed}"
            )
            if d:
                print(
                    f"  call latency p50 {d['latency_p50']:.1f}s, p99 {d['latency_p99']:.1f}s, max "
                    f"{d['latency_max']:.1f}s; time to first token p50 {d['ttft_p50']:.1f}s"
                )
                print(
                    f"  from the first call's start: half the calls started by {d['start_p50']:.1f}s, the "
                    f"last at {d['start_last']:.1f}s; the first finished at {d['end_first']:.1f}s, the "
                    f"last at {d['end_last']:.1f}s"
                )
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
