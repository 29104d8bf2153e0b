"""``python -m harness.sim``: the simulator in the foreground (used by :class:`SimProcess`).

Flags: ``--host --port --profiles --seed --speed --answer-key FILE --faults FILE --ready-file FILE
--parent-pid PID --allow-non-loopback --workers N --pace SECONDS``. Once listening it prints the two
base URLs and, with ``--ready-file``, writes the base URL (``http://127.0.0.1:PORT``) to that file
atomically. With ``--parent-pid`` it stops when that process is gone (a ``run --sim`` killed with
SIGKILL leaves no simulator behind).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from harness.errors import ConfigError
from harness.sim.faults import FaultConfig
from harness.sim.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    """Parse flags and serve until interrupted; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m harness.sim", description="tollbench provider simulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--profiles", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", type=float, default=0.0)
    ap.add_argument("--answer-key", type=Path)
    ap.add_argument("--faults", type=Path)
    ap.add_argument("--ready-file", type=Path)
    ap.add_argument("--parent-pid", type=int, help="Stop when this process is gone.")
    ap.add_argument("--allow-non-loopback", action="store_true")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Server processes on the one socket (for load; each keeps its own invoice).",
    )
    ap.add_argument(
        "--pace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="Streams' pacing tick: events due within one tick go out in one write (0 = per event).",
    )
    args = ap.parse_args(argv)
    if args.parent_pid is not None:
        _watch_parent(args.parent_pid)

    def on_ready(openai_url: str, anthropic_url: str) -> None:
        print(f"OPENAI_BASE_URL={openai_url}", flush=True)
        print(f"ANTHROPIC_BASE_URL={anthropic_url}", flush=True)
        print(f"GOOGLE_GEMINI_BASE_URL={anthropic_url}", flush=True)  # issue 11
        if args.ready_file is not None:
            tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
            tmp.write_text(anthropic_url + "\n", encoding="utf-8")
            os.replace(tmp, args.ready_file)

    try:
        faults = FaultConfig.load(args.faults) if args.faults is not None else None
        serve_forever(
            host=args.host,
            port=args.port,
            profiles=args.profiles,
            seed=args.seed,
            speed=args.speed,
            answer_key_file=args.answer_key,
            allow_non_loopback=args.allow_non_loopback,
            on_ready=on_ready,
            faults=faults,
            workers=args.workers,
            pace_s=args.pace,
        )
    except (ConfigError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _watch_parent(pid: int, interval_s: float = 0.5) -> None:
    """Send ourselves SIGTERM (an orderly shutdown) once process ``pid`` is no longer our parent."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
