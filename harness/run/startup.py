"""The garbage collector during a run's start-up: paused, then resumed with what start-up built frozen.

Start-up imports the SDKs (thousands of pydantic classes), builds the plan (a unit per model, item and
repeat) and opens the database: hundreds of thousands of objects that live as long as the process, and
almost no cyclic garbage. Collecting meanwhile only walks them, again and again as they grow: 0.2 s of
a one-unit run's start-up and 0.45 s of a 10,000-unit one (measured with ``gc.callbacks``). The
commands that start a run pause the collector (:func:`pause_collector`); the runner resumes it just
before its first workers start (:func:`resume_collector`), first moving everything alive into the
permanent generation (``gc.freeze()``) so the run's collections do not walk start-up's objects either,
and with the run's thresholds (:data:`RUN_THRESHOLDS`). A command that ends before that resumes it on
its way out, and every command ends with the thresholds it started with. Library callers never pause
it: resuming is then nothing.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["RUN_THRESHOLDS", "collector_paused", "end_of_command", "pause_collector", "resume_collector"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The collector's thresholds while a run goes (CPython's default is 700, 10, 10). Ten thousand live
#: streams keep hundreds of thousands of objects alive for half a minute each: at the default, the
#: first generation was collected every 700 allocations and promoted nearly everything it walked, and
#: the full collections that followed (23 in a 10,000-stream run, up to 1.7 s each) walked all the
#: streams again; the collector took 22.7 s of CPU of a 90.8 s run. At these thresholds: 4.3 s, no
#: full collection, the run 71.5 s, 60 MB more at peak (docs/performance.md).
RUN_THRESHOLDS = (50_000, 20, 100)

_paused = False
_thresholds: tuple[int, ...] | None = None


def pause_collector() -> None:
    """Stop automatic collection until :func:`resume_collector` (nothing if it is off already: who
    turned it off turns it back on)."""
    global _paused, _thresholds
    if gc.isenabled():
        gc.disable()
        _paused = True
        _thresholds = gc.get_threshold()


def resume_collector() -> None:
    """Undo :func:`pause_collector`: freeze what is alive, collect automatically again, at
    :data:`RUN_THRESHOLDS`. Idempotent."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.set_threshold(*RUN_THRESHOLDS)
        gc.enable()


def end_of_command() -> None:
    """Resume the collector if the command paused it, and give it back the thresholds it had."""
    global _thresholds
    resume_collector()
    if _thresholds is not None:
        gc.set_threshold(*_thresholds)
        _thresholds = None


def collector_paused(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a command that starts a run: the collector is paused from its start until the runner
    resumes it, and resumed when the command ends in any case."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        pause_collector()
        try:
            return command(*args, **kwargs)
        finally:
            end_of_command()

    return wrapper
