"""``tollbench run`` start-up, directly: from the process's start to the first HTTP request's bytes
arriving at a listening socket (a stand-in for the provider that records the moment and answers
nothing; the run is then stopped). Also times ``tollbench costs --by model,suite`` and ``--help``.

    python tests/benchmarks/bench_startup.py [--repeats 7] [--src DIR] [--costs-db FILE]

``--src`` is a checkout to measure instead of this one (``git archive main | tar -x -C /tmp/main``
for before/after figures in one sitting). Prints medians (and min, max) and the load average; the
machines it runs on are shared, so compare figures taken in one sitting. Asserts nothing.
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


def first_request_s(src: Path, db: Path, timeout: float = 60.0) -> float:
    """Seconds from spawning ``tollbench run`` to the first request's bytes at the listener."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(timeout)
        port = listener.getsockname()[1]
        env = dict(os.environ, OPENAI_API_KEY="bench-not-secret", PYTHONPATH=str(src))
        cmd = [
            sys.executable, "-m", "harness", "run", "demo", "-m", MODEL, "--budget", "10", "--limit", "1",
            "--base-url", f"http://127.0.0.1:{port}/v1", "--db", str(db), "--max-attempts", "1",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(timeout)
                conn.recv(1)  # the request's first byte
                elapsed = time.perf_counter() - t0
        except TimeoutError:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            raise RuntimeError(f"no request within {timeout}s: {err[-2000:]}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        return elapsed


def wall_s(cmd: list[str], src: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=src, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def show(label: str, values: list[float]) -> None:
    print(
        f"{label:<52} median {statistics.median(values):.3f}s  (min {min(values):.3f}, max {max(values):.3f},"
        f" n={len(values)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--src", type=Path, default=ROOT)
    ap.add_argument("--costs-db", type=Path, help="an existing database to time `costs` on")
    args = ap.parse_args()
    src = args.src.resolve()
    print(f"source {src}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        new, existing = [], []
        for i in range(args.repeats):
            new.append(first_request_s(src, Path(tmp) / f"new-{i}.db"))
            existing.append(first_request_s(src, Path(tmp) / "existing.db"))
        show("run: process start -> first request (new database)", new)
        show("run: process start -> first request (existing db)", existing)
    py = [sys.executable, "-m", "harness"]
    show("tollbench --help", [wall_s([*py, "--help"], src) for _ in range(args.repeats)])
    if args.costs_db is not None:
        cmd = [*py, "costs", "--by", "model,suite", "--db", str(args.costs_db.resolve())]
        wall_s(cmd, src)  # warm: the snapshots are computed on the first query
        show("costs --by model,suite (warm)", [wall_s(cmd, src) for _ in range(args.repeats)])
        show(
            "costs --by model,suite --json (warm)",
            [wall_s([*cmd, "--json"], src) for _ in range(args.repeats)],
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
