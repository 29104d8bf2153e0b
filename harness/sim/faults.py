"""Fault injection for the simulator: seeded schedules of the failures real providers produce.

A :class:`FaultConfig` holds a rate (a probability in ``0..1``) per fault kind. For each generation
request the server draws at most one fault from the request's own seeded RNG (see
:mod:`harness.sim.generate`), so a schedule is reproducible for a given seed and request sequence.
Server-wide faults and a profile's faults add up (rates summed, capped at 1).

A request header ``x-sim-fault: <kind>`` forces one fault on that request; ``x-sim-fault-after: N``
fixes the chunk after which a mid-stream fault strikes and ``x-sim-stall-s: T`` the stall length.

Fault kinds and where they strike:

===========================  ====================================================================
``rate_limit_429``           HTTP 429 with ``retry-after``/``retry-after-ms`` before generation
``error_500``                HTTP 500 before generation
``error_503``                HTTP 503 before generation
``overloaded_529``           HTTP 529 (Anthropic ``overloaded_error``) before generation
``disconnect_mid_stream``    the connection is closed after N events (no terminator, no usage)
``stall``                    no bytes for ``stall_s`` seconds after N events, then the stream resumes
``malformed_chunk``          an SSE event with truncated JSON after N events, then the stream resumes
``stream_error_event``       OpenAI ``{"error": ...}`` / Responses nested ``error`` / Anthropic
                             ``event: error`` after N events; the body then ends
===========================  ====================================================================

Pre-generation faults cost nothing; mid-stream faults are billed for what was produced.
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FAULT_KINDS",
    "MID_STREAM_FAULTS",
    "PRE_STREAM_FAULTS",
    "FaultConfig",
    "FaultKind",
    "normalise_fault_name",
]

FaultKind = Literal[
    "rate_limit_429",
    "error_500",
    "error_503",
    "overloaded_529",
    "disconnect_mid_stream",
    "stall",
    "malformed_chunk",
    "stream_error_event",
]

FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit_429",
    "error_500",
    "error_503",
    "overloaded_529",
    "disconnect_mid_stream",
    "stall",
    "malformed_chunk",
    "stream_error_event",
)
PRE_STREAM_FAULTS: frozenset[str] = frozenset({"rate_limit_429", "error_500", "error_503", "overloaded_529"})
MID_STREAM_FAULTS: frozenset[str] = frozenset(
    {"disconnect_mid_stream", "stall", "malformed_chunk", "stream_error_event"}
)

_ALIASES: dict[str, FaultKind] = {
    "429": "rate_limit_429",
    "rate_limit": "rate_limit_429",
    "500": "error_500",
    "503": "error_503",
    "529": "overloaded_529",
    "overloaded": "overloaded_529",
    "disconnect": "disconnect_mid_stream",
    "cut": "disconnect_mid_stream",
    "malformed": "malformed_chunk",
    "error_event": "stream_error_event",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalise_fault_name(name: str) -> FaultKind | None:
    """Map a fault name or alias (``"429"``, ``"disconnect"``) to its kind; None if unknown."""
    key = name.strip().lower().replace("-", "_")
    for kind in FAULT_KINDS:
        if kind == key:
            return kind
    return _ALIASES.get(key)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-request fault probabilities and their parameters.

    Rates are probabilities in ``0..1``; their sum is the chance that a request gets some fault
    (normalised if it exceeds 1). ``after_chunks`` is the inclusive range from which the number of
    events sent before a mid-stream fault is drawn (it is also capped so the client never receives
    the final usage).
    """

    rate_limit_429: float = 0.0
    error_500: float = 0.0
    error_503: float = 0.0
    overloaded_529: float = 0.0
    disconnect_mid_stream: float = 0.0
    stall: float = 0.0
    malformed_chunk: float = 0.0
    stream_error_event: float = 0.0
    retry_after_s: float = 1.0
    """Value of ``retry-after`` on an injected 429/529 (keep it small in tests)."""
    stall_s: float = 5.0
    """Seconds without a byte during a ``stall``."""
    after_chunks: tuple[int, int] = (1, 8)

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {kind}={rate} is not in 0..1")
        lo, hi = self.after_chunks
        if lo < 0 or hi < lo:
            raise ValueError(f"after_chunks must be 0 <= lo <= hi, got {self.after_chunks}")
        for name in ("retry_after_s", "stall_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value}")

    @property
    def total_rate(self) -> float:
        """Probability that a request gets any fault (before normalisation)."""
        return sum(float(getattr(self, k)) for k in FAULT_KINDS)

    def combine(self, other: FaultConfig | None) -> FaultConfig:
        """Rates of both added (capped at 1); parameters from ``other`` when it sets faults."""
        if other is None:
            return self
        rates = {k: min(1.0, float(getattr(self, k)) + float(getattr(other, k))) for k in FAULT_KINDS}
        params = other if other.total_rate > 0 else self
        return replace(
            self,
            **rates,
            retry_after_s=params.retry_after_s,
            stall_s=params.stall_s,
            after_chunks=params.after_chunks,
        )

    def choose(self, rng: random.Random) -> FaultKind | None:
        """Draw at most one fault kind with the configured rates (one uniform draw, always taken)."""
        u = rng.random()
        total = self.total_rate
        if total <= 0.0:
            return None
        scale = 1.0 / total if total > 1.0 else 1.0
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += float(getattr(self, kind)) * scale
            if u < acc:
                return kind
        return None

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> FaultConfig:
        """Build from a dict (TOML/JSON table); unknown keys raise ``ValueError``.

        Raises:
            ValueError: an unknown key or an out-of-range value.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a table of fault settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "after_chunks":
                if _is_int(value):
                    kwargs[key] = (value, value)
                elif isinstance(value, list | tuple) and len(value) == 2 and all(_is_int(v) for v in value):
                    kwargs[key] = (int(value[0]), int(value[1]))
                else:
                    raise ValueError(f"after_chunks must be an integer or [lo, hi], got {value!r}")
            elif _is_number(value):
                kwargs[key] = float(value)
            else:
                raise ValueError(f"{key} must be a number, got {value!r}")
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> FaultConfig:
        """Load from a ``.toml`` or ``.json`` file (a flat table, or a ``[faults]`` table in TOML).

        Raises:
            ValueError: the file is malformed (the message names the file).
        """
        try:
            text = path.read_text(encoding="utf-8")
            data: Any = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
            if isinstance(data, dict) and isinstance(data.get("faults"), dict):
                data = data["faults"]
            if not isinstance(data, dict):
                raise ValueError("expected a table of fault settings")
            return cls.from_mapping(data)
        except (OSError, ValueError, TypeError, RecursionError, tomllib.TOMLDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ValueError(f"{path}: bad fault file ({detail})") from None

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["after_chunks"] = list(self.after_chunks)
        return out
