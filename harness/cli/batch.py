"""``--batch`` and its options for ``tollbench run`` and ``tollbench estimate`` (docs/batch.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from harness.cli.common import _fail

__all__ = ["batch_flag", "batch_options", "batch_overrides"]

F = TypeVar("F", bound=Callable[..., Any])


def batch_flag(fn: F) -> F:
    """``--batch`` alone (``estimate``: price the eligible calls at the batch price)."""
    return click.option(
        "--batch",
        "batch",
        is_flag=True,
        help="Send eligible units (single-turn suites, OpenAI and Anthropic models) through the "
        "providers' batch APIs at the batch price (about half); see docs/batch.md.",
    )(fn)


def batch_options(fn: F) -> F:
    """``--batch`` and the options that tune it (``run``)."""
    options = [
        click.option(
            "--batch-retry",
            type=click.Choice(["live", "batch", "none"]),
            default="live",
            show_default=True,
            help="With --batch: errored or expired batch requests go again live, in a new batch, or not.",
        ),
        click.option(
            "--batch-deadline",
            type=float,
            metavar="SECONDS",
            help="With --batch: cancel the batches still running after SECONDS (completed work is kept "
            "and charged) and finish the rest live (see --no-batch-finish-live).",
        ),
        click.option(
            "--no-batch-finish-live",
            "no_batch_finish_live",
            is_flag=True,
            help="With --batch-deadline: leave what the batches did not answer not run.",
        ),
        click.option(
            "--batch-poll",
            type=float,
            default=30.0,
            show_default=True,
            metavar="SECONDS",
            help="With --batch: first wait between polls of a batch (then x1.5, up to 5 minutes).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return batch_flag(fn)


def batch_overrides(
    batch: bool,
    batch_retry: str = "live",
    batch_deadline: float | None = None,
    no_batch_finish_live: bool = False,
    batch_poll: float = 30.0,
) -> dict[str, Any]:
    """The :class:`~harness.run.plan.RunOptions` fields of the ``--batch`` options (exit 2 on bad ones)."""
    if not batch:
        if batch_deadline is not None:
            _fail("--batch-deadline needs --batch")
        return {}
    if batch_deadline is not None and batch_deadline <= 0:
        _fail("--batch-deadline must be more than 0 seconds")
    if batch_poll <= 0:
        _fail("--batch-poll must be more than 0 seconds")
    return {
        "batch": True,
        "batch_retry": batch_retry,
        "batch_deadline_s": batch_deadline,
        "batch_finish_live": not no_batch_finish_live,
        "batch_poll_s": batch_poll,
        "batch_poll_max_s": max(batch_poll, 300.0),
    }
