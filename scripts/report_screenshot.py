"""Make docs/img/report.png: two simulated runs, their report, and a headless Chromium screenshot.

    python scripts/report_screenshot.py [--out docs/img/report.png] [--html report.html]

The runs are the README's main job (``demo``, two reasoning models) and MATH-500 from the test
fixture with a non-reasoning model besides; no key, no money, no network. Needs the ``report`` extra
and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
]


def tollbench(*args: str) -> None:
    # The console script, not ``python -m harness``: anyio's worker processes (the maths scorer)
    # re-import ``__main__``, which ``-m harness`` makes the CLI itself.
    script = Path(sys.executable).parent / "tollbench"
    subprocess.run([str(script), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    parser.add_argument("--html", type=Path, help="Also keep the report here.")
    parser.add_argument("--size", default="1320,1900", help="Window WIDTH,HEIGHT of the screenshot.")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "runs.db")
        tollbench(
            "run",
            "demo",
            "-m",
            "openai/o4-mini",
            "-m",
            "anthropic/claude-haiku-4-5-thinking",
            "--budget",
            "5",
            "--sim",
            "--db",
            db,
        )
        tollbench(
            "run",
            "math500",
            "--data",
            str(ROOT / "tests/fixtures/suites/math500.jsonl"),
            "-m",
            "openai/o4-mini",
            "-m",
            "anthropic/claude-haiku-4-5-thinking",
            "-m",
            "openai/gpt-4o-mini",
            "--budget",
            "5",
            "--sim",
            "--db",
            db,
        )
        html = Path(tmp) / "report.html"
        tollbench("report", "--since", "2000-01-01", "--db", db, "-o", str(html))
        if args.html:
            shutil.copy(html, args.html)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={Path(tmp) / 'profile'}",
                f"--window-size={args.size}",
                f"--screenshot={args.out.resolve()}",
                html.as_uri(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
