"""Know the bill before paying it: a cost forecast for a prepared run, and the budget pre-check.

For every model and suite of a :class:`~harness.run.plan.Plan` the forecast gives the number of calls,
the prompt tokens counted from the rendered prompts, the expected cost, a 95% interval and the worst
case (every call at its reservation), from the best source available:

``history:this-suite``
    this model's past calls on this suite in the database (output and reasoning tokens, cache share,
    the spend of failed attempts);
``history:other-suites``
    its past calls on other suites, with reasoning tokens scaled by a difficulty factor per suite
    type (:data:`TYPE_FACTORS`) and the input re-counted from this suite's prompts;
``profile``
    a per-model token profile (``harness/data/model_profiles.toml``);
``worst-case``
    nothing known: every call at its reservation.

The method (docs/forecast.md): every past call ``h`` is transplanted onto every planned prompt ``j``
(its cache shares applied to ``j``'s prompt tokens, its output tokens cut at the new output limit) and
priced at ``j``'s tier. With ``T_h`` the cost of the whole plan if every call behaved like ``h``::

    expected = mean_h T_h
    variance = sum_j Var_h(cost_jh)                 (the N calls' own noise)
             + t^2/z^2 * Var_h(T_h) / n             (the mean estimated from n past calls)
             + (rel * expected)^2                   (source uncertainty: 0 for this suite)
    interval = expected +- 1.96 * sqrt(variance), the upper end capped at the worst case

Statistics use :class:`~decimal.Decimal`; amounts at rest are integer nano-dollars.
"""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from harness.pricing.cost import Price, UnitPrices
from harness.pricing.money import usd_str, usd_to_nano
from harness.suite import SteppedSuite
from harness.types import ImageRule, Message, ModelSpec, image_tokens_upper_bound, input_tokens_upper_bound

if TYPE_CHECKING:
    from harness.run.plan import Plan
    from harness.store.engine import Store

__all__ = [
    "SOURCES",
    "TYPE_FACTORS",
    "CallObs",
    "Forecast",
    "ForecastRow",
    "ModelProfile",
    "Verdict",
    "check_budget",
    "estimate_input_tokens",
    "forecast_plan",
    "load_history",
    "load_model_profiles",
    "load_published_usage",
    "mark_pilot",
]

SOURCES = ("history:this-suite", "history:other-suites", "published", "profile", "worst-case")

#: Reasoning tokens by suite type, relative to multiple choice. From the simulator's profiles:
#: reasoning length interpolates geometrically from an easy to a hard median (ratio ~13-15 for the
#: shipped reasoning models) with difficulty 0.7 (boxed maths), 0.5 (multiple choice), 0.3 (short
#: text): exp(0.2 * ln 13) ~ 1.65 per step.
TYPE_FACTORS: dict[str, Decimal] = {"boxed": Decimal("1.65"), "letter": Decimal("1"), "text": Decimal("0.6")}

#: Suite types of the bundled suites (for past suites not in the current plan).
KNOWN_SUITE_TYPES = {
    "math500": "boxed",
    "aime2024": "boxed",
    "aime2025": "boxed",
    "mmlu-pro": "letter",
    "gpqa-diamond": "letter",
}

#: Relative uncertainty of the mean added per source (see docs/forecast.md).
SOURCE_REL_UNCERTAINTY = {
    "history:this-suite": Decimal(0),
    "history:other-suites": Decimal("0.25"),
    "published": Decimal("0.40"),
    "profile": Decimal("0.35"),
}

MIN_HISTORY = 10
"""Fewest usable past calls a history source needs."""
HISTORY_LIMIT = 5000
"""Most recent past calls used per model (and suite)."""
PROFILE_DRAWS = 2000

_Z = Decimal("1.959963984540054")
_PER_M = Decimal(1_000_000)


