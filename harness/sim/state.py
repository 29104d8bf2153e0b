"""The simulator's shared state: profiles, seed, answer key, faults, rate windows and the invoice."""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from harness.answerkey import AnswerKey
from harness.sim.batch import BatchSettings, SimBatches
from harness.sim.faults import FAULT_KINDS, MID_STREAM_FAULTS, FaultConfig, FaultKind, normalise_fault_name
from harness.sim.generate import request_rng
from harness.sim.invoice import Invoice, Pricer, default_pricer
from harness.sim.profiles import ModelProfile
from harness.sim.ratelimit import RateLimiter

__all__ = ["FaultChoice", "SimState"]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


@dataclass(frozen=True, slots=True)
class FaultChoice:
    """The fault (if any) drawn or forced for one request."""

    kind: FaultKind | None
    after: int
    stall_s: float
    retry_after_s: float


class SimState:
    """Everything the request handlers share. Handlers run on the server's event loop; ``invoice``,
    ``answer_key`` and ``faults`` may also be read or replaced from other threads."""

    def __init__(
        self,
        *,
        profiles: Mapping[str, ModelProfile],
        seed: int = 0,
        answer_key: AnswerKey | None = None,
        speed: float = 0.0,
        faults: FaultConfig | None = None,
        pricer: Pricer | None = None,
        pace_s: float = 0.0,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if not pace_s >= 0:
            raise ValueError("pace_s must be >= 0")
        self.profiles = dict(profiles)
        self.seed = seed
        self.answer_key = answer_key if answer_key is not None else AnswerKey()
        self.speed = speed
        self.pace_s = pace_s
        """Streams' pacing tick in seconds (:class:`harness.sim.streaming.SSEResponse`); 0 = per event."""
        self.faults = faults
        self.invoice = Invoice(pricer if pricer is not None else default_pricer(self.profiles))
        self.rate_limiter = RateLimiter()
        self.batch_settings = BatchSettings()
        """The batch APIs' time scale and faults (:mod:`harness.sim.batch`)."""
        self.batches: SimBatches | None = None
        """The batch APIs' files and batches (set by :func:`harness.sim.app.build_app`)."""
        self._seen: dict[bytes, int] = {}
        self._seen_lock = threading.Lock()
        self._counter = itertools.count(1)
        self._prefix = secrets.randbits(64)

    def rng_for(self, body: bytes) -> random.Random:
        """The request's RNG: (seed, sha256(body), times this exact body was seen before)."""
        digest = hashlib.sha256(body).digest()
        with self._seen_lock:
            n = self._seen.get(digest, 0)
            self._seen[digest] = n + 1
        return request_rng(self.seed, digest, n)

    def _next(self) -> int:
        return (self._prefix << 64) | next(self._counter)

    def request_id(self, provider: str) -> str:
        """A fresh provider request id (``x-request-id`` / ``request-id`` header value)."""
        n = self._next()
        if provider == "anthropic":
            return "req_011C" + _b62(n, 20)
        return f"req_{n:032x}"

    def body_id(self, kind: str) -> str:
        """A fresh body id: ``chatcmpl-``, ``resp_``, ``msg_`` (Anthropic), ``rs_``/``msgi_`` items."""
        n = self._next()
        if kind == "chat":
            return "chatcmpl-" + _b62(n, 29)
        if kind == "resp":
            return f"resp_{n:048x}"
        if kind == "rs":
            return f"rs_{n:048x}"
        if kind == "msgi":
            return f"msg_{n:048x}"
        return "msg_01" + _b62(n, 22)

    def choose_fault(
        self, rng: random.Random, profile: ModelProfile, headers: Mapping[str, str], stream: bool
    ) -> FaultChoice:
        """Draw the request's fault from server + profile rates, or take the ``x-sim-fault`` header.

        The same number of draws is made whatever the outcome, so forcing a fault by header does
        not change the rest of the request's output.

        Raises:
            ValueError: an unknown fault name in ``x-sim-fault``.
        """
        cfg = profile.faults.combine(self.faults)
        kind = cfg.choose(rng)
        lo, hi = cfg.after_chunks
        after = rng.randint(lo, hi)
        forced = headers.get("x-sim-fault")
        if forced:
            kind = normalise_fault_name(forced)
            if kind is None:
                raise ValueError(f"unknown x-sim-fault {forced!r}; known: {', '.join(FAULT_KINDS)}")
        if headers.get("x-sim-fault-after"):
            after = int(headers["x-sim-fault-after"])
        stall_s = float(headers.get("x-sim-stall-s") or cfg.stall_s)
        if kind in MID_STREAM_FAULTS and not stream and kind != "stall":
            kind = None  # a non-streaming body cannot be cut mid-way; stall delays the headers
        return FaultChoice(kind, after, stall_s, cfg.retry_after_s)
