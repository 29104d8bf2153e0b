"""Presets: named sets of suites with the settings of a published study.

``aa``: the seven benchmarks of Artificial Analysis's spring-2025 cost study (Intelligence Index v2):
MMLU-Pro, GPQA Diamond, Humanity's Last Exam, LiveCodeBench, SciCode, AIME 2024 and MATH-500, at the
study's settings (BENCHMARKS.md sections 0 and 13): repeats 1, 5, 1, 3, 3, 10 and 3 (each suite's
default), 16,384 output tokens per call, HLE judged by ``openai/gpt-4o-2024-08-06`` at temperature 0.
The study's totals: o1 $2,767.05, Claude 3.7 Sonnet (thinking) $1,485.35, GPT-4o $108.85.

Data: ``--data-dir DIR`` holds each suite's data as ``DIR/<suite>/`` (a directory that suite's
``--data`` takes) or ``DIR/<suite>.<jsonl|parquet|csv>``; a suite not in it comes from its usual
source (the hub, at its pin). SciCode has no hub default: ``DIR/scicode/`` holds
``problems_test.jsonl``, ``problems_dev.jsonl`` and, if you have it, ``test_data.h5``. A suite whose
data cannot be had is one clear error naming it (exit 2).

Offline statistics: ``suites/data/stats/<suite>.toml`` (item and call counts, prompt-token
quantiles, answer type) let ``tollbench estimate aa`` forecast a suite whose data is not downloaded
yet, through :class:`StatsSuite`, a stand-in whose prompts have those sizes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, UnknownSuite
from harness.suite import Item, Score, Suite
from harness.types import AnswerFormat, Message, Prompt

from .base import BaseSuite

__all__ = [
    "PRESETS",
    "Preset",
    "PresetSuite",
    "StatsSuite",
    "SuiteStats",
    "data_for",
    "get_preset",
    "load_for_estimate",
    "load_preset_suites",
    "load_stats",
    "preset_names",
    "split_options",
]


@dataclass(frozen=True, slots=True)
class PresetSuite:
    name: str
    """The registry name (``tollbench suites``)."""
    study_items: int
    """Items the study scored (HLE: 2,684 text-only of the January 2025 release)."""
    repeats: int


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    description: str
    suites: tuple[PresetSuite, ...]
    max_output_tokens: int
    judge: str
    study_costs_usd: Mapping[str, Decimal] = field(default_factory=dict)
    """The study's total per model (``PROVIDER/MODEL``, aliases too)."""
    study: str = ""


AA = Preset(
    name="aa",
    description="the seven suites of Artificial Analysis's spring-2025 cost study (Intelligence Index v2)",
    suites=(
        PresetSuite("mmlu-pro", 12_032, 1),
        PresetSuite("gpqa-diamond", 198, 5),
        PresetSuite("hle", 2_684, 1),
        PresetSuite("livecodebench", 315, 3),
        PresetSuite("scicode", 338, 3),
        PresetSuite("aime2024", 30, 10),
        PresetSuite("math500", 500, 3),
    ),
    max_output_tokens=16_384,
    judge="openai/gpt-4o-2024-08-06",
    study_costs_usd={
        "openai/o1": Decimal("2767.05"),
        "openai/o1-2024-12-17": Decimal("2767.05"),
        "anthropic/claude-3-7-sonnet-latest": Decimal("1485.35"),
        "anthropic/claude-3-7-sonnet-20250219": Decimal("1485.35"),
        "anthropic/claude-3-7-sonnet-thinking": Decimal("1485.35"),
        "openai/gpt-4o": Decimal("108.85"),
        "openai/gpt-4o-2024-08-06": Decimal("108.85"),
        "openai/gpt-4o-2024-11-20": Decimal("108.85"),
    },
    study="Artificial Analysis cost study, spring 2025",
)

PRESETS: Mapping[str, Preset] = {"aa": AA}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset | None:
    """The preset called ``name`` (case-insensitive), or None when it is not a preset."""
    return PRESETS.get(name.strip().lower())


