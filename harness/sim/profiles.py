"""Model profiles: what each impersonated model looks like (token sizes, latency, accuracy, faults).

The shipped defaults live in ``profiles.toml`` beside this module. A user file passed to
:func:`load_profiles` is merged over them table by table (so ``[models."o4-mini"] accuracy = 0.5``
changes only that value) and may add models. All distributions are drawn from the request's
seeded RNG, see :mod:`harness.sim.generate`.
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from harness.sim.faults import FaultConfig

__all__ = [
    "ModelProfile",
    "ReasoningDist",
    "TokenDist",
    "default_sim_models",
    "load_profiles",
    "resolve_model",
]

Provider = Literal["openai", "anthropic", "google"]  # google: issue 11

_PRICE_KINDS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")


@dataclass(frozen=True, slots=True)
class TokenDist:
    """Log-normal token count: ``median`` and log-space ``sigma``, clipped to ``[min, max]``."""

    median: float
    sigma: float = 0.5
    min: int = 1
    max: int = 100_000

    def draw(self, rng: random.Random, scale: float = 1.0) -> int:
        """One seeded draw, the median multiplied by ``scale``."""
        value = math.exp(math.log(max(self.median * scale, 1e-9)) + self.sigma * rng.gauss(0.0, 1.0))
        return max(self.min, min(self.max, round(value)))


@dataclass(frozen=True, slots=True)
class ReasoningDist:
    """Reasoning/thinking tokens: the median moves from ``easy_median`` to ``hard_median`` with difficulty."""

    easy_median: float
    hard_median: float
    sigma: float = 0.6
    min: int = 1
    max: int = 100_000

    def draw(self, rng: random.Random, difficulty: float, scale: float = 1.0) -> int:
        """One seeded draw for an item of ``difficulty`` (0..1), median times ``scale``."""
        d = min(1.0, max(0.0, difficulty))
        log_median = math.log(self.easy_median) + d * (
            math.log(self.hard_median) - math.log(self.easy_median)
        )
        median = math.exp(log_median) * scale
        return TokenDist(median, self.sigma, self.min, self.max).draw(rng)


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Everything the simulator needs to impersonate one model id."""

    id: str
    provider: Provider
    aliases: tuple[str, ...] = ()
    response_model: str = ""
    display_name: str = ""
    created: int = 1700000000
    reasoning: bool = False
    """OpenAI reasoning model: always spends reasoning tokens and rejects ``max_tokens`` on chat."""
    thinking: bool = False
    """Anthropic model that supports extended thinking (otherwise a thinking request is a 400)."""
    max_output_tokens: int = 16384
    accuracy: float = 0.7
    difficulty_slope: float = 0.5
    ttft_s: float = 0.5
    tokens_per_s: float = 80.0
    cache_hit_rate: float = 0.0
    cache_share: tuple[float, float] = (0.5, 0.95)
    cache_min_tokens: int = 1024
    rpm: int = 10_000
    tpm: int = 100_000_000
    output_tokens: TokenDist = field(default_factory=lambda: TokenDist(300.0))
    reasoning_tokens: ReasoningDist | None = None
    effort: dict[str, float] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    """USD per million tokens by kind (fallback when tollbench's price table has no row)."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    chunk_tokens: int = 16
    thinking_chunk_tokens: int = 64

    def accuracy_at(self, difficulty: float | None) -> float:
        """Probability of a correct answer for an item of the given difficulty (None = the base)."""
        if difficulty is None:
            return self.accuracy
        d = min(1.0, max(0.0, difficulty))
        return max(0.0, min(1.0, self.accuracy * (1.0 - self.difficulty_slope * d)))

    def effort_scale(self, effort: str | None) -> float:
        """Multiplier of reasoning length for a ``reasoning_effort`` value (1.0 when unknown)."""
        if effort is None:
            return 1.0
        return self.effort.get(effort, 1.0)

    def fallback_cost(self, usage_tokens: dict[str, int]) -> Decimal:
        """Cost from the profile's own prices (``usage_tokens`` keyed like :class:`Usage` fields).

        Raises:
            KeyError: the profile has no price for a kind of token that was used.
        """
        total = Decimal(0)
        prices = dict(self.prices)
        prices.setdefault("cache_read", prices.get("input", Decimal(0)))
        for kind in ("input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output"):
            n = usage_tokens.get(kind, 0)
            if not n:
                continue
            key = "input" if kind == "input_uncached" else kind
            if key not in prices:
                raise KeyError(f"no {key} price for {self.id} in the profile")
            total += prices[key] * n
        return total / Decimal(1_000_000)


def _dec(value: Any, where: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: not a decimal price: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{where}: not a non-negative price: {value!r}")
    return d


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_SIMPLE_KEYS = {
    "display_name": str,
    "response_model": str,
    "created": int,
    "reasoning": bool,
    "thinking": bool,
    "max_output_tokens": int,
    "accuracy": float,
    "difficulty_slope": float,
    "ttft_s": float,
    "tokens_per_s": float,
    "cache_hit_rate": float,
    "cache_min_tokens": int,
    "rpm": int,
    "tpm": int,
    "chunk_tokens": int,
    "thinking_chunk_tokens": int,
}


def _build(model_id: str, d: dict[str, Any], server: dict[str, Any]) -> ModelProfile:
    where = f"models.{model_id}"
    provider = d.get("provider")
    if provider not in ("openai", "anthropic", "google"):
        raise ValueError(f"{where}: provider must be 'openai', 'anthropic' or 'google', got {provider!r}")
    kwargs: dict[str, Any] = {"id": model_id, "provider": provider}
    for key in ("chunk_tokens", "thinking_chunk_tokens"):
        if key in server:
            kwargs[key] = int(server[key])
    known = set(_SIMPLE_KEYS) | {
        "provider",
        "aliases",
        "cache_share",
        "output_tokens",
        "reasoning_tokens",
        "effort",
        "prices",
        "faults",
    }
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key, typ in _SIMPLE_KEYS.items():
        if key in d:
            kwargs[key] = _typed(d[key], typ, f"{where}.{key}")
    aliases = d.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ValueError(f"{where}.aliases must be a list of strings")
    kwargs["aliases"] = tuple(aliases)
    kwargs.setdefault("response_model", model_id)
    kwargs.setdefault("display_name", model_id)
    if "cache_share" in d:
        share = d["cache_share"]
        if not isinstance(share, list) or len(share) != 2:
            raise ValueError(f"{where}.cache_share must be [low, high]")
        lo, hi = (_typed(v, float, f"{where}.cache_share") for v in share)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"{where}.cache_share must be 0 <= low <= high <= 1")
        kwargs["cache_share"] = (lo, hi)
    if "output_tokens" in d:
        kwargs["output_tokens"] = _dist(TokenDist, d["output_tokens"], f"{where}.output_tokens")
    if "reasoning_tokens" in d:
        kwargs["reasoning_tokens"] = _dist(ReasoningDist, d["reasoning_tokens"], f"{where}.reasoning_tokens")
    effort = d.get("effort", {})
    if not isinstance(effort, dict):
        raise ValueError(f"{where}.effort must be a table of multipliers")
    kwargs["effort"] = {
        str(k): _positive(_typed(v, float, f"{where}.effort.{k}"), f"{where}.effort.{k}")
        for k, v in effort.items()
    }
    prices = d.get("prices", {})
    if not isinstance(prices, dict):
        raise ValueError(f"{where}.prices must be a table")
    unknown_prices = set(prices) - set(_PRICE_KINDS)
    if unknown_prices:
        raise ValueError(f"{where}.prices: unknown kind(s) {', '.join(sorted(unknown_prices))}")
    kwargs["prices"] = {k: _dec(v, f"{where}.prices.{k}") for k, v in prices.items()}
    if "faults" in d:
        kwargs["faults"] = FaultConfig.from_mapping(d["faults"])
    profile = ModelProfile(**kwargs)
    if (profile.reasoning or profile.thinking) and profile.reasoning_tokens is None:
        raise ValueError(f"{where}: a reasoning/thinking model needs a reasoning_tokens table")
    if not 0.0 <= profile.accuracy <= 1.0 or not 0.0 <= profile.cache_hit_rate <= 1.0:
        raise ValueError(f"{where}: accuracy and cache_hit_rate must be in 0..1")
    if profile.tokens_per_s <= 0 or profile.chunk_tokens < 1 or profile.thinking_chunk_tokens < 1:
        raise ValueError(f"{where}: tokens_per_s and chunk sizes must be positive")
    if profile.ttft_s < 0 or profile.difficulty_slope < 0 or profile.cache_min_tokens < 0:
        raise ValueError(f"{where}: ttft_s, difficulty_slope and cache_min_tokens must not be negative")
    if profile.max_output_tokens < 1 or profile.rpm < 1 or profile.tpm < 1:
        raise ValueError(f"{where}: max_output_tokens, rpm and tpm must be at least 1")
    return profile


def _typed(value: Any, typ: type, where: str) -> Any:
    """``value`` checked against a TOML type: ``bool`` and ``str`` exactly, ``int`` without bools,
    ``float`` from an int or a float (finite)."""
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise ValueError(
            f"{where} must be {'a finite number' if typ is float else 'a ' + typ.__name__}, got {value!r}"
        )
    return typ(value)


def _positive(value: Any, where: str) -> float:
    number = float(_typed(value, float, where))
    if number <= 0:
        raise ValueError(f"{where} must be positive, got {value}")
    return number


def _dist(cls: type[Any], table: Any, where: str) -> Any:
    """A :class:`TokenDist` or :class:`ReasoningDist` from its TOML table, every value checked."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    names = set(cls.__dataclass_fields__)
    unknown = set(table) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        typ = int if key in ("min", "max") else float
        kwargs[key] = _typed(value, typ, f"{where}.{key}")
    try:
        dist = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    medians = [getattr(dist, n) for n in ("median", "easy_median", "hard_median") if hasattr(dist, n)]
    if any(m <= 0 for m in medians) or dist.sigma < 0 or dist.min < 0 or dist.max < dist.min:
        raise ValueError(f"{where}: medians must be positive, sigma >= 0 and 0 <= min <= max")
    return dist


