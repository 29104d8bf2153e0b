"""The live progress display of ``tollbench run``.

On a terminal: a rich table redrawn in place (items done per model, spend against budget, calls per
second, errors). Elsewhere (CI logs, pipes): one plain line every few seconds, and a last one at the end.
It writes to stderr so ``--json`` on stdout stays machine-readable.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, TextIO

from harness.pricing.money import format_usd

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.live import Live

    from harness.run.runner import RunState

#: Variables with which rich treats a stream that is not a terminal as one (then rich decides).
_FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")

__all__ = ["ProgressDisplay"]


class ProgressDisplay:
    def __init__(self, stream: TextIO, *, simulated: bool, interval_s: float = 5.0) -> None:
        self.stream = stream
        self.console: Console | None = None
        if _maybe_terminal(stream):  # rich (about 40 ms to import) only for a terminal
            from rich.console import Console

            self.console = Console(file=stream, stderr=True)
        self.live_mode = self.console is not None and self.console.is_terminal
        self.simulated = simulated
        self.interval_s = interval_s
        self._last_line = 0.0
        self._live: Live | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, state: RunState) -> None:
        if self._live is not None:
            self._live.update(self._render(state))
            return
        now = time.monotonic()
        done = sum(p.done for p in state.per_model.values())
        total = sum(p.total for p in state.per_model.values())
        finished = done >= total or state.budget_stop or state.interrupted
        if now - self._last_line < self.interval_s and not finished:
            return
        if finished and self._last_line < 0:
            return
        self._last_line = -1.0 if finished else now
        if self.console is None:
            self.stream.write(self._line(state) + "\n")
            self.stream.flush()
        else:
            from rich.text import Text

            self.console.print(Text(self._line(state)), highlight=False, soft_wrap=True)

    def _rate(self, state: RunState) -> float:
        elapsed = max(1e-6, time.monotonic() - state.started)
        return state.calls / elapsed

    def _line(self, state: RunState) -> str:
        parts = [
            f"{name}: {p.done}/{p.total} items, {p.failed_calls} failed calls, {p.errors} errors"
            for name, p in state.per_model.items()
        ]
        tag = " [SIMULATED]" if self.simulated else ""
        return (
            f"[{state.run_id}] {'; '.join(parts)} | spent {format_usd(state.spent_nano)} "
            f"(committed {format_usd(state.committed_nano)}) of {format_usd(state.budget_nano)}"
            f" | {self._rate(state):.1f} calls/s{self._projected(state)}{self._batches(state)}{tag}"
        )

    @staticmethod
    def _batches(state: RunState) -> str:
        """``--batch``: the batches in flight and their requests done, failed and expiring."""
        b = state.batch
        if b is None or not b.submitted + b.reattached:
            return ""
        return (
            f" | batches: {len(b.in_flight)} in flight, {b.requests} requests: {b.done} done, "
            f"{b.failed} failed, {b.expiring} expiring"
        )

    @staticmethod
    def _projected(state: RunState) -> str:
        if state.projection is None or state.projection.units_done == 0:
            return ""
        return f" | {state.projection.estimate().text()}"

    def _render(self, state: RunState) -> Group:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        for col in ("model", "items", "calls", "errors", "correct/scored"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, p in state.per_model.items():
            cells = (name, f"{p.done}/{p.total}", str(p.calls), str(p.errors), f"{p.correct}/{p.scored}")
            table.add_row(*(Text(c) for c in cells))
        tag = "  SIMULATED" if self.simulated else ""
        head = Text(
            f"run {state.run_id}  spent {format_usd(state.spent_nano)} + reserved "
            f"{format_usd(state.committed_nano - state.spent_nano)} of {format_usd(state.budget_nano)}  "
            f"{self._rate(state):.1f} calls/s{self._projected(state)}{tag}"
        )
        if (batches := self._batches(state)) != "":
            head.append(batches.replace(" | ", "\n", 1))
        if state.budget_stop:
            head.append("  budget reached: finishing in-flight calls", style="bold yellow")
        if state.interrupted:
            head.append("  interrupted: settling in-flight calls", style="bold red")
        return Group(head, table)


def _maybe_terminal(stream: TextIO) -> bool:
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    return any(os.environ.get(name) for name in _FORCING)
