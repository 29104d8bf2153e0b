"""``tollbench run`` start-up, directly: from the process's start to the first HTTP request's bytes
arriving at a listening socket (a stand-in for the provider that records the moment and answers
nothing; the run is then stopped). Beside it, the floor the SDK sets on the machine: ``python -c "import
openai"`` and a bare SDK loop's first streamed request (``BARE_LOOP``). Also times ``tollbench costs
--by model,suite`` and ``--help``.

    python tests/benchmarks/bench_startup.py [--repeats 7] [--src DIR ...] [--costs-db FILE]

``--src`` (repeatable; the sources are interleaved, since the load drifts) is a checkout to measure
instead of this one (``git archive main | tar -x -C /tmp/main`` for before/after figures in one
sitting). Prints medians (and min, max) and the load average; the machines it runs on are shared, so
compare figures taken in one sitting. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = "openai/gpt-4o-mini"
BIG = ("--repeats", "250", "-c", "10000")  # the demo suite's 40 items, 10,000 units, all at once


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The loop people write by hand, as short as it gets: the SDK's import, a client, one streamed request.
BARE_LOOP = """
import sys, anyio, openai
async def main():
    client = openai.AsyncOpenAI(base_url=sys.argv[1], api_key="bench-not-secret", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "2+2?"}], stream=True)
    async for _ in stream:
        pass
anyio.run(main)
"""


def first_request_s(
    src: Path, db: Path, timeout: float = 60.0, shape: tuple[str, ...] = ("--limit", "1"), bare: bool = False
) -> tuple[float, float]:
    """Wall seconds from spawning ``tollbench run`` to the first request's bytes at the listener, and the
    CPU seconds the process had used by then (less sensitive to other work on the machine). ``shape``
    is the run's size: one unit by default, ``BIG`` for 10,000 units at concurrency 10,000. ``bare``
    times ``BARE_LOOP`` instead: the floor the SDK itself sets on this machine."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(timeout)
        port = listener.getsockname()[1]
        env = dict(os.environ, OPENAI_API_KEY="bench-not-secret", PYTHONPATH=str(src))
        cmd = [
            sys.executable, "-m", "harness", "run", "demo", "-m", MODEL, "--budget", "1000",
            "--base-url", f"http://127.0.0.1:{port}/v1", "--db", str(db), "--max-attempts", "1", *shape,
        ]  # fmt: skip
        if bare:
            cmd = [sys.executable, "-c", BARE_LOOP, f"http://127.0.0.1:{port}/v1"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(timeout)
                conn.recv(1)  # the request's first byte
                elapsed = time.perf_counter() - t0
                cpu = _cpu_s(proc.pid)
        except TimeoutError:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            raise RuntimeError(f"no request within {timeout}s: {err[-2000:]}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        return elapsed, cpu


def wall_s(cmd: list[str], src: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one command."""
    env = dict(os.environ, PYTHONPATH=str(src))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def show(label: str, values: list[float]) -> None:
    print(
        f"  {label:<50} median {statistics.median(values):.3f}s  (min {min(values):.3f}, "
        f"max {max(values):.3f}, n={len(values)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--src", type=Path, action="append", help="a checkout to measure (repeatable)")
    ap.add_argument("--costs-db", type=Path, help="an existing database to time `costs` on")
    args = ap.parse_args()
    srcs = [s.resolve() for s in (args.src or [ROOT])]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    py = [sys.executable, "-m", "harness"]
    figures: dict[tuple[Path, str], list[float]] = {}

    def add(src: Path, label: str, value: float) -> None:
        figures.setdefault((src, label), []).append(value)

    costs = []
    if args.costs_db is not None:
        costs = [*py, "costs", "--by", "model,suite", "--db", str(args.costs_db.resolve())]
        wall_s(costs, srcs[0])  # the first query after the runs end computes the snapshots
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # the sources interleaved: the load drifts between repeats
            wall, cpu = first_request_s(ROOT, Path(tmp) / "unused.db", bare=True)
            add(ROOT, "bare SDK loop: start -> first request (wall)", wall)
            add(ROOT, "bare SDK loop: start -> first request (CPU)", cpu)
            sdk_import = wall_s([sys.executable, "-c", "import openai"], ROOT)[0]
            add(ROOT, "python -c 'import openai' (wall)", sdk_import)
            for n, src in enumerate(srcs):
                for kind, db in (("new database", f"{n}-{i}.db"), ("existing db", f"{n}.db")):
                    wall, cpu = first_request_s(src, Path(tmp) / db)
                    add(src, f"run: start -> first request ({kind}, wall)", wall)
                    add(src, f"run: start -> first request ({kind}, CPU)", cpu)
                wall, cpu = first_request_s(src, Path(tmp) / f"big-{n}-{i}.db", shape=BIG)
                add(src, "run: 10,000 units at -c 10000 -> first request (wall)", wall)
                add(src, "run: 10,000 units at -c 10000 -> first request (CPU)", cpu)
                add(src, "tollbench --help (wall)", wall_s([*py, "--help"], src)[0])
                if costs:
                    wall, cpu = wall_s(costs, src)
                    add(src, "costs --by model,suite (warm, wall)", wall)
                    add(src, "costs --by model,suite (warm, CPU)", cpu)
                    wall, cpu = wall_s([*costs, "--json"], src)
                    add(src, "costs --by model,suite --json (warm, wall)", wall)
                    add(src, "costs --by model,suite --json (warm, CPU)", cpu)
    for src in dict.fromkeys([ROOT, *srcs]):
        print(src)
        for (s, label), values in figures.items():
            if s == src:
                show(label, values)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
