"""``tollbench sandbox``: what isolation model-written code gets on this machine."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

__all__ = ["sandbox"]


@click.group()
def sandbox() -> None:
    """The sandbox that runs model-written code (livecodebench, scicode)."""


@sandbox.command("check")
@click.option("--json", "json_output", is_flag=True, help="Print the result as JSON.")
def sandbox_check(json_output: bool) -> None:
    """Run hostile programs (network, environment, fork, memory, writes outside their directory,
    an endless loop) in the sandbox and print the isolation level and whether each was contained.

    Exits 1 if any check was not contained (always so at isolation level ``none``).
    """
    from harness.sandbox.check import run_checks

    iso, checks = run_checks()
    ok = all(c.contained for c in checks)
    if json_output:
        payload = {"isolation": asdict(iso), "checks": [asdict(c) for c in checks], "contained": ok}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(iso.describe())
        for c in checks:
            click.echo(f"{'contained' if c.contained else 'NOT CONTAINED':>13}  {c.name}: {c.detail}")
        click.echo("all contained" if ok else "some checks were NOT contained", err=not ok)
    if not ok:
        sys.exit(1)