def estimate_input_tokens(messages: Sequence[Message], image_rule: ImageRule | None = None) -> int:
    """Estimated prompt tokens: ``3 + sum(ceil(utf8_bytes / 4) + 4)`` over the messages, plus each
    image's tokens under the model's ``image_rule`` (what the simulator bills; the worst case
    without a rule).

    Four bytes per token is the usual rule of thumb for English text with the providers' BPE
    tokenizers (and exactly what the simulator bills); the constants are the chat framing.
    """
    text = 3 + sum((len(m.content.encode("utf-8")) + 3) // 4 + 4 for m in messages)
    return text + sum(image_tokens_upper_bound(image_rule, i) for m in messages for i in m.images)


def _t_quantile(df: int) -> Decimal:
    """Two-sided 95% Student t quantile (a table for df <= 3, else the Cornish-Fisher expansion)."""
    z = 1.959963984540054
    exact = {1: "12.706", 2: "4.303", 3: "3.182"}
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if df in exact:
        return Decimal(exact[df])
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return Decimal(repr(z + g1 / df + g2 / df**2 + g3 / df**3))


def _nano_up(usd: Decimal) -> int:
    return usd_to_nano(max(usd, Decimal(0)))


def _nano_down(usd: Decimal) -> int:
    return max(0, int((usd * 10**9).to_integral_value(rounding=ROUND_FLOOR)))


# ------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True, slots=True)
class CallObs:
    """One past call's tokens (or a profile draw), as the forecast uses them."""

    input_total: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    output: int
    reasoning: int
    finish_reason: str | None = None

    def shares(self) -> tuple[Decimal, Decimal, Decimal]:
        """Cache read, 5 min write and 1 h write as fractions of the prompt."""
        if self.input_total <= 0:
            return Decimal(0), Decimal(0), Decimal(0)
        t = Decimal(self.input_total)
        return self.cache_read / t, self.cache_write_5m / t, self.cache_write_1h / t


@dataclass
class History:
    """One model's usable past calls on one suite, plus what failed attempts added."""

    suite: str
    calls: list[CallObs] = field(default_factory=list)
    ok_cost_nano: int = 0
    all_cost_nano: int = 0

    @property
    def overhead(self) -> Decimal:
        """Total spend over the spend of usable calls (>= 1: retries and failed attempts)."""
        if self.ok_cost_nano <= 0:
            return Decimal(1)
        return max(Decimal(1), Decimal(self.all_cost_nano) / Decimal(self.ok_cost_nano))


def load_history(
    store: Store,
    model: str,
    *,
    simulated: bool,
    runs: Sequence[str] | None = None,
    limit: int = HISTORY_LIMIT,
) -> dict[str, History]:
    """This model's past target calls by suite, newest first, from live (or simulated) runs only.

    Args:
        store: the database.
        model: the model's name as runs record it (``openai/o4-mini-high``).
        simulated: read simulated runs (True) or live runs (False); the two never mix.
        runs: only these run ids (a pilot's).
        limit: most recent calls read.
    """
    from harness.store.engine import calls_table, runs_table

    c, r = calls_table, runs_table
    stmt = (
        sa.select(
            c.c.suite,
            c.c.status,
            c.c.usage_known,
            c.c.input_uncached,
            c.c.cache_read,
            c.c.cache_write_5m,
            c.c.cache_write_1h,
            c.c.output_tokens,
            c.c.reasoning_tokens,
            c.c.cost_nano,
            c.c.reserved_nano,
            c.c.finish_reason,
        )
        .join(r, r.c.id == c.c.run_id)
        .where(c.c.model == model, c.c.role == "target", r.c.simulated == simulated)
        .order_by(c.c.started_at.desc())
        .limit(limit)
    )
    if runs is not None:
        stmt = stmt.where(c.c.run_id.in_(list(runs)))
    out: dict[str, History] = {}
    with store.begin_read("reading past calls") as conn:
        for row in conn.execute(stmt):
            h = out.setdefault(row.suite, History(row.suite))
            cost = int(row.cost_nano if row.cost_nano is not None else row.reserved_nano)
            h.all_cost_nano += cost
            if row.status != "ok" or not row.usage_known:
                continue
            h.ok_cost_nano += cost
            h.calls.append(
                CallObs(
                    input_total=int(row.input_uncached or 0)
                    + int(row.cache_read or 0)
                    + int(row.cache_write_5m or 0)
                    + int(row.cache_write_1h or 0),
                    cache_read=int(row.cache_read or 0),
                    cache_write_5m=int(row.cache_write_5m or 0),
                    cache_write_1h=int(row.cache_write_1h or 0),
                    output=int(row.output_tokens or 0),
                    reasoning=int(row.reasoning_tokens or 0),
                    finish_reason=row.finish_reason,
                )
            )
    return out


def _past_suite_type(store: Store, suite: str) -> str:
    """A past suite's type: known name, else guessed from its recorded targets."""
    if suite in KNOWN_SUITE_TYPES:
        return KNOWN_SUITE_TYPES[suite]
    from harness.store.engine import item_results_table as t

    with store.begin_read("reading past items") as conn:
        targets = [
            str(v or "").strip()
            for (v,) in conn.execute(sa.select(t.c.target).where(t.c.suite == suite).limit(200))
        ]
    if not targets:
        return "letter"
    letters = sum(1 for v in targets if len(v) == 1 and "A" <= v <= "J")
    if letters >= 0.9 * len(targets):
        return "letter"
    numeric = sum(1 for v in targets if v.replace("-", "", 1).replace(".", "", 1).isdigit())
    return "boxed" if numeric >= 0.5 * len(targets) else "text"


# ------------------------------------------------------------------------------------------ profiles


@dataclass(frozen=True, slots=True)
class _LogNormal:
    median: float
    sigma: float
    lo: int
    hi: int

    def draw(self, rng: random.Random, scale: float = 1.0) -> int:
        value = math.exp(math.log(max(self.median * scale, 1e-9)) + self.sigma * rng.gauss(0.0, 1.0))
        return max(self.lo, min(self.hi, round(value)))


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Typical token usage of one model (``harness/data/model_profiles.toml``)."""

    name: str
    aliases: tuple[str, ...]
    reasoning: str
    """``always`` (OpenAI reasoning models), ``thinking`` (only with a thinking budget) or ``never``."""
    output: _LogNormal
    reasoning_easy: float = 0.0
    reasoning_hard: float = 0.0
    reasoning_sigma: float = 0.6
    reasoning_lo: int = 1
    reasoning_hi: int = 100_000
    effort: Mapping[str, float] = field(default_factory=dict)
    cache_hit_rate: float = 0.0
    cache_share: tuple[float, float] = (0.5, 0.95)
    cache_min_tokens: int = 1024
    difficulty: Mapping[str, float] = field(default_factory=dict)

    def draw(
        self, rng: random.Random, fmt: str, spec: ModelSpec, max_out: int, prompt_tokens: int
    ) -> CallObs:
        """One seeded call: visible and reasoning tokens cut at ``max_out``, and a cache outcome."""
        visible = self.output.draw(rng)
        reasoning = 0
        thinks = self.reasoning == "always" or (self.reasoning == "thinking" and spec.thinking_budget)
        if thinks and self.reasoning_easy > 0:
            d = self.difficulty.get(fmt, 0.5)
            median = math.exp(
                math.log(self.reasoning_easy)
                + d * (math.log(self.reasoning_hard) - math.log(self.reasoning_easy))
            )
            scale = self.effort.get(spec.reasoning_effort or "", 1.0)
            dist = _LogNormal(median, self.reasoning_sigma, self.reasoning_lo, self.reasoning_hi)
            reasoning = dist.draw(rng, scale)
            if spec.thinking_budget is not None:
                reasoning = min(reasoning, spec.thinking_budget)
        reasoning = min(reasoning, max_out)
        output = min(max_out, reasoning + visible)
        read = 0
        hit = rng.random() < self.cache_hit_rate
        share = rng.uniform(*self.cache_share)
        if hit and prompt_tokens >= self.cache_min_tokens:
            read = int(prompt_tokens * share)
        return CallObs(prompt_tokens, read, 0, 0, output, reasoning)


@dataclass(frozen=True, slots=True)
class PublishedUsage:
    """A real model's published token total over a suite mix (``harness/data/published_usage.toml``)."""

    name: str
    mean_output: float
    """Output tokens per call over the published mix."""
    reasoning_share: float
    mix_factor: float
    """The mix's mean type factor (:data:`TYPE_FACTORS` weighted by its calls per suite type)."""
    source: str
    thinking_only: bool = False
    """The total was measured with extended thinking: it applies only to a spec with a thinking budget."""
    sigma: float = 0.8

    def draw(self, rng: random.Random, fmt: str, max_out: int, prompt_tokens: int) -> CallObs:
        """One seeded call of suite type ``fmt``: the published mean moved by the type's factor."""
        mean = self.mean_output * float(TYPE_FACTORS.get(fmt, Decimal(1))) / self.mix_factor
        median = mean / math.exp(self.sigma**2 / 2)
        output = min(max_out, max(1, round(math.exp(math.log(median) + self.sigma * rng.gauss(0.0, 1.0)))))
        return CallObs(prompt_tokens, 0, 0, 0, output, round(output * self.reasoning_share))


def load_published_usage(path: Path | None = None) -> dict[str, PublishedUsage]:
    """The shipped published token totals, keyed by model and every alias.

    Raises:
        ValueError: the file cannot be read or is malformed.
    """
    try:
        if path is None:
            text = resources.files("harness").joinpath("data", "published_usage.toml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = tomllib.loads(text)
        mix = {k: int(v) for k, v in data["mix"].items()}
        total = sum(mix.values())
        mix_factor = sum(float(TYPE_FACTORS[k]) * n for k, n in mix.items()) / total
        out: dict[str, PublishedUsage] = {}
        for name, m in data.get("models", {}).items():
            entry = PublishedUsage(
                name=name,
                mean_output=int(m["output_tokens"]) / int(m["calls"]),
                reasoning_share=float(Decimal(str(m.get("reasoning_share", "0")))),
                mix_factor=mix_factor,
                source=str(m["source"]),
                thinking_only=bool(m.get("thinking_only", False)),
            )
            for key in (name, *m.get("aliases", [])):
                out[key] = entry
    except (OSError, KeyError, ValueError, TypeError, ArithmeticError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path or 'published_usage.toml'}: cannot read published usage ({exc})") from None
    return out


def load_model_profiles(path: Path | None = None) -> dict[str, ModelProfile]:
    """The shipped per-model token profiles, or those of ``path``; keyed by name and every alias.

    Raises:
        ValueError: the file cannot be read or is malformed.
    """
    try:
        if path is None:
            text = resources.files("harness").joinpath("data", "model_profiles.toml").read_text("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path or 'model_profiles.toml'}: cannot read profiles ({exc})") from None
    difficulty = {str(k): float(v) for k, v in doc.get("difficulty", {}).items()}
    out: dict[str, ModelProfile] = {}
    try:
        for name, d in doc.get("models", {}).items():
            o = d["output_tokens"]
            r = d.get("reasoning_tokens", {})
            cache = d.get("cache", {})
            prof = ModelProfile(
                name=name,
                aliases=tuple(d.get("aliases", ())),
                reasoning=str(d.get("reasoning", "never")),
                output=_LogNormal(float(o["median"]), float(o.get("sigma", 0.5)), o.get("min", 1), o["max"]),
                reasoning_easy=float(r.get("easy_median", 0)),
                reasoning_hard=float(r.get("hard_median", 0)),
                reasoning_sigma=float(r.get("sigma", 0.6)),
                reasoning_lo=int(r.get("min", 1)),
                reasoning_hi=int(r.get("max", 100_000)),
                effort={str(k): float(v) for k, v in d.get("effort", {}).items()},
                cache_hit_rate=float(cache.get("hit_rate", 0.0)),
                cache_share=(
                    float(cache.get("share", [0.5, 0.95])[0]),
                    float(cache.get("share", [0.5, 0.95])[1]),
                ),
                cache_min_tokens=int(cache.get("min_tokens", 1024)),
                difficulty=difficulty,
            )
            if prof.reasoning not in ("always", "thinking", "never"):
                raise ValueError(f"models.{name}.reasoning must be always, thinking or never")
            for key in (name, *prof.aliases):
                out[key] = prof
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path or 'model_profiles.toml'}: bad profile ({exc})") from None
    return out


# ------------------------------------------------------------------------------------------ the forecast


@dataclass(frozen=True, slots=True)
class ForecastRow:
    """The forecast for one model and suite (amounts in nano-dollars)."""

    model: str
    suite: str
    calls: int
    input_tokens: int
    """Estimated prompt tokens of every call (:func:`estimate_input_tokens`)."""
    input_tokens_bound: int
    """The reservation's upper bound of the same prompts."""
    expected_nano: int
    lower_nano: int
    upper_nano: int
    """The 95% interval's upper end, capped at the worst case."""
    worst_case_nano: int
    """Every call at its reservation (what the budget ledger reserves)."""
    source: str
    history_calls: int = 0
    per_call_sd_nano: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; amounts as decimal strings."""
        return {
            "model": self.model,
            "suite": self.suite,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "input_tokens_bound": self.input_tokens_bound,
            "expected_usd": usd_str(self.expected_nano),
            "lower_usd": usd_str(self.lower_nano),
            "upper_usd": usd_str(self.upper_nano),
            "worst_case_usd": usd_str(self.worst_case_nano),
            "source": self.source,
            "history_calls": self.history_calls,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Forecast:
    """A forecast of a whole plan. Totals add the rows' upper ends (a conservative total)."""

    rows: tuple[ForecastRow, ...]
    simulated: bool

    @property
    def expected_nano(self) -> int:
        return sum(r.expected_nano for r in self.rows)

    @property
    def lower_nano(self) -> int:
        return sum(r.lower_nano for r in self.rows)

    @property
    def upper_nano(self) -> int:
        return sum(r.upper_nano for r in self.rows)

    @property
    def worst_case_nano(self) -> int:
        return sum(r.worst_case_nano for r in self.rows)

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rows)

    def row(self, model: str, suite: str) -> ForecastRow:
        """The row of one model and suite (KeyError if absent)."""
        for r in self.rows:
            if r.model == model and r.suite == suite:
                return r
        raise KeyError((model, suite))

    def for_model(self, model: str) -> tuple[int, int, int]:
        """``(expected, upper, worst case)`` of one model over its suites."""
        rows = [r for r in self.rows if r.model == model]
        return (
            sum(r.expected_nano for r in rows),
            sum(r.upper_nano for r in rows),
            sum(r.worst_case_nano for r in rows),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form; amounts as decimal strings."""
        return {
            "simulated": self.simulated,
            "rows": [r.as_dict() for r in self.rows],
            "total": {
                "calls": self.calls,
                "input_tokens": sum(r.input_tokens for r in self.rows),
                "expected_usd": usd_str(self.expected_nano),
                "lower_usd": usd_str(self.lower_nano),
                "upper_usd": usd_str(self.upper_nano),
                "worst_case_usd": usd_str(self.worst_case_nano),
            },
        }


@dataclass(frozen=True, slots=True)
class _Prompts:
    est: list[int]
    bound: list[int]
    formats: dict[str, int]


def _suite_prompts(plan: Plan) -> dict[str, dict[str, _Prompts]]:
    """Rendered prompt sizes of each model's units, per model and suite (each prompt rendered once)."""
    cache: dict[tuple[str, str, int, ImageRule | None], list[tuple[int, int, str]]] = {}
    out: dict[str, dict[str, _Prompts]] = {}
    # A runtime-checkable protocol's isinstance is slow: once per suite, not per unit.
    stepped = {n: (s if isinstance(s, SteppedSuite) else None) for n, s in plan.suites.items()}
    for name, mp in plan.models.items():
        per: dict[str, _Prompts] = {}
        for unit in mp.units:
            rule = mp.spec.image_rule
            key = (unit.suite, unit.item.id, unit.repeat, rule)
            got = cache.get(key)
            if got is None:
                prompt = plan.prompt(unit)
                # A stepped unit is a chain of calls: each step's prompt (without the model's code
                # for the earlier steps, which is not written yet).
                chain = stepped[unit.suite]
                calls = chain.key_prompts(prompt) if chain is not None else [prompt]
                got = [
                    (
                        estimate_input_tokens(c.messages, rule),
                        input_tokens_upper_bound(c.messages, rule),
                        c.answer_format,
                    )
                    for c in calls
                ]
                cache[key] = got
            p = per.setdefault(unit.suite, _Prompts([], [], {}))
            for est, bound, fmt in got:
                p.est.append(est)
                p.bound.append(bound)
                p.formats[fmt] = p.formats.get(fmt, 0) + 1
        out[name] = per
    return out


def _type_factor(formats: Mapping[str, int]) -> Decimal:
    total = sum(formats.values())
    if not total:
        return Decimal(1)
    return sum((TYPE_FACTORS.get(f, Decimal(1)) * n for f, n in formats.items()), Decimal(0)) / total


def _worst_case_nano(price: Price, bounds: Sequence[int], max_out: int) -> int:
    per: dict[int, int] = {}
    total = 0
    for b in bounds:
        v = per.get(b)
        if v is None:
            v = per[b] = usd_to_nano(price.worst_case(b, max_out))
        total += v
    return total


@dataclass(frozen=True, slots=True)
class _Moments:
    expected: Decimal
    noise_var: Decimal
    param_var: Decimal


def _moments(
    price: Price, est: Sequence[int], obs: Sequence[tuple[Decimal, Decimal, Decimal, int]]
) -> _Moments:
    """Expected total cost (USD) and its variance parts for prompts ``est`` and transplanted calls
    ``obs`` = (cache-read share, 5 min write share, 1 h write share, output tokens)."""
    tiers: dict[UnitPrices, list[int]] = {}
    rates_of: dict[int, UnitPrices] = {}
    for i in est:
        up = rates_of.get(i)
        if up is None:
            up = rates_of[i] = price.unit_prices(i)
        tiers.setdefault(up, []).append(i)
    n = len(obs)
    totals = [Decimal(0)] * n
    noise = Decimal(0)
    for up, sizes in tiers.items():
        cnt = Decimal(len(sizes))
        s1 = Decimal(sum(sizes))
        s2 = Decimal(sum(i * i for i in sizes))
        a = [
            (
                (1 - cr - w5 - w1) * up.input
                + cr * up.cached_input
                + w5 * up.cache_write_5m
                + w1 * up.cache_write_1h
            )
            / _PER_M
            for cr, w5, w1, _ in obs
        ]
        b = [out * up.output / _PER_M for _, _, _, out in obs]
        for h in range(n):
            totals[h] += s1 * a[h] + cnt * b[h]
        if n >= 2:
            ma, mb = sum(a, Decimal(0)) / n, sum(b, Decimal(0)) / n
            va = sum(((x - ma) ** 2 for x in a), Decimal(0)) / (n - 1)
            vb = sum(((x - mb) ** 2 for x in b), Decimal(0)) / (n - 1)
            cov = sum(((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)), Decimal(0)) / (n - 1)
            noise += s2 * va + cnt * vb + 2 * s1 * cov
    expected = sum(totals, Decimal(0)) / n
    param = sum(((t - expected) ** 2 for t in totals), Decimal(0)) / (n - 1) / n if n >= 2 else Decimal(0)
    return _Moments(expected, max(noise, Decimal(0)), param)


def _transplant(
    calls: Sequence[CallObs], factor: Decimal, max_out: int, thinking_budget: int | None
) -> list[tuple[Decimal, Decimal, Decimal, int]]:
    out: list[tuple[Decimal, Decimal, Decimal, int]] = []
    for c in calls:
        reasoning = int((Decimal(c.reasoning) * factor).to_integral_value(rounding=ROUND_CEILING))
        if thinking_budget is not None:
            reasoning = min(reasoning, thinking_budget)
        output = min(max_out, c.output - c.reasoning + reasoning)
        out.append((*c.shares(), output))
    return out


def forecast_plan(
    plan: Plan,
    store: Store | None = None,
    *,
    simulated: bool | None = None,
    history_runs: Sequence[str] | None = None,
    profiles: Mapping[str, ModelProfile] | None = None,
    min_history: int = MIN_HISTORY,
    seed: int = 0,
) -> Forecast:
    """Forecast the cost of every model and suite of ``plan``; spends and writes nothing.

    Args:
        plan: from :func:`harness.run.plan.prepare_run` (``simulated=True`` there skips the key check).
        store: the database with past runs (None: no history).
        simulated: read simulated history (default: ``plan.options.simulated``).
        history_runs: only use these runs' calls as history (a pilot's).
        profiles: per-model token profiles (default: the shipped ones).
        min_history: fewest usable past calls for a history source.
        seed: seeds the profile draws.
    """
    sim = plan.options.simulated if simulated is None else simulated
    profs = load_model_profiles() if profiles is None else profiles
    prompts = _suite_prompts(plan)
    rows: list[ForecastRow] = []
    type_cache: dict[str, Decimal] = {}
    for name, mp in plan.models.items():
        history = load_history(store, name, simulated=sim, runs=history_runs) if store is not None else {}
        for suite_name, p in prompts[name].items():
            worst = _worst_case_nano(mp.price, p.bound, mp.max_output_tokens)
            factor = _type_factor(p.formats)
            source, obs, overhead, n_hist, note = _choose_source(
                plan,
                store,
                mp.spec,
                mp.max_output_tokens,
                suite_name,
                p,
                factor,
                history,
                profs,
                min_history,
                seed,
                type_cache,
            )
            base = dict(  # noqa: C408
                model=name,
                suite=suite_name,
                calls=len(p.est),
                input_tokens=sum(p.est),
                input_tokens_bound=sum(p.bound),
                worst_case_nano=worst,
            )
            if source == "worst-case" or not obs:
                rows.append(
                    ForecastRow(
                        **base,  # type: ignore[arg-type]
                        expected_nano=worst,
                        lower_nano=0,
                        upper_nano=worst,
                        source="worst-case",
                        note=note or "no history or profile for this model: every call at its reservation",
                    )
                )
                continue
            est = p.est
            if source == "history:this-suite":
                est = _calibrated(p.est, history[suite_name].calls)
            m = _moments(mp.price, est, obs)
            rel = SOURCE_REL_UNCERTAINTY[source]
            tq = _t_quantile(max(1, n_hist - 1)) if source.startswith("history") else _Z
            var = m.noise_var + (tq / _Z) ** 2 * m.param_var + (rel * m.expected) ** 2
            half = _Z * var.sqrt()
            expected = m.expected * overhead
            upper = min(_nano_up((m.expected + half) * overhead), worst)
            calls = len(p.est)
            rows.append(
                ForecastRow(
                    **base,  # type: ignore[arg-type]
                    expected_nano=min(_nano_up(expected), worst),
                    lower_nano=min(_nano_down((m.expected - half) * overhead), worst),
                    upper_nano=max(upper, min(_nano_up(expected), worst)),
                    source=source,
                    history_calls=n_hist,
                    per_call_sd_nano=_nano_up((m.noise_var / calls).sqrt()) if calls else 0,
                    note=note,
                )
            )
    if plan.options.batch:
        rows = [_at_batch_price(plan, row, prompts[row.model][row.suite].bound) for row in rows]
    return Forecast(tuple(rows), sim)


def _at_batch_price(plan: Plan, row: ForecastRow, bounds: Sequence[int]) -> ForecastRow:
    """``--batch``: a row whose calls go through a batch API (harness.run.batch), at the batch price:
    the worst case recomputed with the batch variant, the estimates scaled by the same ratio."""
    from adapters.batch import has_batch_api
    from harness.suite import batchable

    mp = plan.models[row.model]
    if not (has_batch_api(mp.spec) and batchable(plan.suites[row.suite])):
        return row
    from harness.types import Usage

    sample = Usage(input_uncached=1000, output=1000)  # the expected costs are at the standard price
    full = mp.price.cost(sample)
    half = mp.price.cost(sample, batch=True)
    if full <= 0 or half >= full:
        return row
    ratio = half / full

    def scaled(nano: int) -> int:
        return int((Decimal(nano) * ratio).to_integral_value(rounding=ROUND_CEILING))

    worst = sum(usd_to_nano(mp.price.worst_case(b, mp.max_output_tokens, batch=True)) for b in bounds)
    return replace(
        row,
        expected_nano=min(scaled(row.expected_nano), worst),
        lower_nano=min(scaled(row.lower_nano), worst),
        upper_nano=min(scaled(row.upper_nano), worst),
        worst_case_nano=worst,
        per_call_sd_nano=scaled(row.per_call_sd_nano),
        note=(row.note + "; " if row.note else "") + "batch price",
    )


def _calibrated(est: Sequence[int], calls: Sequence[CallObs]) -> list[int]:
    """Scale this suite's estimated prompt sizes to what the provider actually billed for it before."""
    if not calls or not est:
        return list(est)
    ratio = (Decimal(sum(c.input_total for c in calls)) / len(calls)) / (Decimal(sum(est)) / len(est))
    ratio = min(max(ratio, Decimal("0.25")), Decimal(4))
    return [int((i * ratio).to_integral_value(rounding=ROUND_CEILING)) for i in est]


def _choose_source(
    plan: Plan,
    store: Store | None,
    spec: ModelSpec,
    max_out: int,
    suite_name: str,
    p: _Prompts,
    factor: Decimal,
    history: Mapping[str, History],
    profs: Mapping[str, ModelProfile],
    min_history: int,
    seed: int,
    type_cache: dict[str, Decimal],
) -> tuple[str, list[tuple[Decimal, Decimal, Decimal, int]], Decimal, int, str]:
    mine = history.get(suite_name)
    if mine is not None and len(mine.calls) >= min_history:
        note = ""
        if max_out > 0 and sum(
            1 for c in mine.calls if c.finish_reason in ("length", "max_tokens")
        ) > 0.05 * len(mine.calls):
            note = (
                "over 5% of past calls hit their output limit; "
                "the forecast may be low if the limit is now higher"
            )
        obs = _transplant(mine.calls, Decimal(1), max_out, spec.thinking_budget)
        return "history:this-suite", obs, mine.overhead, len(mine.calls), note
    others = [h for s, h in history.items() if s != suite_name and h.calls]
    n_other = sum(len(h.calls) for h in others)
    if store is not None and n_other >= min_history:
        obs = []
        ok = all_ = 0
        for h in others:
            if h.suite not in type_cache:
                if h.suite in plan.suites:
                    fmts: dict[str, int] = {}
                    suite = plan.suites[h.suite]
                    for item in list(suite.items)[:50]:
                        f = suite.render(item, 0, plan.options.seed).answer_format
                        fmts[f] = fmts.get(f, 0) + 1
                    type_cache[h.suite] = _type_factor(fmts)
                else:
                    type_cache[h.suite] = TYPE_FACTORS[_past_suite_type(store, h.suite)]
            obs.extend(_transplant(h.calls, factor / type_cache[h.suite], max_out, spec.thinking_budget))
            ok += h.ok_cost_nano
            all_ += h.all_cost_nano
        overhead = max(Decimal(1), Decimal(all_) / Decimal(ok)) if ok else Decimal(1)
        suites = ", ".join(sorted(h.suite for h in others))
        return "history:other-suites", obs, overhead, n_other, f"from {suites}"
    published = load_published_usage().get(f"{spec.provider}/{spec.model}")
    if published is not None and (not published.thinking_only or spec.thinking_budget):
        rng = random.Random(f"{seed}:{spec.name}:{suite_name}:published")
        formats = list(p.formats)
        weights = [p.formats[f] for f in formats]
        sizes = p.est
        seen = [
            published.draw(rng, rng.choices(formats, weights)[0], max_out, sizes[rng.randrange(len(sizes))])
            for _ in range(PROFILE_DRAWS)
        ]
        obs = _transplant(seen, Decimal(1), max_out, spec.thinking_budget)
        return "published", obs, Decimal(1), 0, published.source
    prof = profs.get(f"{spec.provider}/{spec.model}")
    if prof is not None:
        rng = random.Random(f"{seed}:{spec.name}:{suite_name}")
        formats = list(p.formats)
        weights = [p.formats[f] for f in formats]
        sizes = p.est
        draws: list[CallObs] = []
        for _ in range(PROFILE_DRAWS):
            fmt = rng.choices(formats, weights)[0]
            draws.append(prof.draw(rng, fmt, spec, max_out, sizes[rng.randrange(len(sizes))]))
        obs = _transplant(draws, Decimal(1), max_out, spec.thinking_budget)
        return "profile", obs, Decimal(1), 0, f"profile {prof.name} (harness/data/model_profiles.toml)"
    return "worst-case", [], Decimal(1), 0, ""


# ------------------------------------------------------------------------------------------ the pre-check


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a run may start: ``ok`` and a one-line message (empty when there is nothing to say)."""

    ok: bool
    message: str
    upper_nano: int
    budget_nano: int


def check_budget(forecast: Forecast, budget_nano: int, *, allow_partial: bool = False) -> Verdict:
    """Compare the forecast's 95% upper bound with the budget, before anything is spent.

    Returns:
        ``ok`` when the upper bound fits; otherwise a refusal naming the upper bound, the budget and
        ``--allow-partial`` (with ``allow_partial`` the verdict is ok and the message a warning).
    """
    from harness.pricing.money import format_usd

    upper = forecast.upper_nano
    if upper <= budget_nano:
        return Verdict(True, "", upper, budget_nano)
    expected = forecast.expected_nano
    likely = "is expected to" if expected > budget_nano else "may"
    head = (
        f"the requested work {likely} cost more than the budget: forecast {format_usd(expected)}, "
        f"95% upper bound {format_usd(upper)}, budget {format_usd(budget_nano)}"
    )
    if allow_partial:
        return Verdict(True, f"{head}; --allow-partial: the run stops at the budget", upper, budget_nano)
    return Verdict(
        False,
        f"{head}; raise --budget, lower --limit, use --target-ci, or pass --allow-partial to run until "
        "the budget is spent",
        upper,
        budget_nano,
    )


def mark_pilot(store: Store, run_id: str, info: Mapping[str, Any]) -> None:
    """Record in a run's config that it was an ``estimate --pilot`` run (``config["pilot"] = info``)."""
    from harness.store.engine import runs_table

    with store.begin_write("marking a pilot run") as conn:
        row = conn.execute(sa.select(runs_table.c.config).where(runs_table.c.id == run_id)).one_or_none()
        if row is None:
            raise KeyError(run_id)
        config = dict(row.config if isinstance(row.config, dict) else json.loads(row.config or "{}"))
        config["pilot"] = dict(info)
        conn.execute(sa.update(runs_table).where(runs_table.c.id == run_id).values(config=config))
