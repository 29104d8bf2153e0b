"""The garbage collector during a run's start-up: paused, then resumed with what start-up built frozen.

Start-up imports the SDKs (thousands of pydantic classes), builds the plan (a unit per model, item and
repeat) and opens the database: hundreds of thousands of objects that live as long as the process, and
almost no cyclic garbage. Collecting meanwhile only walks them, again and again as they grow: 0.2 s of
a one-unit run's start-up and 0.45 s of a 10,000-unit one (measured with ``gc.callbacks``). The
commands that start a run pause the collector (:func:`pause_collector`); the runner resumes it just
before its first workers start (:func:`resume_collector`), first moving everything alive into the
permanent generation (``gc.freeze()``) so the run's collections do not walk start-up's objects either.
A command that ends before that resumes it on its way out. Library callers never pause it: resuming is
then nothing.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["collector_paused", "pause_collector", "resume_collector"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_paused = False


def pause_collector() -> None:
    """Stop automatic collection until :func:`resume_collector` (nothing if it is off already: who
    turned it off turns it back on)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """Undo :func:`pause_collector`: freeze what is alive, collect automatically again. Idempotent."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def collector_paused(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a command that starts a run: the collector is paused from its start until the runner
    resumes it, and resumed when the command ends in any case."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        pause_collector()
        try:
            return command(*args, **kwargs)
        finally:
            resume_collector()

    return wrapper