def split_options(preset: Preset, options: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``--suite-option SUITE.KEY=VALUE`` for a preset's suites, per suite.

    Raises:
        ConfigError: an option without a suite prefix, or for a suite not in the preset.
    """
    names = [s.name for s in preset.suites]
    out: dict[str, dict[str, str]] = {n: {} for n in names}
    for key, value in options.items():
        suite, dot, opt = key.partition(".")
        if not dot or suite not in out or not opt:
            raise ConfigError(
                f"{preset.name}: suite options take SUITE.KEY=VALUE (SUITE one of {', '.join(names)}), "
                f"got {key!r}"
            )
        out[suite][opt] = value
    return out


_DATA_SUFFIXES = (".jsonl", ".parquet", ".csv")


def data_for(data_dir: Path | None, suite: str) -> Path | None:
    """The suite's data in ``data_dir``: ``DIR/<suite>/`` or ``DIR/<suite>.<jsonl|parquet|csv>``."""
    if data_dir is None:
        return None
    base = data_dir.expanduser()
    if (base / suite).is_dir():
        return base / suite
    for suffix in _DATA_SUFFIXES:
        if (base / f"{suite}{suffix}").is_file():
            return base / f"{suite}{suffix}"
    return None


def load_preset_suites(
    preset: Preset,
    *,
    data_dir: Path | None,
    options: Mapping[str, str] | None = None,
    offline: bool | None = None,
) -> list[Suite]:
    """Load every suite of ``preset`` (data from ``data_dir`` where it is there).

    Raises:
        DataError: a suite's data cannot be had (one line naming the suite and what to do).
        ConfigError: bad options.
    """
    from . import get_suite

    if data_dir is not None and not data_dir.expanduser().is_dir():
        raise DataError(f"{preset.name}: --data-dir {data_dir}: no such directory")
    per = split_options(preset, options or {})
    out: list[Suite] = []
    for ps in preset.suites:
        data = data_for(data_dir, ps.name)
        opts = dict(per[ps.name])
        if ps.name == "scicode" and data is not None and data.is_dir() and "test_data" not in opts:
            if (data / "test_data.h5").is_file():
                opts["test_data"] = str(data / "test_data.h5")
        try:
            out.append(get_suite(ps.name, data=data, offline=offline, options=opts or None))
        except (DataError, UnknownSuite) as exc:
            where = f"{data_dir}/{ps.name}/" if data_dir is not None else f"--data-dir DIR as DIR/{ps.name}/"
            raise DataError(f"{preset.name}: {ps.name}: {exc}; or put its data in {where}") from None
    return out


# -- offline statistics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuiteStats:
    """What a suite ships for offline estimates (``suites/data/stats/<suite>.toml``)."""

    suite: str
    items: int
    """Items per repeat as the study counts them."""
    calls: int
    """Calls per repeat (SciCode: 338 sub-steps of 80 problems)."""
    repeats: int
    answer_format: AnswerFormat
    prompt_tokens: Mapping[str, int]
    """Quantiles ``p10``, ``p50``, ``p90``, ``max`` of the prompt tokens per call."""
    measured: bool
    """True: computed from the pinned data (``scripts/suite_stats.py``); False: an approximation."""
    source: str


def load_stats(suite: str) -> SuiteStats | None:
    """The shipped statistics of ``suite`` (None if it ships none)."""
    try:
        text = resources.files("suites").joinpath("data", "stats", f"{suite}.toml").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None
    d: dict[str, Any] = tomllib.loads(text)
    fmt = str(d.get("answer_format", "text"))
    if fmt not in ("letter", "boxed", "text"):
        raise ValueError(f"suites/data/stats/{suite}.toml: answer_format {fmt!r}")
    return SuiteStats(
        suite=suite,
        items=int(d["items"]),
        calls=int(d.get("calls", d["items"])),
        repeats=int(d["repeats"]),
        answer_format=fmt,  # type: ignore[arg-type]
        prompt_tokens={k: int(v) for k, v in dict(d["prompt_tokens"]).items()},
        measured=bool(d.get("measured", False)),
        source=str(d.get("source", "")),
    )


def _quantile_tokens(q: Mapping[str, int], u: float) -> int:
    """Prompt tokens at quantile ``u`` (0..1), piecewise linear through p0 (= p10 / 2), p10, p50,
    p90 and max."""
    p10, p50, p90 = q["p10"], q["p50"], q["p90"]
    points = [(0.0, max(1, p10 // 2)), (0.1, p10), (0.5, p50), (0.9, p90), (1.0, q.get("max", p90))]
    for (u0, t0), (u1, t1) in zip(points, points[1:], strict=False):
        if u <= u1:
            return round(t0 + (t1 - t0) * (u - u0) / (u1 - u0))
    return points[-1][1]


class StatsSuite(BaseSuite):
    """A stand-in for a suite whose data is not here: one item per call of a repeat, its prompt as
    long as the shipped quantiles say (for forecasts only; it cannot be run)."""

    def __init__(self, stats: SuiteStats) -> None:
        n = stats.calls
        items = [Item(f"{stats.suite}#{i}", "", "", "", {"u": (i + 0.5) / n}) for i in range(n)]
        super().__init__(stats.suite, stats.repeats, items, f"suites/data/stats/{stats.suite}.toml")
        self.stats = stats

    def render(self, item: Item, repeat: int, seed: int) -> Prompt:
        tokens = _quantile_tokens(self.stats.prompt_tokens, float(item.data["u"]))
        # estimate_input_tokens: 3 + ceil(bytes / 4) + 4 for one message
        text = "x" * max(1, 4 * (tokens - 7))
        return Prompt(
            messages=(Message("user", text),),
            target="",
            answer_format=self.stats.answer_format,
            meta={"item_id": item.id},
        )

    async def score(self, prompt: Prompt, text: str) -> Score:
        raise ConfigError(f"{self.name}: a statistics stand-in is for estimates only; it cannot be run")


def load_for_estimate(preset: Preset, *, data_dir: Path | None) -> tuple[list[Suite], list[str]]:
    """The preset's suites for a forecast, offline: each suite's own data where it is here (in
    ``data_dir`` or the huggingface_hub cache), else its shipped statistics (:class:`StatsSuite`).

    Returns:
        The suites, and the names of those estimated from statistics.
    """
    from . import get_suite, scicode

    out: list[Suite] = []
    from_stats: list[str] = []
    for ps in preset.suites:
        data = data_for(data_dir, ps.name)
        try:
            if ps.name == "scicode":  # the targets are not needed to count prompts
                if data is None:
                    raise DataError("scicode: no problems here")
                out.append(scicode.load(data=data, options={"unsafe_sandbox": "true"}, need_targets=False))
            else:
                out.append(get_suite(ps.name, data=data, offline=True))
            continue
        except ConfigError:  # DataError too: not downloaded, gated, not isolable here
            pass
        stats = load_stats(ps.name)
        if stats is None:
            raise DataError(f"{preset.name}: {ps.name} ships no statistics and its data is not here")
        out.append(StatsSuite(stats))
        from_stats.append(ps.name)
    return out, from_stats