def _shipped() -> dict[str, Any]:
    text = resources.files("harness.sim").joinpath("profiles.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_profiles(path: Path | None = None) -> dict[str, ModelProfile]:
    """The shipped profiles, merged with the user's TOML file when given.

    Args:
        path: a TOML file with ``[server]`` and ``[models."id"]`` tables (see ``profiles.toml``).

    Returns:
        Profiles keyed by their canonical model id.

    Raises:
        ValueError: the file cannot be read or is malformed (the message names the file).
    """
    data = _shipped()
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, RecursionError, tomllib.TOMLDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ValueError(f"{path}: cannot read profile file ({detail})") from None
        data = _merge(data, user)
    where = f"{path}: " if path is not None else ""
    unknown_top = set(data) - {"server", "models"}
    if unknown_top:
        listed = ", ".join(sorted(unknown_top))
        raise ValueError(f"{where}bad profile (unknown table(s) {listed}; use [server] and [models.ID])")
    server = data.get("server", {})
    models = data.get("models", {})
    if not isinstance(server, dict) or not isinstance(models, dict):
        raise ValueError(f"{where}bad profile ([server] and [models] must be tables)")
    unknown_server = set(server) - {"chunk_tokens", "thinking_chunk_tokens"}
    if unknown_server:
        raise ValueError(f"{where}bad profile (server: unknown key(s) {', '.join(sorted(unknown_server))})")
    for key, value in server.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}bad profile (server.{key} must be a positive integer, got {value!r})")
    out: dict[str, ModelProfile] = {}
    try:
        for model_id, table in models.items():
            if not isinstance(table, dict):
                raise ValueError(f"models.{model_id} must be a table")
            out[model_id] = _build(model_id, table, server)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}bad profile ({exc})") from None
    return out


def resolve_model(profiles: dict[str, ModelProfile], model: str, provider: Provider) -> ModelProfile | None:
    """Find the profile a requested model id (canonical, dated or alias) names, for one provider."""
    p = profiles.get(model)
    if p is None:
        for candidate in profiles.values():
            if model in candidate.aliases or model == candidate.response_model:
                p = candidate
                break
    if p is None or p.provider != provider:
        return None
    return p


def default_sim_models() -> dict[str, str]:
    """The model ids the shipped profiles impersonate, by role."""
    return {
        "openai_reasoning": "o4-mini",
        "openai": "gpt-4o-mini",
        "anthropic_thinking": "claude-sonnet-4-5",
        "anthropic": "claude-3-5-haiku-20241022",
    }
