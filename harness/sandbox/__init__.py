"""A sandbox for model-written code (LiveCodeBench, SciCode): see :mod:`harness.sandbox.core`."""

from __future__ import annotations

from .core import (
    GIB,
    LAUNCH_FAILED,
    MIB,
    Isolation,
    IsolationLevel,
    Limits,
    Result,
    isolation,
    pool_size,
    run_python,
    run_python_sync,
)

__all__ = [
    "GIB",
    "LAUNCH_FAILED",
    "MIB",
    "Isolation",
    "IsolationLevel",
    "Limits",
    "Result",
    "isolation",
    "pool_size",
    "run_python",
    "run_python_sync",
]
